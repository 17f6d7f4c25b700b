"""Reading and writing a Stripe subscription schedule (how a downgrade waits for the period end).

Stripe keeps a schedule `active` through its last phase and keeps past phases in `phases`
until end_behavior applies; `current_phase` ({start_date, end_date}) names the running one.
So the current phase is never simply phases[0], nor the next one phases[1]: every reader
takes them from here.
"""

from __future__ import annotations

from collections.abc import Callable

from billing_app.billing import gateway

LIVE_STATUSES = ("not_started", "active")


def live(schedule: object) -> dict | None:
    """An expanded schedule that still owns its subscription (Stripe refuses some updates under it)."""
    return schedule if isinstance(schedule, dict) and schedule.get("status") in LIVE_STATUSES else None


def from_current(schedule: dict) -> list[dict]:
    """The running phase first, then the ones after it (all phases while none has started)."""
    start = (schedule.get("current_phase") or {}).get("start_date")
    return [p for p in schedule.get("phases") or [] if start is None or p["start_date"] >= start]


def waiting(schedule: object) -> list[dict]:
    """The phases still to come: a change is waiting only while there is one (none in the last phase)."""
    return from_current(schedule)[1:] if live(schedule) else []


def phase_items(phase: dict) -> list[dict]:
    """A phase's items as a schedule update takes them (a price read expanded or as an id)."""
    return _as_sent(phase["items"])


def _as_sent(items: list[dict]) -> list[dict]:
    """Items, a phase's or a subscription's, as a schedule update takes them."""
    return [{"price": i["price"]["id"] if isinstance(i["price"], dict) else i["price"], "quantity": i.get("quantity") or 1}
            for i in items]


def _superseded(current_phase: dict, billed: list[dict]) -> bool:
    """The running phase no longer bills `billed`, the subscription's items: the subscription changed
    since the phase was written (a switch or quantity in the Customer Portal, a seat change), and the
    phase re-sent as it is would switch it back at once (Stripe applies the current phase now)."""
    return phase_items(current_phase) != _as_sent(billed)


def carried(phase: dict) -> dict:
    """What a phase keeps when the phases are re-sent, besides its items and dates: its discounts (by the
    existing discount's id, so the same discount runs on: a coupon sent again would be a new one), its
    tax rates (ids) and its metadata.

    Stripe replaces the phases wholesale on update: a phase sent without `discounts` loses them (and
    takes the customer's discount instead; the current one ends the subscription's coupon now), one
    without `default_tax_rates` or `metadata` loses those."""
    kept = {}
    discounts = [d for d in map(_discount_param, phase.get("discounts") or []) if d]
    if discounts:
        kept["discounts"] = discounts
    tax_rates = [t["id"] if isinstance(t, dict) else t for t in phase.get("default_tax_rates") or []]
    if tax_rates:
        kept["default_tax_rates"] = tax_rates
    if phase.get("metadata"):
        kept["metadata"] = dict(phase["metadata"])
    return kept


def _discount_param(entry: dict) -> dict | None:
    """A phase's discount as an update takes it: the discount itself when the phase names one, else the
    promotion code or coupon still to be redeemed when the phase begins."""
    for key in ("discount", "promotion_code", "coupon"):
        value = entry.get(key)
        if value:
            return {key: value["id"] if isinstance(value, dict) else value}
    return None


