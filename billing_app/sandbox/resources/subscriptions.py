"""Subscriptions: create, retrieve, list, update (cancel at period end, plan change, pause), cancel, resume."""

from __future__ import annotations

import copy

from .. import discounts as disc
from ..api import Ctx, created_filter, equal_filter, retrieve_route, route, update_metadata
from ..billing import (
    apply_plan_change, cancel_now, end_trial, get_or_404, get_required, invoice_subscription_now, item_lines, now_for, pending_lines,
    plan_change, resolve_payment_method, attach, restart_cycle, set_period, start_subscription, sub_period,
)
from ..billing import INCOMPLETE_EXPIRY, live_schedule, running_phase
from ..errors import card_declined, invalid
from ..params import as_bool, as_int, as_list

PRORATION = ("create_prorations", "none", "always_invoice")
ENDED = ("canceled", "incomplete_expired")


def changes_from(store, items_param, prefix="items") -> list[dict]:
    out = []
    for i, it in enumerate(as_list(items_param)):
        ch = {"id": it.get("id"), "deleted": as_bool(it.get("deleted"), f"{prefix}[{i}][deleted]") or False,
              "quantity": as_int(it.get("quantity"), f"{prefix}[{i}][quantity]")}
        if it.get("price"):
            ch["price"] = get_or_404(store, "price", it["price"], "price", f"{prefix}[{i}][price]")
            if ch["price"]["type"] != "recurring":
                raise invalid(f"The price `{it['price']}` is not recurring.", f"{prefix}[{i}][price]")
        elif not it.get("id"):
            raise invalid(f"Missing required param: {prefix}[{i}][price].", f"{prefix}[{i}][price]", "parameter_missing")
        out.append(ch)
    return out


@route("POST", "/v1/subscriptions", "_subscription_create_params:SubscriptionCreateParams")
def create_subscription(ctx: Ctx):
    p, store = ctx.params, ctx.store
    cust = get_or_404(store, "customer", p["customer"], param="customer")
    items = []
    for i, it in enumerate(as_list(p.get("items"))):
        items.append((get_required(store, "price", it, "price", f"items[{i}][price]"),
                      as_int(it.get("quantity"), f"items[{i}][quantity]") or 1))
    if not items:
        raise invalid("Missing required param: items.", "items", "parameter_missing")
    pm = None
    if p.get("default_payment_method"):
        pm = resolve_payment_method(store, p["default_payment_method"], "default_payment_method")
        if pm["customer"] != cust["id"]:
            attach(store, pm, cust)
    elif cust["invoice_settings"]["default_payment_method"]:
        pm = store.get("payment_method", cust["invoice_settings"]["default_payment_method"])
    behavior = p.get("payment_behavior") or "allow_incomplete"
    ts = ((p.get("trial_settings") or {}).get("end_behavior") or {}).get("missing_payment_method")
    trial_end = p.get("trial_end")
    now = now_for(store, cust["id"])
    trial_end = now if trial_end == "now" else as_int(trial_end, "trial_end")
    discounts = disc.from_params(store, p.get("discounts"), cust["id"], "discounts")
    if any(kind == "discount" for kind, _ in discounts):
        raise invalid("A new subscription takes coupons or promotion codes, not existing discounts.", "discounts")
    sub, inv, ok = start_subscription(
        store, cust, items, now, pm=pm if behavior != "default_incomplete" else None,
        trial_days=as_int(p.get("trial_period_days"), "trial_period_days"), trial_end=trial_end,
        metadata=p.get("metadata") or {}, missing_pm=ts or "create_invoice", description=p.get("description"),
        payment_behavior=behavior, cancel_at_period_end=bool(as_bool(p.get("cancel_at_period_end"), "cancel_at_period_end")),
        discounts=discounts, automatic_tax=bool(as_bool((p.get("automatic_tax") or {}).get("enabled"), "automatic_tax[enabled]")))
    if p.get("default_payment_method"):
        sub["default_payment_method"] = pm["id"]
    return ctx.out(sub)


retrieve_route("/v1/subscriptions/{id}", "_subscription_retrieve_params:SubscriptionRetrieveParams", "subscription")


@route("GET", "/v1/subscriptions", "_subscription_list_params:SubscriptionListParams")
def list_subscriptions(ctx: Ctx):
    p = ctx.params
    objs = ctx.store.all("subscription")
    status = p.get("status")
    if status == "all":
        pass
    elif status:
        objs = [s for s in objs if s["status"] == status]
    else:
        objs = [s for s in objs if s["status"] not in ENDED]  # Stripe's default hides canceled ones
    objs = equal_filter(objs, p, "customer", "test_clock")
    if p.get("price"):
        objs = [s for s in objs if any(it["price"] == p["price"] for it in s["items"]["data"])]
    objs = created_filter(objs, p.get("created"))
    return ctx.page(objs, "/v1/subscriptions")


