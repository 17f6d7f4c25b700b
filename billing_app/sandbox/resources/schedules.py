"""Subscription schedules, the part this app uses: a schedule made from a subscription,
its phases replaced (e.g. "this plan until the period end, then that one"), released or
canceled. When a renewal crosses a phase boundary, billing.renew switches the items
(`billing.advance_phase`); when the last phase ends, `billing.end_schedule` applies end_behavior;
releasing is `billing.release_schedule`, shared by both doors."""

from __future__ import annotations

import copy

from .. import discounts as disc
from ..api import Ctx, equal_filter, retrieve_route, route, update_metadata
from ..billing import (
    SCHEDULE_LIVE, apply_plan_change, cancel_now, end_trial, get_or_404, get_required, now_for, period_end_for, phase_items,
    phase_trial_end, plan_change, release_schedule, set_period, sub_period,
)
from ..errors import invalid
from ..ids import gen_id
from ..params import as_bool, as_int, as_list
from .subscriptions import PRORATION


def _phase(store, items: list[dict], start: int, end: int | None, currency: str, proration: str,
           trial_end: int | None = None, trial: bool = False, discounts: list[dict] | None = None,
           metadata: dict | None = None) -> dict:
    first_price = store.get("price", items[0]["price"])
    return {
        "add_invoice_items": [], "application_fee_percent": None, "billing_cycle_anchor": None,
        "collection_method": None, "currency": currency, "default_payment_method": None, "default_tax_rates": [],
        "description": None, "discounts": discounts or [],
        "end_date": end if end is not None else period_end_for(start, first_price),
        "invoice_settings": None,
        "items": [{"discounts": [], "metadata": {}, "price": it["price"], "quantity": it.get("quantity") or 1,
                   "tax_rates": [], "plan": it["price"], "billing_thresholds": None} for it in items],
        "metadata": metadata or {}, "on_behalf_of": None, "proration_behavior": proration, "start_date": start,
        "transfer_data": None, "trial": trial, "trial_end": trial_end, "billing_thresholds": None,
    }


def schedule_object(id_, now, sub: dict, phases: list[dict]) -> dict:
    return {
        "id": id_, "object": "subscription_schedule", "application": None,
        "billing_mode": {"type": "flexible", "flexible": None, "updated_at": None},
        "canceled_at": None, "completed_at": None, "created": now,
        "current_phase": {"start_date": phases[0]["start_date"], "end_date": phases[0]["end_date"]},
        "customer": sub["customer"], "customer_account": None,
        "default_settings": {
            "application_fee_percent": None, "automatic_tax": {"enabled": False, "liability": None},
            "billing_cycle_anchor": "automatic", "billing_thresholds": None, "collection_method": "charge_automatically",
            "default_payment_method": None, "description": None, "invoice_settings": {"account_tax_ids": None, "days_until_due": None, "issuer": {"type": "self"}},
            "on_behalf_of": None, "transfer_data": None,
        },
        "end_behavior": "release", "livemode": False, "metadata": {}, "pause_schedules": [], "phases": phases,
        "released_at": None, "released_subscription": None, "status": "active",
        "subscription": sub["id"], "test_clock": sub.get("test_clock"),
    }


@route("POST", "/v1/subscription_schedules", "_subscription_schedule_create_params:SubscriptionScheduleCreateParams")
def create_schedule(ctx: Ctx):
    store, p = ctx.store, ctx.params
    sub = get_required(store, "subscription", p, "from_subscription",
                       message="The sandbox makes schedules only from an existing subscription: pass from_subscription.")
    if sub.get("schedule"):
        raise invalid(f"You cannot migrate a subscription that is already attached to a schedule: `{sub['schedule']}`.", "from_subscription")
    if sub["status"] in ("canceled", "incomplete_expired"):
        raise invalid("You cannot create a schedule from a canceled subscription.", "from_subscription")
    start, end = sub_period(sub)
    items = [{"price": it["price"], "quantity": it["quantity"]} for it in sub["items"]["data"]]
    now = now_for(store, sub["customer"])
    trial_end = sub["trial_end"] if sub["status"] == "trialing" else None  # a trialing subscription's phase keeps its trial
    # As on Stripe, the phase lists the subscription's discounts (by id: the same discounts run on).
    running = disc.live_discounts(store, sub["discounts"], now)
    phase = _phase(store, items, start, end, sub["currency"], "create_prorations", trial_end,
                   discounts=[disc.phase_entry("discount", d["id"]) for d in running])
    schedule = store.put(schedule_object(gen_id("sub_sched"), now, sub, [phase]))
    update_metadata(schedule, p.get("metadata"))
    sub["schedule"] = schedule["id"]
    store.emit("subscription_schedule.created", schedule)
    store.emit("customer.subscription.updated", sub, {"schedule": None})
    return ctx.out(schedule)


