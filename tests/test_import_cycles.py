"""billing_app has no import cycles, not even hidden behind an import inside a function.

The graph is read from the source (ast, nothing is imported): every `import` and
`from ... import` anywhere in a module (top level, function bodies, `if` blocks) that
names a billing_app module is an edge. `from billing_app.x import y` is an edge to
billing_app.x.y when y is a submodule, otherwise to billing_app.x (a package's
__init__), and also to every package above it that the importer is not inside (their
__init__ runs first). Relative imports are resolved the way Python resolves them. The Alembic
migrations are left out: they are loaded by Alembic, not imported by the app.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "billing_app"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
EXCLUDED = (f"{PACKAGE}.migrations",)


def _module_name(path: Path) -> str:
    parts = (PACKAGE, *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_excluded(name: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in EXCLUDED)


def modules() -> dict[str, Path]:
    """Every billing_app module by dotted name (a package by its own name: its __init__)."""
    found = {_module_name(path): path for path in sorted(ROOT.rglob("*.py"))}
    return {name: path for name, path in found.items() if not _is_excluded(name)}


def _existing(name: str, known: dict[str, Path]) -> str | None:
    """The module `name` loads: itself, or the nearest package above it that we know."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _targets(node: ast.AST, module: str, is_package: bool, known: dict[str, Path]) -> list[str]:
    """The billing_app modules one import statement loads (before `_existing` trims them)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        package = module if is_package else module.rpartition(".")[0]
        anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        base = ".".join([*anchor, node.module] if node.module else anchor)
    else:
        base = node.module or ""
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported billing_app module: line of the first such import}."""
    known = modules()
    graph: dict[str, dict[str, int]] = {}
    for module, path in known.items():
        edges = graph.setdefault(module, {})
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            for target in _targets(node, module, is_package, known):
                resolved = _existing(target, known) if target.split(".")[0] == PACKAGE else None
                for loaded in _loads(resolved, module, known) if resolved is not None else ():
                    edges[loaded] = min(edges.get(loaded, node.lineno), node.lineno)
    return graph


def _loads(target: str, module: str, known: dict[str, Path]) -> list[str]:
    """What importing `target` from `module` runs: the target and each package above it (Python runs
    a package's __init__ before its submodules), except the module itself and its own packages,
    which are loaded before it runs."""
    parts = target.split(".")
    loaded = [".".join(parts[:n]) for n in range(1, len(parts) + 1)]
    return [name for name in loaded if name in known and name != module and not module.startswith(name + ".")]


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); only the components of two or more modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return components


def shortest_cycle(graph: dict[str, dict[str, int]], component: list[str], start: str) -> list[str]:
    """A shortest cycle from `start` back to it (breadth first, inside its component)."""
    members = set(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph[node]):
                if successor == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if successor in members and successor not in parents:
                    parents[successor] = node
                    following.append(successor)
        frontier = following
    raise AssertionError(f"{component} is not strongly connected")


def cycles_of(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """One shortest cycle through each module of the component (each distinct cycle once), as text:
    `a (line 3) -> b (line 9) -> a`, the line being where the module on its left imports the next."""
    found: dict[frozenset, str] = {}
    for start in component:
        cycle = shortest_cycle(graph, component, start)
        steps = [f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])]
        found.setdefault(frozenset(zip(cycle, cycle[1:])), " -> ".join([*steps, cycle[-1]]))
    return list(found.values())


def test_the_graph_sees_imports_inside_functions_and_relative_ones():
    graph = import_graph()
    assert "billing_app.webhooks.route" in graph and not any(_is_excluded(m) for m in graph)
    assert "billing_app.sandbox.errors" in graph["billing_app.sandbox.objects"]  # relative: from .errors import ...
    # The sandbox's package starts its app lazily, inside a function: still an edge.
    assert "billing_app.sandbox.app" in graph["billing_app.sandbox"]
    # Importing a submodule runs its packages' __init__ first: an edge to each of them too.
    assert {"billing_app.api.rest", "billing_app.api.rest.errors"} <= set(graph["billing_app.api.session"])


def test_no_import_cycles():
    graph = import_graph()
    cycles = [cycle for component in strongly_connected(graph) for cycle in cycles_of(graph, component)]
    assert not cycles, "import cycles in billing_app:\n" + "\n".join(f"  {cycle}" for cycle in cycles)
