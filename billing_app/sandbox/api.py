"""The route registry and helpers shared by the resource modules.

Each resource module declares its endpoints with ``@route(METHOD, PATH, PARAMS)``,
where PARAMS names the SDK TypedDict ('module:Class' under stripe.params) that
describes the endpoint's accepted parameters.  app.py does the HTTP plumbing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import objects as o
from .billing import get_or_404
from .errors import invalid, missing
from .params import as_bool, as_int, as_list

ROUTES: list = []


def route(method: str, path: str, params: str | None = None, extra: tuple = ()):
    pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$")

    def deco(fn):
        ROUTES.append((method, pattern, fn, params, extra))
        return fn

    return deco


def retrieve_route(path: str, params: str, kind: str, label: str | None = None) -> None:
    """Stripe's retrieve call, alike for every resource: the stored object, rendered (404 when there is none)."""

    def retrieve(ctx: Ctx, id):
        return ctx.out(get_or_404(ctx.store, kind, id, label))

    route("GET", path, params)(retrieve)


@dataclass
class Ctx:
    store: object
    params: dict
    headers: dict = field(default_factory=dict)

    @property
    def expand(self) -> list[str]:
        return [e for e in as_list(self.params.get("expand")) if isinstance(e, str)]

    def out(self, obj: dict) -> dict:
        """Render a stored object and apply the request's ``expand``."""
        return o.expand(self.store, o.render(self.store, obj), self.expand)

    def page(self, objs: list[dict], url: str) -> dict:
        """Stripe list: newest first, ``limit`` / ``starting_after`` / ``ending_before``."""
        p = self.params
        objs = sorted(objs, key=lambda x: (x.get("created", 0), x.get("_seq", 0)), reverse=True)
        limit = as_int(p.get("limit"), "limit")
        limit = 10 if limit is None else limit
        if not 1 <= limit <= 100:
            raise invalid("Invalid limit: must be between 1 and 100", "limit")
        ids = [x["id"] for x in objs]
        if p.get("starting_after"):
            if p["starting_after"] not in ids:
                raise missing("object", p["starting_after"], "starting_after")
            i = ids.index(p["starting_after"]) + 1
            chunk, more = objs[i:i + limit], len(objs) > i + limit
        elif p.get("ending_before"):
            if p["ending_before"] not in ids:
                raise missing("object", p["ending_before"], "ending_before")
            j = ids.index(p["ending_before"])
            i = max(0, j - limit)
            chunk, more = objs[i:j], i > 0
        else:
            chunk, more = objs[:limit], len(objs) > limit
        result = o.list_object([o.render(self.store, x) for x in chunk], url, more)
        return o.expand(self.store, result, self.expand)


def created_filter(objs: list[dict], spec) -> list[dict]:
    """`created` as an exact int or a {gt,gte,lt,lte} range."""
    if spec in (None, ""):
        return objs
    if not isinstance(spec, dict):
        v = as_int(spec, "created")
        return [x for x in objs if x["created"] == v]
    ops = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}
    for k, v in spec.items():
        v = as_int(v, f"created[{k}]")
        objs = [x for x in objs if ops[k](x["created"], v)]
    return objs


def equal_filter(objs: list[dict], params: dict, *keys: str) -> list[dict]:
    """A list call's plain filters: for each of `keys` given a value, the objects whose field equals it."""
    for key in keys:
        if params.get(key):
            objs = [x for x in objs if x[key] == params[key]]
    return objs


def flag_filter(objs: list[dict], params: dict, *keys: str) -> list[dict]:
    """A list call's true/false filters (`active`, `is_default`): sent means filter, "false" included."""
    for key in keys:
        if key in params:
            objs = [x for x in objs if x[key] == as_bool(params[key], key)]
    return objs


def update_metadata(obj: dict, md) -> None:
    """Stripe semantics: keys merge, an empty value deletes a key, '' clears all."""
    if md is None:
        return
    if md == "":
        obj["metadata"] = {}
        return
    for k, v in md.items():
        if v == "":
            obj["metadata"].pop(k, None)
        else:
            obj["metadata"][k] = v


def diff(before: dict, after: dict, keys) -> dict:
    """previous_attributes for an update event: old values of the keys that changed."""
    return {k: before.get(k) for k in keys if before.get(k) != after.get(k)}
