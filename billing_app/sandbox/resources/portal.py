"""Billing portal configurations and sessions (the hosted page itself is in pages.py)."""

from __future__ import annotations

import copy

from .. import objects as o
from ..api import Ctx, flag_filter, retrieve_route, route, update_metadata
from ..billing import get_or_404, get_required, real_now
from ..errors import invalid, missing
from ..ids import gen_id
from ..params import as_bool, as_int, as_list

FLOW_TYPES = ("customer_update", "payment_method_update", "subscription_cancel", "subscription_pause", "subscription_update",
              "subscription_update_confirm")
# Flows that act on one subscription (flow_data[type][subscription]).
SUBSCRIPTION_FLOWS = ("subscription_cancel", "subscription_pause", "subscription_update", "subscription_update_confirm")


def build_features(f: dict | None, base: dict | None = None) -> dict:
    """Normalise the `features` hash to Stripe's response shape, with Stripe's defaults."""
    f = f or {}
    out = copy.deepcopy(base) if base else {
        "customer_update": {"allowed_updates": [], "enabled": False},
        "invoice_history": {"enabled": False},
        "payment_method_update": {"enabled": False, "payment_method_configuration": None},
        "subscription_cancel": {"cancellation_reason": {"enabled": False, "options": []}, "enabled": False,
                                "mode": "at_period_end", "proration_behavior": "none"},
        "subscription_update": {"default_allowed_updates": [], "enabled": False, "products": [],
                                "proration_behavior": "none", "schedule_at_period_end": {"conditions": []},
                                "trial_update_behavior": "end_trial", "billing_cycle_anchor": None},
        # Stripe's default pause duration: one preset option of one month.
        "subscription_pause": {"enabled": False, "duration": {
            "type": "interval_options", "interval_options": [{"interval": "month", "interval_count": 1}]}},
    }
    def flag(d, key="enabled"):
        return bool(as_bool(d.get(key), key)) if key in d else None
    for name, val in f.items():
        if not isinstance(val, dict) or name not in out:
            continue
        tgt = out[name]
        if "enabled" in val:
            tgt["enabled"] = flag(val)
        if name == "customer_update" and "allowed_updates" in val:
            tgt["allowed_updates"] = as_list(val["allowed_updates"])
        if name == "subscription_cancel":
            if val.get("mode"):
                if val["mode"] not in ("at_period_end", "immediately"):
                    raise invalid("Invalid features[subscription_cancel][mode]", "features[subscription_cancel][mode]")
                tgt["mode"] = val["mode"]
            if val.get("proration_behavior"):
                tgt["proration_behavior"] = val["proration_behavior"]
            cr = val.get("cancellation_reason")
            if isinstance(cr, dict):
                tgt["cancellation_reason"] = {"enabled": flag(cr) or False, "options": as_list(cr.get("options"))}
        if name == "subscription_update":
            if "default_allowed_updates" in val:
                tgt["default_allowed_updates"] = as_list(val["default_allowed_updates"])
            if "products" in val:
                tgt["products"] = [{"product": pr["product"], "prices": as_list(pr.get("prices")),
                                    "adjustable_quantity": _adjustable(pr.get("adjustable_quantity"))}
                                   for pr in as_list(val["products"])]
            if val.get("proration_behavior"):
                tgt["proration_behavior"] = val["proration_behavior"]
        if name == "subscription_pause" and isinstance(val.get("duration"), dict):
            d = val["duration"]
            tgt["duration"] = {"type": d["type"], "interval_options": [
                {"interval": x["interval"], "interval_count": as_int(x.get("interval_count"), "interval_count") or 1}
                for x in as_list(d.get("interval_options"))]}
    return out


def _adjustable(aq) -> dict:
    """A product's `adjustable_quantity` in the portal (Stripe's default: off, minimum 1, no maximum)."""
    aq = aq if isinstance(aq, dict) else {}
    minimum = as_int(aq.get("minimum"), "adjustable_quantity[minimum]")
    return {"enabled": bool(as_bool(aq.get("enabled"), "adjustable_quantity[enabled]")),
            "maximum": as_int(aq.get("maximum"), "adjustable_quantity[maximum]"),
            "minimum": 1 if minimum is None else minimum}