retrieve_route("/v1/subscription_schedules/{id}", "_subscription_schedule_retrieve_params:SubscriptionScheduleRetrieveParams", "subscription_schedule")


@route("GET", "/v1/subscription_schedules", "_subscription_schedule_list_params:SubscriptionScheduleListParams")
def list_schedules(ctx: Ctx):
    objs = equal_filter(ctx.store.all("subscription_schedule"), ctx.params, "customer")
    return ctx.page(objs, "/v1/subscription_schedules")


def _live(schedule: dict) -> None:
    if schedule["status"] not in SCHEDULE_LIVE:
        raise invalid(f"You cannot update a subscription schedule that is {schedule['status']}.", None)


@route("POST", "/v1/subscription_schedules/{id}", "_subscription_schedule_update_params:SubscriptionScheduleUpdateParams")
def update_schedule(ctx: Ctx, id):
    store, p = ctx.store, ctx.params
    schedule = get_or_404(store, "subscription_schedule", id)
    _live(schedule)
    before = copy.deepcopy(schedule)
    sub = store.get("subscription", schedule["subscription"])
    now = now_for(store, sub["customer"])
    behavior = p.get("proration_behavior") or "create_prorations"
    if behavior not in PRORATION:
        raise invalid("Invalid proration_behavior: must be one of create_prorations, none, or always_invoice", "proration_behavior")
    if p.get("end_behavior"):
        if p["end_behavior"] not in ("release", "cancel"):
            raise invalid("Invalid end_behavior: must be one of release or cancel", "end_behavior")
        schedule["end_behavior"] = p["end_behavior"]
    if "phases" in p:
        # As on Stripe, past phases stay listed; the phases sent replace the current one and those after it.
        current = schedule["current_phase"]["start_date"]
        past = [ph for ph in schedule["phases"] if ph["start_date"] < current]
        phases, start = [], current
        for i, ph in enumerate(as_list(p["phases"])):
            items = []
            for j, it in enumerate(as_list(ph.get("items"))):
                price = get_required(store, "price", it, "price", f"phases[{i}][items][{j}][price]")
                if price["type"] != "recurring":
                    raise invalid(f"The price `{price['id']}` is not recurring.", f"phases[{i}][items][{j}][price]")
                items.append({"price": price["id"], "quantity": as_int(it.get("quantity"), f"phases[{i}][items][{j}][quantity]") or 1})
            if not items:
                raise invalid(f"Missing required param: phases[{i}][items].", f"phases[{i}][items]", "parameter_missing")
            phase_start = as_int(ph.get("start_date"), f"phases[{i}][start_date]") if i == 0 and ph.get("start_date") else start
            if i == 0 and phase_start != current:
                raise invalid("You cannot change the start_date of the current phase.", f"phases[{i}][start_date]")
            end = as_int(ph.get("end_date"), f"phases[{i}][end_date]") if ph.get("end_date") else None
            proration = ph.get("proration_behavior") or "create_prorations"
            trial_end = now if ph.get("trial_end") == "now" else as_int(ph.get("trial_end"), f"phases[{i}][trial_end]")
            # A phase sent without discounts has none (Stripe: it would inherit the customer's; the
            # sandbox has no customer discounts), nor metadata: the phases sent replace the old ones.
            phase = _phase(store, items, phase_start, end, sub["currency"], proration, trial_end,
                           bool(as_bool(ph.get("trial"), f"phases[{i}][trial]")),
                           disc.phase_discounts(store, sub, ph.get("discounts"), f"phases[{i}][discounts]"),
                           _phase_metadata(ph.get("metadata"), f"phases[{i}][metadata]"))
            if phase["end_date"] <= phase_start:
                raise invalid("A phase's end_date must be after its start_date.", f"phases[{i}][end_date]")
            if trial_end is not None and not phase_start <= trial_end <= phase["end_date"]:
                raise invalid("A phase's trial_end must fall within the phase.", f"phases[{i}][trial_end]")
            phases.append(phase)
            start = phase["end_date"]
        if not phases:
            raise invalid("A schedule needs at least one phase.", "phases", "parameter_missing")
        schedule["phases"] = past + phases
        schedule["current_phase"] = {"start_date": phases[0]["start_date"], "end_date": phases[0]["end_date"]}
    update_metadata(schedule, p.get("metadata"))
    store.emit("subscription_schedule.updated", schedule, {"phases": before["phases"]} if "phases" in p else {})
    if "phases" in p:
        _current_items(store, sub, phases[0], behavior, now)
    if "phases" in p and sub["status"] == "trialing":
        _current_trial(store, sub, phases[0], now)
    if "phases" in p:
        _current_discounts(store, sub, phases[0], now)
    return ctx.out(schedule)