@route("POST", "/v1/subscriptions/{id}", "_subscription_update_params:SubscriptionUpdateParams")
def update_subscription(ctx: Ctx, id):
    store, p = ctx.store, ctx.params
    sub = get_or_404(store, "subscription", id)
    update(store, sub, p)
    return ctx.out(sub)


def start_pending_update(store, sub: dict, before: dict, invoice: dict, now: int) -> None:
    after = copy.deepcopy(sub)
    after.pop("_retry", None)
    sub.clear()
    sub.update(before)
    sub["latest_invoice"] = invoice["id"]
    sub["_pending_after"] = after
    invoice["next_payment_attempt"] = None
    sub["pending_update"] = {
        # Stripe: 23 hours after the update, or the period's (or trial's) end if that comes first.
        "billing_cycle_anchor": None, "expires_at": min(now + INCOMPLETE_EXPIRY, sub_period(before)[1]),
        "subscription_items": copy.deepcopy(after["items"]["data"]), "trial_end": None, "trial_from_plan": None,
    }
    store.emit("customer.subscription.updated", sub, {"pending_update": None})


def update(store, sub: dict, p: dict) -> dict:
    """Shared by the API and the portal page, so both emit the same events."""
    now = now_for(store, sub["customer"])
    if sub["status"] in ENDED and set(p) - {"metadata", "cancellation_details", "expand"}:
        raise invalid("A canceled subscription can only update its cancellation_details and metadata.", None)
    if sub.get("schedule") and ({"cancel_at_period_end", "cancel_at"} & set(p)):
        raise invalid(
            f"The subscription is managed by the subscription schedule `{sub['schedule']}`, and updating any "
            "cancelation behavior directly is not allowed. Please update the schedule instead.", None,
        )
    before = copy.deepcopy(sub)
    behavior = p.get("proration_behavior") or "create_prorations"
    if behavior not in PRORATION:
        raise invalid("Invalid proration_behavior: must be one of create_prorations, none, or always_invoice", "proration_behavior")
    if p.get("items"):
        change = plan_change(store, sub, changes_from(store, p["items"]), behavior, now)
        invoice_before = sub.get("latest_invoice")
        apply_plan_change(store, sub, change, behavior, now)
        invoice = store.get("invoice", sub.get("latest_invoice") or "")
        if p.get("payment_behavior") == "error_if_incomplete" and sub.get("latest_invoice") != invoice_before \
                and invoice and invoice["status"] != "paid":
            # As Stripe: the change is not applied when its payment fails; the invoice is voided.
            sub.clear()
            sub.update(before)
            invoice["status"] = "void"
            store.emit("invoice.voided", invoice)
            raise card_declined()
        if p.get("payment_behavior") == "pending_if_incomplete" and sub.get("latest_invoice") != invoice_before \
                and invoice and invoice["status"] != "paid":
            # As Stripe's pending updates: the subscription stays as it was, with `pending_update`, until
            # the new invoice is paid (e.g. after 3-D Secure on the hosted invoice page); then it applies.
            start_pending_update(store, sub, before, invoice, now)
            return sub
        before = copy.deepcopy(sub)
    keys = set()
    if "cancel_at_period_end" in p:
        flag = as_bool(p["cancel_at_period_end"], "cancel_at_period_end")
        sub["cancel_at_period_end"] = bool(flag)
        sub["cancel_at"] = sub_period(sub)[1] if flag else None
        sub["canceled_at"] = now if flag else None
        keys |= {"cancel_at_period_end", "cancel_at", "canceled_at"}
    if "cancel_at" in p:
        at = as_int(p["cancel_at"], "cancel_at")
        sub["cancel_at"] = at
        sub["cancel_at_period_end"] = bool(at and at == sub_period(sub)[1])
        sub["canceled_at"] = now if at else None
        keys |= {"cancel_at_period_end", "cancel_at", "canceled_at"}
    cd = p.get("cancellation_details")
    if isinstance(cd, dict):
        for k in ("comment", "feedback"):
            if k in cd:
                sub["cancellation_details"][k] = cd[k] or None
        keys.add("cancellation_details")
    if {"cancel_at_period_end", "cancel_at"} & set(p):
        # As Stripe: a cancel set for later (period end or a chosen date) was requested; undone, no reason.
        sub["cancellation_details"]["reason"] = "cancellation_requested" if sub["cancel_at"] else None
        keys.add("cancellation_details")
    if "pause_collection" in p:
        pc = p["pause_collection"]
        if pc in ("", None):
            sub["pause_collection"] = None
        else:
            if pc.get("behavior") not in ("keep_as_draft", "mark_uncollectible", "void"):
                raise invalid("Invalid pause_collection[behavior]: must be one of keep_as_draft, mark_uncollectible, or void",
                              "pause_collection[behavior]")
            resumes_at = as_int(pc.get("resumes_at"), "pause_collection[resumes_at]")
            if resumes_at is not None and resumes_at <= now:
                raise invalid("pause_collection[resumes_at] must be in the future.", "pause_collection[resumes_at]")
            sub["pause_collection"] = {"behavior": pc["behavior"], "resumes_at": resumes_at}
        keys.add("pause_collection")
    if "discounts" in p:
        disc.set_subscription_discounts(store, sub, disc.from_params(store, p["discounts"] or None, sub["customer"], "discounts"), now)
        keys.add("discounts")
        schedule = live_schedule(store, sub)
        if schedule:  # the current phase is the subscription: it lists the discounts now running
            running_phase(schedule)["discounts"] = [disc.phase_entry("discount", d) for d in sub["discounts"]]
    if "automatic_tax" in p and isinstance(p["automatic_tax"], dict):
        enabled = bool(as_bool(p["automatic_tax"].get("enabled"), "automatic_tax[enabled]"))
        sub["automatic_tax"] = {"enabled": enabled, "liability": {"account": None, "type": "self"} if enabled else None,
                                "disabled_reason": None}
        keys.add("automatic_tax")
    if "metadata" in p:
        update_metadata(sub, p["metadata"])
        keys.add("metadata")
    if "description" in p:
        sub["description"] = p["description"] or None
        keys.add("description")
    if "default_payment_method" in p:
        if p["default_payment_method"]:
            pm = resolve_payment_method(store, p["default_payment_method"], "default_payment_method")
            if pm["customer"] != sub["customer"]:
                raise invalid("The payment method must be attached to the subscription's customer.", "default_payment_method")
            sub["default_payment_method"] = pm["id"]
        else:
            sub["default_payment_method"] = None
        keys.add("default_payment_method")
    if "trial_end" in p and sub["status"] == "trialing":
        te = now if p["trial_end"] == "now" else as_int(p["trial_end"], "trial_end")
        sub["trial_end"] = te
        set_period(sub, sub_period(sub)[0], te)
        keys |= {"trial_end"}
    previous = {k: before[k] for k in keys if before.get(k) != sub.get(k)}
    if previous:
        store.emit("customer.subscription.updated", sub, previous)
    if "trial_end" in p and sub["status"] == "trialing" and sub["trial_end"] <= now:
        end_trial(store, sub, now)
    return sub