def quantity_bounds(cfg: dict, price: dict) -> tuple[int, int | None] | None:
    """(minimum, maximum) when the portal lets the customer change this price's quantity, else None:
    `quantity` among the default allowed updates, and the product's adjustable_quantity enabled."""
    su = cfg["features"]["subscription_update"]
    if not su["enabled"] or "quantity" not in su["default_allowed_updates"]:
        return None
    entry = next((pr for pr in su["products"] if pr["product"] == price["product"]), None)
    if entry is None or not entry["adjustable_quantity"]["enabled"]:
        return None
    aq = entry["adjustable_quantity"]
    return aq["minimum"], aq["maximum"]


def _business_profile(bp: dict | None):
    bp = bp or {}
    return {"headline": bp.get("headline") or None, "privacy_policy_url": bp.get("privacy_policy_url"),
            "terms_of_service_url": bp.get("terms_of_service_url")}


@route("POST", "/v1/billing_portal/configurations", "billing_portal._configuration_create_params:ConfigurationCreateParams")
def create_configuration(ctx: Ctx):
    p, store = ctx.params, ctx.store
    is_default = not store.all("billing_portal.configuration")
    cfg = o.portal_configuration(gen_id("bpc"), real_now(), build_features(p["features"]),
                                 business_profile=_business_profile(p.get("business_profile")),
                                 default_return_url=p.get("default_return_url") or None, metadata=p.get("metadata") or {},
                                 name=p.get("name") or None, is_default=is_default)
    store.put(cfg)
    store.emit("billing_portal.configuration.created", cfg)
    return ctx.out(cfg)


retrieve_route("/v1/billing_portal/configurations/{id}", "billing_portal._configuration_retrieve_params:ConfigurationRetrieveParams", "billing_portal.configuration", "configuration")


@route("POST", "/v1/billing_portal/configurations/{id}", "billing_portal._configuration_update_params:ConfigurationUpdateParams")
def update_configuration(ctx: Ctx, id):
    p, store = ctx.params, ctx.store
    cfg = get_or_404(store, "billing_portal.configuration", id, "configuration")
    if "features" in p:
        cfg["features"] = build_features(p["features"], cfg["features"])
    if "business_profile" in p:
        cfg["business_profile"] = {**cfg["business_profile"], **_business_profile(p["business_profile"])}
    if "active" in p:
        cfg["active"] = as_bool(p["active"], "active")
    if "default_return_url" in p:
        cfg["default_return_url"] = p["default_return_url"] or None
    if "name" in p:
        cfg["name"] = p["name"] or None
    update_metadata(cfg, p.get("metadata"))
    cfg["updated"] = real_now()
    store.emit("billing_portal.configuration.updated", cfg)
    return ctx.out(cfg)


@route("GET", "/v1/billing_portal/configurations", "billing_portal._configuration_list_params:ConfigurationListParams")
def list_configurations(ctx: Ctx):
    objs = flag_filter(ctx.store.all("billing_portal.configuration"), ctx.params, "active", "is_default")
    return ctx.page(objs, "/v1/billing_portal/configurations")


def default_configuration(store) -> dict:
    """Stripe uses the dashboard's default; the sandbox makes one with everything on."""
    cfg = next((c for c in store.all("billing_portal.configuration") if c["is_default"]), None)
    if cfg:
        return cfg
    features = build_features({
        "customer_update": {"enabled": "true", "allowed_updates": ["email", "name"]},
        "invoice_history": {"enabled": "true"}, "payment_method_update": {"enabled": "true"},
        "subscription_cancel": {"enabled": "true", "mode": "at_period_end"},
    })
    cfg = o.portal_configuration(gen_id("bpc"), real_now(), features, is_default=True)
    store.put(cfg)
    return cfg