def _current_items(store, sub: dict, phase: dict, behavior: str, now: int) -> None:
    """The current phase is the subscription, as on Stripe: other items or quantities sent for it change
    the subscription now (prorated as the update's proration_behavior says), not at the next boundary."""
    changes = [{"id": it["id"], "price": store.get("price", planned["price"]), "quantity": planned["quantity"]}
               for it, planned in zip(sub["items"]["data"], phase_items(sub, phase))
               if (it["price"], it["quantity"]) != (planned["price"], planned["quantity"])]
    if changes:
        apply_plan_change(store, sub, plan_change(store, sub, changes, behavior, now), behavior, now)


def _current_discounts(store, sub: dict, phase: dict, now: int) -> None:
    """The current phase's discounts are the subscription's, as on Stripe: a current phase sent without
    a discount ends it now (a coupon sent for it is redeemed now)."""
    before = list(sub["discounts"])
    if disc.take_phase_discounts(store, sub, phase["discounts"], now):
        store.emit("customer.subscription.updated", sub, {"discounts": before})


def _phase_metadata(md, param: str) -> dict:
    if md in (None, ""):
        return {}
    if not isinstance(md, dict):
        raise invalid(f"Invalid object: {param}", param)
    return dict(md)


def _current_trial(store, sub: dict, phase: dict, now: int) -> None:
    """The current phase decides the subscription's trial, as on Stripe: a phase given without
    its trial_end ends the trial now; a new trial_end moves it."""
    trial_end = phase_trial_end(phase)
    if not trial_end or trial_end <= now:
        sub["trial_end"] = now
        end_trial(store, sub, now)
    elif trial_end != sub["trial_end"]:
        previous = sub["trial_end"]
        sub["trial_end"] = trial_end
        set_period(sub, sub_period(sub)[0], trial_end)
        store.emit("customer.subscription.updated", sub, {"trial_end": previous})


@route("POST", "/v1/subscription_schedules/{id}/release", "_subscription_schedule_release_params:SubscriptionScheduleReleaseParams")
def release(ctx: Ctx, id):
    store = ctx.store
    schedule = get_or_404(store, "subscription_schedule", id)
    _live(schedule)
    release_schedule(store, schedule, now_for(store, schedule["customer"]))
    return ctx.out(schedule)


@route("POST", "/v1/subscription_schedules/{id}/cancel", "_subscription_schedule_cancel_params:SubscriptionScheduleCancelParams")
def cancel_schedule(ctx: Ctx, id):
    store = ctx.store
    schedule = get_or_404(store, "subscription_schedule", id)
    _live(schedule)
    now = now_for(store, schedule["customer"])
    schedule.update(status="canceled", canceled_at=now, current_phase=None)
    sub = store.get("subscription", schedule["subscription"])
    sub["schedule"] = None
    if sub["status"] not in ("canceled", "incomplete_expired"):
        cancel_now(store, sub, now)
    store.emit("subscription_schedule.canceled", schedule)
    return ctx.out(schedule)
