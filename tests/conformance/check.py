"""Check requests and answers against the SDK's definitions (``sdk.py``).

``Checker`` takes recorded lines (see billing_app/sandbox/recorder.py) and collects
``Problem``s; equal problems (same rule, place and detail) are counted once, so one
difference seen in a thousand responses is one line of the report.

Rules (the SDK cannot express "absent" apart from "null": both are ``Optional``):

* an object's keys are its class's fields: an extra key is a field this API version
  does not have; a non-``Optional`` field must be there. An absent ``Optional`` field
  is not reported: the SDK types fields Stripe leaves out (``payment_method.sepa_debit``
  on a card, includable ``invoice.payments``) the same as nullable ones;
* every value has its field's type; ``null`` only where ``Optional``; enum values are
  the ``Literal[...]`` ones (the SDK widens enums with ``| str`` so that newer values
  don't break old clients; at the pinned version the Literal is the whole set);
* a deleted object is ``{id, object, deleted: true}``;
* an error is ``{"error": ErrorObject}`` with unset fields left out, not ``null``;
* a request's parameters are those of the endpoint's params TypedDict, with its enum
  values and scalar types, and its required ones present; a request that breaks this
  must have been refused with a 400 (``parameter_unknown`` naming the parameter for
  an unknown one), as Stripe refuses it.
"""

from __future__ import annotations

import collections
import decimal
import json
import re
from dataclasses import dataclass

from billing_app.sandbox.params import parse_form

from . import allowlist
from . import sdk
from .sdk import Kind

_INT = re.compile(r"^-?\d+$")
_NUMBER = re.compile(r"^-?(\d+(\.\d*)?|\.\d+)$")
# A recorded line's shape, to skip repeats: JSON numbers, ids (a lowercase prefix, then random letters
# and digits), free text (a space, @, / or :, which no enum value has), long mixed-case tokens and
# uuids are masked; keys and enum-like strings stay.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?')
_ID = re.compile(r'"[a-z]+_(?:[a-z]+_)?(?=[A-Za-z0-9]*[A-Z0-9])[A-Za-z0-9]{10,}"')
_FREE = re.compile(r'"(?:[^"]*[ @/:][^"]*|[A-Za-z0-9]*[A-Z][A-Za-z0-9]{7,}|[0-9a-f]{8}-[0-9a-f-]{27})"')


def _mask(token: re.Match) -> str:
    t = token.group()
    if t[0] != '"':
        return "0"
    return '"T"' if _ID.fullmatch(t) or _FREE.fullmatch(t) else t


def shape(line: str) -> str:
    return _TOKEN.sub(_mask, line)


# The list envelopes: the SDK's ListObject / SearchResultObject are hand-written and annotate only
# part of them (no `object`, no `url` on search results), so their shape is written out here.
_STR, _BOOL = (Kind.SCALAR, str), (Kind.SCALAR, bool)
ENVELOPES = {
    "list": {"object": (Kind.ENUM, {"list"}), "data": None, "has_more": _BOOL, "url": _STR,
             "total_count": (Kind.SCALAR, int)},
    "search_result": {"object": (Kind.ENUM, {"search_result"}), "data": None, "has_more": _BOOL, "url": _STR,
                      "next_page": (Kind.NULLABLE, _STR)},
}


@dataclass(frozen=True)
class Problem:
    rule: str  # "extra key", "missing key", "type", "enum", "null", "param unknown", ...
    where: str  # "invoice.subscription", "POST /v1/checkout/sessions ui_mode"
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.rule}: {self.where}" + (f" ({self.detail})" if self.detail else "")


def _json_type(v) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(v), type(v).__name__)