def write(client, subscription_id: str, schedule_id: str | None, item: dict, next_items: list[dict],
          end_behavior: str = "release") -> bool:
    """Keep `item` until the period end (a schedule's current phase, made from the subscription when
    it has none), then switch to `next_items`: a scheduled downgrade, or one put back.

    False, writing nothing, when the schedule's current phase is no longer `item`: the subscription
    changed since it was read, and a current phase updated to `item` would switch it back at once
    (Stripe applies the current phase now). That later change stands; a schedule with nothing
    waiting (one made here) is released, as it only holds the subscription."""
    if not schedule_id:
        schedule_id = gateway.call(client.v1.subscription_schedules.create, params={"from_subscription": subscription_id})["id"]
    schedule = gateway.call(client.v1.subscription_schedules.retrieve, schedule_id)
    # The running phase, not phases[0]: in its last phase a schedule still lists the past ones.
    current_phase = from_current(schedule)[0]
    if _superseded(current_phase, [item]):
        if not waiting(schedule):
            gateway.call(client.v1.subscription_schedules.release, schedule_id)
        return False
    settings = carried(current_phase)
    keep = {"items": _as_sent([item]), "start_date": current_phase["start_date"], "end_date": current_phase["end_date"], **settings}
    if current_phase.get("trial_end"):
        keep["trial_end"] = current_phase["trial_end"]  # a current phase sent without it would end the trial now
    # The new plan keeps the subscription's discounts (a retention coupon still running goes on after a
    # downgrade, its months not restarted), tax rates and metadata: a phase without them would drop them.
    then = {"items": next_items, "proration_behavior": "none", **settings}
    gateway.call(
        client.v1.subscription_schedules.update, schedule_id,
        params={"end_behavior": end_behavior, "phases": [keep, then]},
    )
    return True


def set_scheduled_quantity(client, schedule: dict, quantity: int, per_seat_minimum: Callable[[str], int | None]) -> None:
    """Give the phases from the running one on `quantity` seats wherever they bill a per-seat price
    (never below its min_seats: `per_seat_minimum(price)`, None for a flat price, which stays one item).

    Each phase names its own quantities, and Stripe sets the next phase's at the phase change: a seat
    change (a purchase, a member joining or leaving) must reach a waiting plan change this way, or the
    switch bills the seats counted when it was scheduled. The running phase bills what the subscription
    does now (`_resent_phases`)."""
    phases = _resent_phases(client, schedule)
    for phase in phases:
        items = []
        for item in phase["items"]:
            minimum = per_seat_minimum(item["price"])
            items.append(item if minimum is None else {**item, "quantity": max(quantity, minimum)})
        phase["items"] = items
    gateway.call(client.v1.subscription_schedules.update, schedule["id"], params={"phases": phases})


def add_discount(client, schedule: dict, discount_id: str) -> bool:
    """Name the subscription's discount `discount_id` in the phases from the running one (a coupon just
    applied to the subscription, such as the retention offer's, while a downgrade waits).

    Stripe keeps no discount a phase does not name: without this the coupon ends at the phase change.
    The discount is named by its id, so the same discount runs on, its months not restarted. False when
    every phase named it already (nothing written). The running phase bills what the subscription does
    now (`_resent_phases`)."""
    phases = _resent_phases(client, schedule)
    if all({"discount": discount_id} in phase.get("discounts", []) for phase in phases):
        return False
    for phase in phases:
        if {"discount": discount_id} not in phase.get("discounts", []):
            phase["discounts"] = [*phase.get("discounts", []), {"discount": discount_id}]
    gateway.call(client.v1.subscription_schedules.update, schedule["id"], params={"phases": phases})
    return True


def _resent_phases(client, schedule: dict) -> list[dict]:
    """The phases from the running one as an update re-sends them, all kept (`_resent`), except that the
    running one bills the subscription's items as Stripe has them now when it no longer names them (a
    plan switched in the Customer Portal): re-sent as it is, it would put back the plan the customer
    left, prorated. The phases after it (the change waiting) stay as they are."""
    current = from_current(schedule)
    phases = [_resent(phase, first=not i) for i, phase in enumerate(current)]
    subscription = schedule["subscription"]
    billed = gateway.call(client.v1.subscriptions.retrieve,
                          subscription if isinstance(subscription, str) else subscription["id"])["items"]["data"]
    if _superseded(current[0], billed):
        phases[0]["items"] = _as_sent(billed)
    return phases


def _resent(phase: dict, first: bool) -> dict:
    """A phase from the running one as an update re-sends it, all kept: its items, dates (the start only
    for the first, the later ones follow on), proration_behavior, trial_end and what carried() keeps."""
    planned = {"items": phase_items(phase), "end_date": phase["end_date"], **carried(phase)}
    if first:
        planned["start_date"] = phase["start_date"]
    if phase.get("proration_behavior"):
        planned["proration_behavior"] = phase["proration_behavior"]
    if phase.get("trial_end"):
        planned["trial_end"] = phase["trial_end"]  # a phase sent without it would end its trial
    return planned
