"""Events and webhook endpoints."""

from __future__ import annotations

import secrets

from .. import objects as o
from ..api import Ctx, created_filter, retrieve_route, route, update_metadata
from ..billing import get_or_404, real_now
from ..errors import invalid
from ..ids import gen_id
from ..params import as_bool, as_list


@route("GET", "/v1/events", "_event_list_params:EventListParams")
def list_events(ctx: Ctx):
    p = ctx.params
    objs = ctx.store.all("event")
    if p.get("type"):
        t = p["type"]
        if t.endswith("*"):
            objs = [e for e in objs if e["type"].startswith(t[:-1])]
        else:
            objs = [e for e in objs if e["type"] == t]
    if p.get("types"):
        types = set(as_list(p["types"]))
        objs = [e for e in objs if e["type"] in types]
    objs = created_filter(objs, p.get("created"))
    return ctx.page(objs, "/v1/events")


retrieve_route("/v1/events/{id}", "_event_retrieve_params:EventRetrieveParams", "event")


def new_endpoint(url: str, enabled_events: list, secret: str | None = None, **fields) -> dict:
    return o.webhook_endpoint(gen_id("we"), real_now(), url, enabled_events, secret or "whsec_" + secrets.token_hex(24), **fields)


@route("POST", "/v1/webhook_endpoints", "_webhook_endpoint_create_params:WebhookEndpointCreateParams")
def create_endpoint(ctx: Ctx):
    p = ctx.params
    if not p.get("url", "").startswith(("http://", "https://")):
        raise invalid("Invalid URL: must be an http(s) URL.", "url", "url_invalid")
    we = new_endpoint(p["url"], as_list(p.get("enabled_events")), description=p.get("description"),
                      metadata=p.get("metadata") or {}, api_version=p.get("api_version"))
    ctx.store.put(we)
    out = ctx.out(we)
    out["secret"] = we["_secret"]  # Stripe returns the signing secret on creation only
    return out


retrieve_route("/v1/webhook_endpoints/{id}", "_webhook_endpoint_retrieve_params:WebhookEndpointRetrieveParams", "webhook_endpoint", "webhook endpoint")


@route("POST", "/v1/webhook_endpoints/{id}", "_webhook_endpoint_update_params:WebhookEndpointUpdateParams")
def update_endpoint(ctx: Ctx, id):
    p = ctx.params
    we = get_or_404(ctx.store, "webhook_endpoint", id, "webhook endpoint")
    if "url" in p:
        we["url"] = p["url"]
    if "enabled_events" in p:
        we["enabled_events"] = as_list(p["enabled_events"])
    if "description" in p:
        we["description"] = p["description"] or None
    if "disabled" in p:
        we["status"] = "disabled" if as_bool(p["disabled"], "disabled") else "enabled"
    update_metadata(we, p.get("metadata"))
    return ctx.out(we)


@route("GET", "/v1/webhook_endpoints", "_webhook_endpoint_list_params:WebhookEndpointListParams")
def list_endpoints(ctx: Ctx):
    return ctx.page(ctx.store.all("webhook_endpoint"), "/v1/webhook_endpoints")


@route("DELETE", "/v1/webhook_endpoints/{id}", "_webhook_endpoint_delete_params:WebhookEndpointDeleteParams")
def delete_endpoint(ctx: Ctx, id):
    get_or_404(ctx.store, "webhook_endpoint", id, "webhook endpoint")
    ctx.store.delete("webhook_endpoint", id)
    return o.deleted("webhook_endpoint", id)