class Checker:
    def __init__(self):
        self.problems: collections.Counter = collections.Counter()
        self.objects: collections.Counter = collections.Counter()  # object type -> how many checked
        self.requests: collections.Counter = collections.Counter()  # "POST /v1/..." template -> how many checked
        self._seen: set = set()

    # --- reporting --------------------------------------------------------------------------------------
    def problem(self, rule: str, where: str, detail: str = "") -> None:
        p = Problem(rule, where, detail)
        if not allowlist.allowed(p):
            self.problems[p] += 1

    def report(self) -> str:
        return "\n".join(f"{p}  [x{n}]" for p, n in sorted(self.problems.items(), key=lambda x: str(x[0])))

    # --- recorded lines ------------------------------------------------------------------------------------
    def text(self, line: str) -> None:
        """One recorded JSON line; one of the same shape as a line seen before (see ``shape``) is skipped."""
        key = shape(line)
        if key in self._seen:
            return
        self._seen.add(key)
        self.line(json.loads(line))

    def line(self, rec: dict) -> None:
        if rec["kind"] == "event":
            self.value(rec["body"], (Kind.OBJECT, sdk.object_class("event")), "event")
        elif rec["kind"] == "request":
            self.exchange(rec["method"], rec["path"], rec["raw"], rec.get("status"), rec.get("body"))

    def exchange(self, method: str, path: str, raw: str, status: int | None = None, body=None) -> None:
        """One request (and, when known, its answer)."""
        label = f"{method.upper()} {path}"
        endpoint = sdk.endpoint_for(method, path)
        if endpoint is None:
            self.problem("endpoint unknown to the SDK", re.sub(r"/[a-z]+_[A-Za-z0-9_]{8,}", "/{id}", label))
            return
        where = f"{method.upper()} {endpoint.path}"
        self.requests[where] += 1
        errors = self.params(parse_form(raw or ""), endpoint, where)
        if status is None:
            for e in errors:
                self.problem(*e)
            return
        if errors and status != 400:
            for e in errors:
                self.problem(*e[:2], f"{e[2]}; answered {status}, Stripe answers 400")
        if errors and status == 400 and errors[0][0] == "param unknown":
            err = (body or {}).get("error", {})
            named = errors[0][2].split(" ")[0]
            if err.get("code") != "parameter_unknown" or err.get("param") != named:
                self.problem("unknown param answered unlike Stripe", where, f"{named}: got {err.get('code')}/{err.get('param')}")
        if status < 300:
            self.response(body, endpoint.returns, endpoint.path)
        else:
            self.error(body, where)

    # --- responses -----------------------------------------------------------------------------------------
    def response(self, body, tree, where: str) -> None:
        if isinstance(body, dict) and body.get("deleted") is True:
            self.deleted(body)
            return
        self.value(body, tree, where)

    def deleted(self, body: dict) -> None:
        kind = body.get("object")
        self.objects[f"deleted {kind}"] += 1
        if set(body) != {"id", "object", "deleted"}:
            self.problem("deleted object keys", str(kind), str(sorted(body)))

    def error(self, body, where: str) -> None:
        err = body.get("error") if isinstance(body, dict) else None
        if not isinstance(err, dict) or set(body) != {"error"}:
            self.problem("error envelope", where, str(body)[:80])
            return
        self.objects["error"] += 1
        for k, v in err.items():
            if v is None:
                self.problem("error field sent as null", f"error.{k}", "Stripe leaves unset error fields out")
        self.value({k: v for k, v in err.items() if v is not None}, (Kind.OBJECT, _error_class()), "error")

    def value(self, v, tree, where: str) -> None:
        tag = tree[0]
        if tag == Kind.ANY or tree == (Kind.MAP, sdk.ANY):
            # Untyped (an event's data.object): an object the SDK knows is checked as the SDK would build it.
            if isinstance(v, dict) and sdk.object_class(v.get("object")) and v["object"] not in ENVELOPES:
                self.obj(v, sdk.object_class(v["object"]), where)
            return
        if tag == Kind.NULLABLE:
            if v is not None:
                self.value(v, tree[1], where)
            return
        if v is None:
            self.problem("null", where, "not Optional in the SDK")
            return
        if tag == Kind.SCALAR:
            if not _scalar_ok(v, tree[1], decoded=False):
                self.problem("type", where, f"{_json_type(v)} for {tree[1].__name__}")
        elif tag == Kind.ENUM:
            if isinstance(v, (dict, list)) or v not in tree[1]:
                self.problem("enum", where, f"{v!r} not in {sorted(map(str, tree[1]))}")
        elif tag == Kind.LIST:
            if not isinstance(v, list):
                self.problem("type", where, f"{_json_type(v)} for array")
                return
            for x in v:
                self.value(x, tree[1], where + "[]")
        elif tag == Kind.MAP:
            if not isinstance(v, dict):
                self.problem("type", where, f"{_json_type(v)} for a map")
                return
            for x in v.values():
                self.value(x, tree[1], where + "{}")
        elif tag == Kind.LIST_OBJECT:
            self.list_object(v, tree[1], where)
        elif tag == Kind.OBJECT:
            self.obj(v, tree[1], where)
        elif tag == Kind.UNION:
            self.union(v, tree[1], where)

    def union(self, v, alts, where: str) -> None:
        for alt in _closed(alts):
            if alt[0] == Kind.SCALAR and _scalar_ok(v, alt[1], decoded=False):
                return
        # Pick the alternative of v's JSON kind (an id or an expanded object; an enum; ...) and check against it.
        objects = [a for a in alts if a[0] in (Kind.OBJECT, Kind.LIST_OBJECT)]
        enums = [a for a in alts if a[0] == Kind.ENUM]
        if isinstance(v, dict) and objects:
            named = [a for a in objects if a[0] == Kind.OBJECT and sdk.object_name(a[1]) == v.get("object")]
            self.value(v, (named or objects)[0], where)
        elif isinstance(v, str) and enums:
            if not any(v in e[1] for e in enums):
                self.problem("enum", where, f"{v!r} not in {sorted(str(x) for e in enums for x in e[1])}")
        elif not any(_json_fits(v, a) for a in alts):
            self.problem("type", where, f"{_json_type(v)} for {[a[0] for a in alts]}")

    def list_object(self, v, inner, where: str) -> None:
        if not isinstance(v, dict) or v.get("object") not in ENVELOPES:
            self.problem("type", where, f"{_json_type(v)} for a list object")
            return
        shape = ENVELOPES[v["object"]]
        for key, x in v.items():
            if key == "data":
                if not isinstance(x, list):
                    self.problem("type", f"{where}.data", f"{_json_type(x)} for array")
                    continue
                for item in x:
                    self.value(item, inner, where + ".data[]")
            elif key not in shape:
                self.problem("extra key", f"{v['object']}.{key}", "not in Stripe's list envelope")
            else:
                self.value(x, shape[key], f"{v['object']}.{key}")
        for key in set(shape) - set(v) - {"total_count"}:
            self.problem("missing key", f"{v['object']}.{key}")

    def obj(self, v, cls, where: str, count: bool = True) -> None:
        if not isinstance(v, dict):
            self.problem("type", where, f"{_json_type(v)} for {cls.__name__}")
            return
        kind = sdk.object_name(cls)
        if kind and isinstance(v.get("object"), str) and v["object"] != kind:
            actual = sdk.object_class(v["object"])
            if actual is None:
                self.problem("object type unknown to the SDK", where, v["object"])
                return
            cls, kind = actual, v["object"]
        if v.get("deleted") is True:
            self.deleted(v)
            return
        if kind:
            where = kind
            if count:
                self.objects[kind] += 1
        fields = sdk.fields(cls)
        for key, x in v.items():
            tree = fields.get(key)
            if tree is None:
                self.problem("extra key", f"{where}.{key}", "not a field at this API version")
                continue
            self.value(x, tree, f"{where}.{key}")
        for key, tree in fields.items():
            if key in v or key == "deleted":
                continue
            if tree[0] != Kind.NULLABLE:
                self.problem("missing key", f"{where}.{key}")
            # An absent Optional field is not reported: the SDK cannot tell "left out" from "null".

    # --- requests ------------------------------------------------------------------------------------------
    def params(self, params: dict, endpoint: sdk.Endpoint, where: str) -> list[tuple]:
        if endpoint.params is None:
            return [("param unknown", where, f"{k} (the endpoint takes none)") for k in params]
        out: list = []
        self._param_obj(params, endpoint.params, [], where, out)
        return out

    def _param_obj(self, value, td, path, where, out) -> None:
        if not isinstance(value, dict):
            out.append(("param type", where, f"{_fmt(path)}: {_json_type(value)} for a hash"))
            return
        fields, required = sdk.params_fields(td)
        for k, v in value.items():
            name = _fmt(path + [k])
            if k not in fields:
                out.append(("param unknown", where, name))
                continue
            self._param(v, fields[k], path + [k], where, out)
        for k in sorted(required - set(value)):
            out.append(("param missing", where, _fmt(path + [k])))

    def _param(self, v, tree, path, where, out) -> None:
        tag = tree[0]
        name = _fmt(path)
        if tag in (Kind.ANY,):
            return
        if tag == Kind.NULLABLE:
            self._param(v, tree[1], path, where, out)
        elif tag == Kind.OBJECT:
            self._param_obj(v, tree[1], path, where, out)
        elif tag == Kind.LIST:
            if not isinstance(v, list):
                out.append(("param type", where, f"{name}: {_json_type(v)} for an array"))
                return
            for i, x in enumerate(v):
                self._param(x, tree[1], path + [str(i)], where, out)
        elif tag == Kind.MAP:
            if v != "" and not isinstance(v, dict):
                out.append(("param type", where, f"{name}: {_json_type(v)} for a hash"))
        elif tag == Kind.ENUM:
            if not isinstance(v, str) or v not in tree[1]:
                out.append(("param enum", where, f"{name}={v!r} not in {sorted(map(str, tree[1]))}"))
        elif tag == Kind.SCALAR:
            if not _scalar_ok(v, tree[1], decoded=True):
                out.append(("param type", where, f"{name}={str(v)[:30]!r} for {tree[1].__name__}"))
        elif tag == Kind.UNION:
            tries = []
            for alt in _closed(tree[1]):
                trial: list = []
                self._param(v, alt, path, where, trial)
                if not trial:
                    return
                tries.append(trial)
            # Report against the alternative of the value's shape (a hash for a hash, a string for a string).
            best = next((t for t, a in zip(tries, _closed(tree[1])) if _form_fits(v, a)), tries[0])
            out.extend(best)