def _retention(store, retention) -> dict | None:
    """flow_data[subscription_cancel][retention]: a coupon offered before the cancellation is confirmed."""
    if not retention:
        return None
    param = "flow_data[subscription_cancel][retention][coupon_offer][coupon]"
    coupon_id = (retention.get("coupon_offer") or {}).get("coupon")
    if retention.get("type") != "coupon_offer" or not coupon_id:
        raise invalid(f"Missing required param: {param}.", param, "parameter_missing")
    c = store.get("coupon", coupon_id)
    if c is None or c.get("_deleted"):
        raise missing("coupon", coupon_id, param)
    return {"coupon_offer": {"coupon": coupon_id}, "type": "coupon_offer"}


@route("POST", "/v1/billing_portal/sessions", "billing_portal._session_create_params:SessionCreateParams")
def create_session(ctx: Ctx):
    p, store = ctx.params, ctx.store
    cust = get_required(store, "customer", p, "customer")
    if p.get("configuration"):
        cfg = get_or_404(store, "billing_portal.configuration", p["configuration"], "configuration", "configuration")
    else:
        cfg = default_configuration(store)
    flow = None
    fd = p.get("flow_data")
    if fd:
        ftype = fd.get("type")
        if ftype not in FLOW_TYPES:
            raise invalid(f"Invalid flow_data[type]: must be one of {', '.join(FLOW_TYPES)}", "flow_data[type]")
        ac = fd.get("after_completion") or {}
        flow = {
            "type": ftype,
            "after_completion": {"type": ac.get("type") or "portal_homepage",
                                 "redirect": {"return_url": ac["redirect"]["return_url"]} if ac.get("redirect") else None,
                                 "hosted_confirmation": {"custom_message": (ac.get("hosted_confirmation") or {}).get("custom_message")}
                                 if ac.get("type") == "hosted_confirmation" else None},
            "customer_update": None, "subscription_cancel": None, "subscription_pause": None, "subscription_update": None,
            "subscription_update_confirm": None,
        }
        if ftype == "customer_update":
            flow["customer_update"] = {}
        if ftype == "subscription_pause" and not cfg["features"]["subscription_pause"]["enabled"]:
            raise invalid("The portal configuration does not enable subscription_pause.", "flow_data[type]")
        if ftype in SUBSCRIPTION_FLOWS:
            body = fd.get(ftype) or {}
            sub = get_required(store, "subscription", body, "subscription", f"flow_data[{ftype}][subscription]")
            if sub["customer"] != cust["id"]:
                raise invalid("The subscription does not belong to this customer.", f"flow_data[{ftype}][subscription]")
            if sub["status"] in ("canceled", "incomplete_expired"):
                raise invalid("You can't create a portal session for a canceled subscription.", f"flow_data[{ftype}][subscription]")
            if ftype == "subscription_cancel":
                flow["subscription_cancel"] = {"retention": _retention(store, body.get("retention")), "subscription": sub["id"]}
            elif ftype == "subscription_pause":
                flow["subscription_pause"] = {"subscription": sub["id"]}
            elif ftype == "subscription_update":
                flow["subscription_update"] = {"subscription": sub["id"]}
            else:
                items = as_list(body.get("items"))
                if not items:
                    raise invalid("Missing required param: flow_data[subscription_update_confirm][items].",
                                  "flow_data[subscription_update_confirm][items]", "parameter_missing")
                for i, it in enumerate(items):
                    if it.get("price"):
                        get_or_404(store, "price", it["price"], "price", f"flow_data[subscription_update_confirm][items][{i}][price]")
                flow["subscription_update_confirm"] = {"discounts": [], "subscription": sub["id"], "items": [
                    {"id": it.get("id"), "price": it.get("price"), "quantity": int(it["quantity"]) if it.get("quantity") else None} for it in items]}
    return_url = p.get("return_url") or cfg["default_return_url"]
    bps_id = gen_id("bps")
    sess = o.portal_session(bps_id, real_now(), cust["id"], cfg["id"], return_url, f"{store.base_url}/portal/{bps_id}", flow,
                            p.get("locale"))
    store.put(sess)
    return ctx.out(sess)
