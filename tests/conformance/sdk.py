"""What the installed Stripe SDK says the API looks like, read from its own generated code.

Three things, all at the API version the SDK pins, so they move with the pin:

* ``fields(object_class(kind))``: the response shape of an object type (``"invoice"``,
  ``"checkout.session"``...), from the resource class the SDK maps that ``object``
  value to (``stripe._object_classes``), through its type annotations.
* ``params_fields(td)``: the accepted request parameters and the required ones, from a
  TypedDict under ``stripe/params/``.
* ``endpoints()``: every v1 endpoint the SDK's services call, as
  ``(method, path template) -> Endpoint(params TypedDict, response type)``, read with
  ``ast`` from ``stripe/**/_*_service.py``.

Types become a small tree of tuples (see ``Kind``) that ``check.py`` walks; nothing here
imports from the sandbox, so the checker does not trust the code it checks.
"""

from __future__ import annotations

import ast
import decimal
import functools
import importlib
import re
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import stripe
from stripe._object_classes import OBJECT_CLASSES
from stripe._stripe_object import StripeObject, UntypedStripeObject

SDK_DIR = Path(stripe.__file__).parent
ForwardRef = typing.ForwardRef
API_VERSION = stripe.api_version


class Kind:
    """Node tags of the type tree (the first item of each tuple)."""

    SCALAR = "scalar"  # ("scalar", python type): str, int, bool, float; Decimal travels as a string
    ENUM = "enum"  # ("enum", frozenset of values)
    NULLABLE = "nullable"  # ("nullable", inner): Optional[...]
    LIST = "list"  # ("list", inner): a JSON array
    LIST_OBJECT = "list_object"  # ("list_object", inner): Stripe's {"object": "list", "data": [...]}
    OBJECT = "object"  # ("object", class): a StripeObject subclass, checked key by key
    MAP = "map"  # ("map", inner): free-form keys (metadata)
    ANY = "any"
    UNION = "union"  # ("union", (alternatives...)), e.g. ExpandableField = Union[str, X]


ANY = (Kind.ANY,)


# --- resolving the SDK's annotations ------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _type_checking_names(module_name: str) -> dict:
    """The names a module imports under ``if TYPE_CHECKING:`` (its forward references)."""
    module = sys.modules.get(module_name) or importlib.import_module(module_name)
    names: dict = {}
    source = Path(module.__file__).read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom):
                    target = importlib.import_module(stmt.module)
                    for alias in stmt.names:
                        names[alias.asname or alias.name] = getattr(target, alias.name)
    return names


def _namespace(module_name: str) -> dict:
    module = sys.modules.get(module_name) or importlib.import_module(module_name)
    return {**vars(module), **_type_checking_names(module_name)}


@functools.lru_cache(maxsize=None)
def fields(cls: type) -> dict:
    """A StripeObject class's response fields: name -> type tree (ClassVars and private names left out)."""
    out: dict = {}
    for klass in reversed(cls.__mro__):
        if not (isinstance(klass, type) and issubclass(klass, StripeObject)) or klass in (StripeObject, UntypedStripeObject):
            continue
        own = klass.__dict__.get("__annotations__", {})
        if not own:
            continue
        ns = _namespace(klass.__module__)
        local = {k: v for k, v in vars(klass).items() if isinstance(v, type)}
        for name, ann in own.items():
            if name.startswith("_"):
                continue
            tp = typing._eval_type(ForwardRef(ann) if isinstance(ann, str) else ann, ns, local)  # noqa: SLF001
            if typing.get_origin(tp) is typing.ClassVar:
                continue
            out[name] = to_tree(tp, ns, local)
    return out


def to_tree(tp, ns: dict | None = None, local: dict | None = None):
    """An annotation (resource or params side) as a type tree."""
    if isinstance(tp, (str, ForwardRef)):
        tp = typing._eval_type(ForwardRef(tp) if isinstance(tp, str) else tp, ns or {}, local or {})  # noqa: SLF001
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    name = getattr(origin, "_name", None) or getattr(tp, "_name", None)
    if name in ("NotRequired", "Required") or (origin is not None and getattr(origin, "__name__", "") in ("NotRequired", "Required")):
        return to_tree(args[0], ns, local)
    if tp is typing.Any or isinstance(tp, typing.TypeVar):
        return ANY
    if origin is typing.Literal:
        return (Kind.ENUM, frozenset(args))
    if origin in (typing.Union, types.UnionType):
        alts = [a for a in args if a is not type(None)]
        inner = to_tree(alts[0], ns, local) if len(alts) == 1 else (Kind.UNION, tuple(to_tree(a, ns, local) for a in alts))
        return (Kind.NULLABLE, inner) if len(alts) < len(args) else inner
    if origin in (list, typing.List):
        return (Kind.LIST, to_tree(args[0], ns, local) if args else ANY)
    if origin in (dict, typing.Dict):
        return (Kind.MAP, to_tree(args[1], ns, local) if len(args) == 2 else ANY)
    base = origin or tp
    if isinstance(base, type):
        if issubclass(base, (stripe.ListObject, stripe.SearchResultObject)):
            return (Kind.LIST_OBJECT, to_tree(args[0], ns, local) if args else ANY)
        if issubclass(base, UntypedStripeObject):
            return (Kind.MAP, to_tree(args[0], ns, local) if args else ANY)
        if issubclass(base, StripeObject):
            return (Kind.OBJECT, base)
        if hasattr(base, "__required_keys__"):  # a params TypedDict (typing_extensions)
            return (Kind.OBJECT, base)
        if base is decimal.Decimal:
            return (Kind.SCALAR, decimal.Decimal)
        if base in (str, int, bool, float):
            return (Kind.SCALAR, base)
    raise TypeError(f"unhandled SDK annotation {tp!r}")


