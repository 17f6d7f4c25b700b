"""Request decoding and parameter checking.

Stripe's v1 API takes form-encoded bodies (and query strings) with nested keys
such as ``line_items[0][price]=...`` or ``expand[]=customer``; this module turns
them into plain dicts/lists.  Unknown parameters are rejected the way Stripe
rejects them, using the SDK's own request TypedDicts (``stripe/params/``) as
the source of truth so the sandbox accepts exactly what the SDK can send.
"""

from __future__ import annotations

import importlib
import re
import threading
import typing
from urllib.parse import parse_qsl

from .errors import StripeError

_KEY_RE = re.compile(r"\[([^\[\]]*)\]")

# Containers whose keys are user data, never list indices or known parameters.
FREE_FORM = {"metadata"}


def parse_form(raw: str) -> dict:
    """Decode ``a[b][0]=x`` style pairs into nested dicts and lists."""
    root: dict = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        head = key.split("[", 1)[0]
        parts = [head] + _KEY_RE.findall(key[len(head):])
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":  # "expand[]" style: append
                part = str(len(node))
            if last:
                node[part] = value
            else:
                nxt = node.get(part)
                if not isinstance(nxt, dict):
                    nxt = {}
                    node[part] = nxt
                node = nxt
    return _listify(root, None)


def _listify(node, parent_key):
    """Turn dicts keyed 0..n into lists (except inside free-form maps like metadata)."""
    if not isinstance(node, dict):
        return node
    if parent_key in FREE_FORM:
        return {k: v for k, v in node.items()}
    out = {k: _listify(v, k) for k, v in node.items()}
    if out and all(k.isdigit() for k in out):
        return [out[k] for k in sorted(out, key=int)]
    return out


# --- schema from the SDK's TypedDicts ------------------------------------------------------

_ANY = "any"  # free-form map (metadata and the like)
_LEAF = None
_cache: dict = {}
_lock = threading.Lock()


def _is_typeddict(tp) -> bool:
    return isinstance(tp, type) and hasattr(tp, "__required_keys__") and hasattr(tp, "__annotations__")


def _resolve(tp, ns):
    if isinstance(tp, str):
        tp = eval(tp, ns)  # the SDK writes forward references as strings
    if isinstance(tp, typing.ForwardRef):
        tp = eval(tp.__forward_arg__, ns)
    return tp


def _schema_of_type(tp, ns):
    tp = _resolve(tp, ns)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is not None and getattr(origin, "_name", "") in ("NotRequired", "Required"):
        return _schema_of_type(args[0], ns)
    if _is_typeddict(tp):
        return _schema_of_typeddict(tp)
    if origin in (list, typing.List):
        inner = _schema_of_type(args[0], ns) if args else _LEAF
        return ("list", inner)
    if origin in (dict, typing.Dict):
        return _ANY
    if origin is typing.Literal:
        return frozenset(args)  # an enum
    if origin is typing.Union or type(tp).__name__ == "UnionType":
        # e.g. "Literal[''] | SomeParams" (unsettable) or "SomeParams | int": the richest wins.
        found = [_schema_of_type(a, ns) for a in args]
        enums = [s for s in found if isinstance(s, frozenset) and s != {""}]
        if enums and all(s is _LEAF or isinstance(s, frozenset) for s in found) and str in args and int not in args:
            # "Literal['a', 'b'] | str" is the SDK's forward-compatible spelling of an enum: the Literal is the set.
            # Not with an int among them ("cancel_at: ...|int|Literal[...]|str"): a number is valid too.
            return frozenset().union(*[s for s in found if isinstance(s, frozenset)])
        for s in found:
            if isinstance(s, dict):
                return s
        for s in found:
            if isinstance(s, tuple):
                return s
        for s in found:
            if s == _ANY:
                return s
        return _LEAF
    name = getattr(tp, "__name__", "") or ""
    if name == "UntypedStripeObject":
        return _ANY
    return _LEAF


def _schema_of_typeddict(td) -> dict:
    key = td
    if key in _cache:
        return _cache[key]
    from stripe._request_options import RequestOptions

    skip = set(getattr(RequestOptions, "__annotations__", {}))
    node: dict = {"__required__": set()}
    _cache[key] = node  # guard against recursion
    ns = dict(vars(importlib.import_module(td.__module__)))
    ns.setdefault("Literal", typing.Literal)
    for name, tp in td.__annotations__.items():
        if name in skip:
            continue
        node[name] = _schema_of_type(tp, ns)
    node["__required__"] = {k for k in td.__required_keys__ if k not in skip}
    return node


def schema_for(spec: str):
    """``spec`` is 'module:Class' under stripe.params; cached, loaded on first use."""
    with _lock:
        if spec in _cache:
            return _cache[spec]
        mod, cls = spec.split(":")
        td = getattr(importlib.import_module("stripe.params." + mod), cls)
        schema = _schema_of_typeddict(td)
        _cache[spec] = schema
        return schema


def _fmt(path):
    return path[0] + "".join(f"[{p}]" for p in path[1:])


def check(params: dict, spec: str | None, extra: tuple = ()) -> None:
    """Raise Stripe's 400 for unknown or missing parameters.

    ``extra`` names sandbox-only top-level parameters that the SDK doesn't know.
    """
    if spec is None:
        return
    schema = schema_for(spec)
    _check_node(params, schema, [], extra)


def _check_node(value, schema, path, extra=()):
    if schema is _LEAF or schema == _ANY:
        return
    if isinstance(schema, frozenset):
        if isinstance(value, str) and value not in schema:
            p = _fmt(path)
            choices = sorted(v for v in schema if v)
            raise StripeError(400, "invalid_request_error", None,
                              f"Invalid {p}: must be one of {', '.join(choices[:-1])}, or {choices[-1]}", p)
        return
    if isinstance(schema, tuple):  # list
        inner = schema[1]
        if isinstance(value, list):
            for i, v in enumerate(value):
                _check_node(v, inner, path + [str(i)])
        elif isinstance(value, dict):
            _check_node(value, inner, path)
        return
    if not isinstance(value, dict):
        return  # "" unsets a hash, or a scalar alternative (e.g. created=123)
    for k, v in value.items():
        if k not in schema or k == "__required__":
            if not path and k in extra:
                continue
            p = _fmt(path + [k])
            raise StripeError(400, "invalid_request_error", "parameter_unknown", f"Received unknown parameter: {p}", p)
        _check_node(v, schema[k], path + [k])
    for k in sorted(schema["__required__"]):
        if k not in value:
            p = _fmt(path + [k])
            raise StripeError(400, "invalid_request_error", "parameter_missing", f"Missing required param: {p}.", p)


# --- typed access helpers ------------------------------------------------------------------

def as_int(value, param: str):
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise StripeError(400, "invalid_request_error", "parameter_invalid_integer", f"Invalid integer: {value}", param)


def as_bool(value, param: str):
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if value in ("true", "True", "1"):
        return True
    if value in ("false", "False", "0"):
        return False
    raise StripeError(400, "invalid_request_error", "parameter_invalid_boolean", f"Invalid boolean: {value}", param)


def as_list(value):
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    return [value]