@route("DELETE", "/v1/subscriptions/{id}", "_subscription_cancel_params:SubscriptionCancelParams")
def cancel_subscription(ctx: Ctx, id):
    p = ctx.params
    sub = get_or_404(ctx.store, "subscription", id)
    cd = p.get("cancellation_details") or {}
    cancel_now(ctx.store, sub, now_for(ctx.store, sub["customer"]),
               invoice_now=bool(as_bool(p.get("invoice_now"), "invoice_now")), prorate=bool(as_bool(p.get("prorate"), "prorate")),
               comment=cd.get("comment"), feedback=cd.get("feedback"))
    return ctx.out(sub)


@route("POST", "/v1/subscriptions/{id}/resume", "_subscription_resume_params:SubscriptionResumeParams")
def resume_subscription(ctx: Ctx, id):
    store, p = ctx.store, ctx.params
    sub = get_or_404(store, "subscription", id)
    resume(store, sub, p.get("proration_behavior") or "create_prorations")
    return ctx.out(sub)


def resume(store, sub: dict, behavior: str = "create_prorations") -> dict:
    if sub["status"] != "paused":
        raise invalid("Only a paused subscription can be resumed.", None)
    now = now_for(store, sub["customer"])
    period = restart_cycle(store, sub, now)
    store.emit("customer.subscription.updated", sub, {"status": "paused"})
    store.emit("customer.subscription.resumed", sub)
    invoice_subscription_now(store, sub, pending_lines(store, sub) + item_lines(store, sub, period), "subscription_update", now, (now, now))
    return sub


@route("GET", "/v1/subscription_items", "_subscription_item_list_params:SubscriptionItemListParams")
def list_items(ctx: Ctx):
    sub = get_or_404(ctx.store, "subscription", ctx.params["subscription"], param="subscription")
    return ctx.page(sub["items"]["data"], f"/v1/subscription_items?subscription={sub['id']}")


@route("GET", "/v1/subscription_items/{id}", "_subscription_item_retrieve_params:SubscriptionItemRetrieveParams")
def get_item(ctx: Ctx, id):
    for sub in ctx.store.all("subscription"):
        for it in sub["items"]["data"]:
            if it["id"] == id:
                return ctx.out(it)
    return ctx.out(get_or_404(ctx.store, "subscription_item", id, "subscription item"))