def _closed(alts):
    """``Literal[...] | str`` is the SDK's forward-compatible spelling of an enum: the Literal is the set."""
    if any(a[0] == Kind.ENUM and a[1] != {""} for a in alts):  # Literal[''] alone marks "send '' to unset"
        return tuple(a for a in alts if a != (Kind.SCALAR, str))
    return alts


def _scalar_ok(v, tp, decoded: bool) -> bool:
    """JSON scalars in answers; form strings (``decoded``) in requests."""
    if decoded:
        if not isinstance(v, str):
            return False
        if tp is int:
            return bool(_INT.match(v))
        if tp is bool:
            return v in ("true", "false")
        if tp in (float, decimal.Decimal):
            return bool(_NUMBER.match(v))
        return True
    if tp is bool:
        return isinstance(v, bool)
    if tp is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if tp is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if tp is decimal.Decimal:
        return isinstance(v, str) and bool(_NUMBER.match(v))
    return isinstance(v, tp)


def _json_fits(v, tree) -> bool:
    tag = tree[0]
    return (tag == Kind.LIST and isinstance(v, list)) or (tag in (Kind.MAP, Kind.OBJECT, Kind.LIST_OBJECT) and isinstance(v, dict)) \
        or (tag == Kind.ANY)


def _form_fits(v, tree) -> bool:
    if isinstance(v, dict):
        return tree[0] in (Kind.OBJECT, Kind.MAP)
    if isinstance(v, list):
        return tree[0] == Kind.LIST
    return tree[0] in (Kind.ENUM, Kind.SCALAR)


def _fmt(path) -> str:
    return path[0] + "".join(f"[{p}]" for p in path[1:]) if path else ""


def _error_class():
    from stripe._error_object import ErrorObject

    return ErrorObject