# --- objects -------------------------------------------------------------------------------------------
def object_class(kind: str) -> type | None:
    """The SDK's class for an ``object`` value (None for types the SDK doesn't know)."""
    where = OBJECT_CLASSES.get(kind)
    if where is None:
        return None
    return getattr(importlib.import_module(where[0]), where[1])


def object_name(cls: type) -> str | None:
    return getattr(cls, "OBJECT_NAME", None)


# --- request parameters --------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def params_fields(td: type) -> tuple[dict, frozenset]:
    """A params TypedDict's parameters (name -> type tree) and its required names, request options left out."""
    from stripe._request_options import RequestOptions

    skip = set(RequestOptions.__annotations__)
    ns = _namespace(td.__module__)
    tree = {name: to_tree(tp, ns) for name, tp in td.__annotations__.items() if name not in skip}
    return tree, frozenset(k for k in td.__required_keys__ if k not in skip)


# --- endpoints -----------------------------------------------------------------------------------------
@dataclass(eq=False)
class Endpoint:
    """One v1 endpoint of the SDK's services; its params class and response type resolve on first use."""

    method: str  # "get", "post", "delete"
    path: str  # "/v1/checkout/sessions/{session}"
    module: str  # the service module, whose TYPE_CHECKING imports name the types
    params_src: str | None  # e.g. 'Optional["SessionCreateParams"]'
    returns_src: str  # e.g. '"Session"'
    service: str  # e.g. "stripe.checkout._session_service.SessionService.retrieve"

    @functools.cached_property
    def pattern(self) -> re.Pattern:
        return re.compile("^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(self.path)) + "$")

    @functools.cached_property
    def params(self) -> type | None:
        """The params TypedDict (None for an endpoint that takes none)."""
        if self.params_src is None:
            return None
        ns = _namespace(self.module)
        tree = to_tree(eval(self.params_src, ns), ns)  # noqa: S307 - the SDK's own annotation
        tree = tree[1] if tree[0] == Kind.NULLABLE else tree
        return tree[1] if tree[0] == Kind.OBJECT else None

    @functools.cached_property
    def returns(self):
        ns = _namespace(self.module)
        return to_tree(eval(self.returns_src, ns), ns)  # noqa: S307


def _literal_path(node) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return _literal_path(node.func.value)
    return None


@functools.lru_cache(maxsize=1)
def endpoints() -> dict:
    """Every (method, path) the SDK's v1 services request, by (method, number of path segments)."""
    found: dict = {}
    for path in sorted(SDK_DIR.rglob("_*_service.py")):
        module_name = ".".join(path.relative_to(SDK_DIR.parent).with_suffix("").parts)
        if module_name.startswith("stripe.v2"):
            continue
        for cls in (n for n in ast.parse(path.read_text()).body if isinstance(n, ast.ClassDef)):
            for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
                call = next((c for c in ast.walk(fn) if isinstance(c, ast.Call) and getattr(c.func, "attr", "") == "_request"), None)
                if call is None or len(call.args) < 2:
                    continue
                method, url = call.args[0].value, _literal_path(call.args[1])
                if not url or not url.startswith("/v1/"):
                    continue
                params_ann = next((a.annotation for a in fn.args.args if a.arg == "params"), None)
                found[(method, url)] = Endpoint(method, url, module_name, params_ann and ast.unparse(params_ann),
                                                ast.unparse(fn.returns), f"{module_name}.{cls.name}.{fn.name}")
    index: dict = {}
    for e in found.values():
        index.setdefault((e.method, e.path.count("/")), []).append(e)
    return index


def endpoint_for(method: str, path: str) -> Endpoint | None:
    """The SDK endpoint a concrete request path hits (literal segments beat placeholders, as Stripe routes)."""
    hits = [e for e in endpoints().get((method.lower(), path.count("/")), []) if e.pattern.match(path)]
    return min(hits, key=lambda e: e.path.count("{")) if hits else None
