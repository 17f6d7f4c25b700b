"""Per-seat billing at Stripe: the subscription item's quantity follows the members.

Accepting an invitation raises the quantity to cover the members (never below the plan's
`min_seats`, never lowering seats already bought); removing a member lowers it to
max(min_seats, members), never raising it (seats lowered in the billing portal below the members).
A downgrade scheduled for the period end (a subscription schedule) gets the new quantity in its
phases too, or Stripe would put the old one back at the phase change; and while a flat plan waits
to switch to a per-seat one, joins and leaves set that phase's quantity.
Each change re-reads the subscription from Stripe first, is refused with nothing changed when its
price is no longer the per-seat plan the caller decided on (a flat plan is never billed N times),
and is billed as SEAT_PRORATION says (create_prorations by default: the prorated amount waits for
the next invoice, so a burst of changes makes no burst of invoices). The callers
(auth/invitations.py, auth/members.py, `change_seats` here) hold the org's seat claim and change
the database only after Stripe agreed, undoing the Stripe change if the database then fails:
nobody is half-added. The undo is compare-and-set (only while Stripe still has what the change
set), so it never overwrites what a request that took over a lapsed claim decided.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from billing_app.auth.accounts import Actor, admin_now
from billing_app.billing import gateway, schedules, subscriptions
from billing_app.billing.entitlements import count_members, current_subscription
from billing_app.billing.fresh import Fresh
from billing_app.billing.profile import NO_UPCOMING_INVOICE
from billing_app.billing.prices import plan_for_price
from billing_app.billing.seats import (
    confirm_seat_claim,
    renew_seat_claim,
    required_quantity,
    seat_claim,
    seats_of,
)
from billing_app.billing.sync import resync_after_change
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.formatting import format_amount
from billing_app.models import OrgSubscription, PeriodType, Plan, PlanPeriod, Role
from billing_app.settings import get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PerSeat:
    """An org's manageable subscription on a per-seat plan, as the mirror has it."""

    sub: OrgSubscription
    plan: Plan
    period: PlanPeriod

    @property
    def unit_amount(self) -> int:
        return self.period.amount

    @property
    def currency(self) -> str:
        return self.period.currency

    @property
    def interval(self) -> str:
        return PeriodType(self.period.period_type).interval or "month"


def per_seat_subscription(org_id: int) -> PerSeat | None:
    with session_scope() as session:
        sub = current_subscription(session, org_id)
        if sub is None or not sub.is_manageable or sub.period is None or not sub.period.plan.per_seat:
            return None
        return PerSeat(sub, sub.period.plan, sub.period)


def _failed() -> AppError:
    return AppError(
        ErrorCode.STRIPE_SEAT_UPDATE_FAILED,
        "We could not update the seats with the payment provider, so nothing was changed. Please try again.",
    )


@dataclass(frozen=True)
class QuantityChange:
    org_id: int
    members: int  # the members when it was decided
    customer_id: str
    stripe_id: str
    item_id: str
    before: int
    after: int
    # Set when only this schedule's per-seat phase changed (a flat plan switching to a per-seat one at
    # the period end); the subscription's own flat item was not touched.
    schedule_id: str | None = None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def _update(client, sub: OrgSubscription, item_id: str, quantity: int) -> None:
    try:
        gateway.call(
            client.v1.subscriptions.update, sub.stripe_id,
            params={
                "items": [{"id": item_id, "quantity": quantity}],
                "proration_behavior": get_settings().seat_proration,
                # Billed at once (always_invoice) and declined: Stripe applies nothing.
                "payment_behavior": "error_if_incomplete",
            },
        )
    except gateway.StripeFailure as failure:
        if failure.card_error:
            raise AppError(
                ErrorCode.STRIPE_SEAT_UPDATE_FAILED,
                "The card on file was declined for the new seat, so nothing was changed. "
                "Update the payment method on the billing page and try again.",
            ) from None
        raise subscriptions._refusal(client, sub, failure, _failed()) from None


def _per_seat_minimum(price_id: str) -> int | None:
    """min_seats of the per-seat plan this price belongs to; None for a flat plan (or a price not ours)."""
    with session_scope() as session:
        plan = plan_for_price(session, price_id)
        return plan.min_seats if plan is not None and plan.per_seat else None


def _price_id(item: dict) -> str:
    price = item["price"]
    return price if isinstance(price, str) else price["id"]


def _carry_into_schedule(client, schedule: dict, quantity: int) -> None:
    """A plan change waiting for the period end keeps the seats: its phases take `quantity`."""
    schedules.set_scheduled_quantity(client, schedule, quantity, _per_seat_minimum)


def _scheduled_per_seat(schedule: object) -> list[dict]:
    """The per-seat items of a schedule's waiting phases: a flat plan switching to a per-seat one."""
    return [item for phase in schedules.waiting(schedule) for item in schedules.phase_items(phase)
            if _per_seat_minimum(item["price"]) is not None]


def _plan_moved() -> AppError:
    return AppError(
        ErrorCode.SEAT_CHANGE_IN_PROGRESS,
        "Your organization's plan changed while the seats were being updated, so nothing was changed. "
        "Please try again.",
    )


def _fresh_per_seat(client, per_seat: PerSeat, failed: AppError) -> Fresh:
    """The subscription as Stripe has it now, still on the price `per_seat` was decided on.

    The plan may have changed since (another tab, the Customer Portal, its webhook not processed
    yet): a quantity sent to a flat price would bill that plan N times. Then the mirror catches up
    and the action is refused (409 SEAT_CHANGE_IN_PROGRESS); tried again, it decides on the new plan.
    """
    fresh = subscriptions._fresh(client, per_seat.sub, failed)
    if _price_id(fresh.stripe_sub["items"]["data"][0]) != per_seat.sub.stripe_price_id:
        resync_after_change(fresh.customer_id)
        raise _plan_moved()
    return fresh


def _agrees(sub: OrgSubscription, stripe_sub: dict) -> bool:
    return stripe_sub["status"] == sub.status and _price_id(stripe_sub["items"]["data"][0]) == sub.stripe_price_id


def per_seat_at_stripe(org_id: int) -> PerSeat | None:
    """`per_seat_subscription`, decided on the plan Stripe bills now, not on the mirror alone.

    Where they differ (a Customer Portal switch whose webhook is not processed yet) the customer's
    mirror is synced first, so the seat cap the caller checks next is the new plan's; refused
    (SEAT_CHANGE_IN_PROGRESS) if they still differ. One Stripe read when the org has a subscription
    to manage, none otherwise. Call under the org's seat claim.
    """
    with session_scope() as session:
        sub = current_subscription(session, org_id)
    if sub is None or not sub.is_manageable:
        return None
    client = gateway.stripe_client()
    try:
        fresh = Fresh(gateway.call(client.v1.subscriptions.retrieve, sub.stripe_id))
    except gateway.StripeFailure:
        raise gateway.unavailable() from None
    if not _agrees(sub, fresh.stripe_sub):
        resync_after_change(fresh.customer_id)
        with session_scope() as session:
            synced = current_subscription(session, org_id)
        if synced is None or not synced.is_manageable:
            return None  # ended at Stripe: the free tier's caps now
        if synced.stripe_id != sub.stripe_id or not _agrees(synced, fresh.stripe_sub):
            raise _plan_moved()
    return per_seat_subscription(org_id)


def set_quantity(per_seat: PerSeat, decide: Callable[[int], int]) -> QuantityChange:
    """Set the quantity to decide(quantity Stripe has now), when that differs, in the subscription and
    in a scheduled downgrade's phases. Raises (409/502) with nothing changed when Stripe refuses or
    the subscription is no longer on `per_seat`'s price. Call under the org's seat claim."""
    client = gateway.stripe_client()
    fresh = _fresh_per_seat(client, per_seat, _failed())
    item = fresh.stripe_sub["items"]["data"][0]
    before = item.get("quantity") or 1
    change = QuantityChange(per_seat.sub.org_id, _members(per_seat.sub.org_id), fresh.customer_id, per_seat.sub.stripe_id,
                            item["id"], before, decide(before))
    if not change.changed:
        return change
    _update(client, per_seat.sub, change.item_id, change.after)
    if fresh.schedule_id:
        try:
            _carry_into_schedule(client, fresh.stripe_sub["schedule"], change.after)
        except gateway.StripeFailure as failure:
            undo(change)  # the subscription back as it was: nothing half-done
            raise subscriptions._refusal(client, per_seat.sub, failure, _failed()) from None
    return change


def _switching_to_per_seat(session, org_id: int) -> OrgSubscription | None:
    """The org's subscription when the mirror has its flat plan switching to a per-seat one at the period end."""
    sub = current_subscription(session, org_id)
    waiting = sub is not None and sub.is_manageable and sub.scheduled_period is not None and sub.scheduled_period.plan.per_seat
    return sub if waiting else None


def per_seat_switch_waiting(org_id: int) -> bool:
    """`set_scheduled_seats` calls Stripe for this org (the mirror has a per-seat switch waiting)."""
    with session_scope() as session:
        return _switching_to_per_seat(session, org_id) is not None


def set_scheduled_seats(org_id: int, members: int) -> QuantityChange | None:
    """A flat plan switching to a per-seat one at the period end (a schedule's waiting phase): the
    members joining or leaving before then set that phase's quantity, max(min_seats, members), as they
    would the per-seat plan's own; the flat plan stays one item. None when no such switch waits
    (Stripe read only when the mirror has one scheduled). Call under the org's seat claim, when the
    plan Stripe bills now is flat (`per_seat_at_stripe` is None)."""
    with session_scope() as session:
        sub = _switching_to_per_seat(session, org_id)
    if sub is None:
        return None
    client = gateway.stripe_client()
    fresh = subscriptions._fresh(client, sub, _failed())
    scheduled = _scheduled_per_seat(fresh.stripe_sub.get("schedule"))
    if not scheduled:
        return None
    item = fresh.stripe_sub["items"]["data"][0]
    before = scheduled[0]["quantity"]
    needed = required_quantity(_per_seat_minimum(scheduled[0]["price"]), members)
    change = QuantityChange(org_id, _members(org_id), fresh.customer_id, sub.stripe_id, item["id"], before, needed,
                            schedule_id=fresh.schedule_id)
    if change.changed:
        try:
            _carry_into_schedule(client, fresh.stripe_sub["schedule"], change.after)
        except gateway.StripeFailure as failure:
            raise subscriptions._refusal(client, sub, failure, _failed()) from None
    return change


def _members(org_id: int) -> int:
    with session_scope() as session:
        return count_members(session, org_id)


def undo(change: QuantityChange) -> None:
    """Put the quantity back after the database refused what Stripe already agreed to (best effort).

    Compare-and-set: only while Stripe still has `change.after`. A seat claim that lapsed during the
    Stripe call let another request decide meanwhile: a quantity it set since stands (logged, not
    overwritten). One that moved the members the way this change went, without changing the
    quantity, decided with this change's seats in place: an acceptance joined on the seat a raise
    bought (not put back below the members), a removal found the seats a lowering left enough for
    the members left (left as they are)."""
    if not change.changed:
        return
    try:
        members = _members(change.org_id)
    except SQLAlchemyError:  # the database failed, likely why this is undone: judged on the members decided on
        members = change.members
    raised = change.after > change.before
    if raised and members > change.members:
        back = max(change.before, members)
    elif not raised and members < change.members:
        back = max(change.after, members)
    else:
        back = change.before
    if back == change.after:
        resync_after_change(change.customer_id)
        return
    client = gateway.stripe_client()
    try:
        if change.schedule_id:
            schedule = gateway.call(client.v1.subscription_schedules.retrieve, change.schedule_id)
            now = next((item["quantity"] for item in _scheduled_per_seat(schedule)), None)
            if now != change.after:
                _left_as_changed_since(change, now, back)
                return
            _carry_into_schedule(client, schedule, back)
            return
        fresh = Fresh(gateway.call(client.v1.subscriptions.retrieve, change.stripe_id, params={"expand": ["schedule"]}))
        item = fresh.stripe_sub["items"]["data"][0]
        now = (item.get("quantity") or 1) if item["id"] == change.item_id else None
        if now != change.after:
            _left_as_changed_since(change, now, back)
            return
        updated = gateway.call(
            client.v1.subscriptions.update, change.stripe_id,
            params={"items": [{"id": change.item_id, "quantity": back}],
                    "proration_behavior": get_settings().seat_proration, "expand": ["schedule"]},
        )
        schedule = schedules.live(updated.get("schedule"))
        if schedule:
            _carry_into_schedule(client, schedule, back)
    except gateway.StripeFailure as failure:
        log.error("seat quantity of %s left at %s (wanted %s back): %s", change.stripe_id, change.after, back, failure.message)
    finally:
        resync_after_change(change.customer_id)


def _left_as_changed_since(change: QuantityChange, now: int | None, back: int) -> None:
    log.warning("seat quantity of %s not put back to %s: it is %s now, not the %s set (changed since under the seat claim)",
                change.schedule_id or change.stripe_id, back, now, change.after)


@contextmanager
def undone_on_failure(change: QuantityChange | None) -> Iterator[None]:
    """The database write that goes with a Stripe quantity change: when it fails, Stripe goes back too."""
    try:
        yield
    except Exception:  # refused, a unique clash or the database failing
        if change is not None:
            undo(change)
        raise


def resync_if_changed(change: QuantityChange | None) -> None:
    """After the write committed (and the seat claim is let go): mirror what Stripe now has."""
    if change is not None and change.changed:
        resync_after_change(change.customer_id)


@dataclass(frozen=True)
class SeatPrices:
    """What moving to some seats costs, from Stripe's previews (its discounts applied as it bills them)."""

    from_seats: int  # the quantity Stripe had when priced: the change priced is from there
    prorated: int  # this change's difference for the rest of this period (negative: a credit)
    per_period: dict[int, int]  # seats -> each period's bill for them, after the discounts running then, with tax
    due_now: int  # what billing the change at once charges (always_invoice: earlier pending items too)


def _preview(client, per_seat: PerSeat, customer_id: str, item_id: str, quantity: int, behavior: str) -> dict | None:
    """Stripe's preview of the subscription at `quantity` seats; None for a renewal there is none of
    (Stripe's "no upcoming invoice": the subscription ends at the period end)."""
    try:
        return gateway.call(
            client.v1.invoices.create_preview,
            params={
                "customer": customer_id,
                "subscription": per_seat.sub.stripe_id,
                "subscription_details": {"items": [{"id": item_id, "quantity": quantity}], "proration_behavior": behavior},
            },
        )
    except gateway.StripeFailure as failure:
        if behavior != "always_invoice" and failure.code == NO_UPCOMING_INVOICE:
            return None
        raise subscriptions._refusal(client, per_seat.sub, failure, gateway.unavailable()) from None


def _seat_prices(per_seat: PerSeat, quantity: int, per_period_of: tuple[int, ...]) -> SeatPrices:
    """Moving to `quantity` seats, from Stripe's previews: the change's prorated difference, what
    billing it at once charges, and the next renewal at each of `per_period_of` seats. Stripe prices
    them with the subscription's discounts, so a coupon holder is shown what it will pay, and a coupon
    ending before the renewal is not applied to it."""
    client = gateway.stripe_client()
    fresh = _fresh_per_seat(client, per_seat, gateway.unavailable())
    item = fresh.stripe_sub["items"]["data"][0]
    current = item.get("quantity") or 1

    def preview(seats: int, behavior: str) -> dict | None:
        return _preview(client, per_seat, fresh.customer_id, item["id"], seats, behavior)

    renewals = {seats: preview(seats, "none") for seats in {*per_period_of, quantity}}
    per_period = {
        seats: per_seat.unit_amount * seats if renewals[seats] is None else _period_bill(renewals[seats], item["id"])
        for seats in per_period_of  # no renewal: the list price
    }
    prorated = due_now = 0
    if current != quantity:
        # This change alone: the renewal with its prorations less the same renewal without them. Both
        # carry what earlier changes left pending, which a preview billing the change at once
        # (always_invoice) sweeps into its total too.
        prorating, plain = preview(quantity, "create_prorations"), renewals[quantity]
        billed_now = get_settings().seat_proration == "always_invoice"
        at_once = preview(quantity, "always_invoice") if billed_now or None in (prorating, plain) else None
        if billed_now:
            due_now = at_once["amount_due"]
        if None in (prorating, plain):  # no renewal: billed at once, less what earlier changes left pending
            prorated = at_once["total"] - _pending(client, fresh.customer_id, per_seat.sub.stripe_id)
        else:
            prorated = prorating["total"] - plain["total"]
    return SeatPrices(current, prorated, per_period, due_now)


def _pending(client, customer_id: str, stripe_id: str) -> int:
    """The subscription's invoice items waiting for its next invoice (earlier changes' prorations)."""
    try:
        items = gateway.call(client.v1.invoice_items.list, params={"customer": customer_id, "pending": True, "limit": 100})
    except gateway.StripeFailure:
        raise gateway.unavailable() from None
    return sum(ii["amount"] for ii in items["data"]
               if ((ii.get("parent") or {}).get("subscription_details") or {}).get("subscription") == stripe_id)


def _period_bill(renewal: dict, item_id: str) -> int:
    """What the renewal bills for the item's period: after its discounts, with its tax (as the prorated
    figure, a difference of totals, is). An inclusive tax is in the amount already."""
    return sum(
        line["amount"] - sum(d["amount"] for d in line.get("discount_amounts") or [])
        + sum(t["amount"] for t in line.get("taxes") or [] if t.get("tax_behavior") != "inclusive")
        for line in renewal["lines"]["data"] if _period_line_of(line, item_id)
    )


def _period_line_of(line: dict, item_id: str) -> bool:
    """The line billing the period of this subscription item (not a proration, not another item)."""
    details = (line.get("parent") or {}).get("subscription_item_details") or {}
    return details.get("subscription_item") == item_id and not details.get("proration")


# --- what inviting one more costs ---------------------------------------------------------------------


@dataclass(frozen=True)
class CostPreview:
    seats_added: int
    amount: int  # added to each period's bill (after the org's discounts, with tax), in minor units
    currency: str
    interval: str  # month | year
    prorated: int  # for the rest of the current period
    message: str


def _billing_note(prices: SeatPrices, currency: str) -> str:
    proration = get_settings().seat_proration
    if proration == "none":
        return "; nothing now (billed from the next renewal)"
    when = "on the next invoice" if proration == "create_prorations" else "charged when the invitation is accepted"
    if proration == "always_invoice" and prices.due_now != max(prices.prorated, 0):
        # That invoice also takes what earlier changes left pending, less any account credit.
        when = f"{format_amount(prices.due_now, currency)} charged when the invitation is accepted, with the pending charges and credit"
    return f"; {format_amount(prices.prorated, currency)} now, prorated ({when})"


def invite_cost(org_id: int, *, including_new: bool = True) -> CostPreview | None:
    """What one more member costs on a per-seat plan (None on a flat plan or the free tier).

    `including_new`: the new invitation is already among the pending ones (after inviting).
    """
    per_seat = per_seat_subscription(org_id)
    if per_seat is None:
        return None
    with session_scope() as session:
        seats = seats_of(session, org_id)
    purchased = seats.purchased or 1
    # Everyone counted once the new one joins: members and pending invitations (each reserves a seat).
    taking = seats.used + seats.pending + (0 if including_new else 1)
    # The seats one more person adds: what all of them would need, beyond what the others already need.
    before = max(purchased, required_quantity(seats.min_seats, taking - 1))
    added = required_quantity(seats.min_seats, taking) - before
    if added <= 0:
        spare = max(before - (taking - 1), 1)
        return CostPreview(0, 0, per_seat.currency, per_seat.interval, 0,
                           f"uses one of your {spare} unused paid seats; no extra charge")
    after = purchased + added
    prices = _seat_prices(per_seat, after, (purchased, after))
    prorated = prices.prorated  # the seats' price for the rest of this period
    amount = prices.per_period[after] - prices.per_period[purchased]
    what = "adds" if added == 1 else f"adds {added} seats:"
    message = f"{what} {format_amount(amount, per_seat.currency)} a {per_seat.interval}" + _billing_note(prices, per_seat.currency)
    return CostPreview(added, amount, per_seat.currency, per_seat.interval, prorated, message)


# --- buying seats: POST /api/subscriptions/seats -----------------------------------------------------------


@dataclass(frozen=True)
class SeatChange:
    from_seats: int
    to_seats: int
    members: int
    unit_amount: int
    currency: str
    interval: str
    recurring_amount: int  # each period's bill for the seats after the change (after the discounts, with tax)
    prorated_amount: int  # for the rest of this period (negative: a credit)
    amount_due_now: int  # billed at once (SEAT_PRORATION=always_invoice: with what is pending), else 0
    applied: bool


def change_seats(actor: Actor, seats: int, *, preview: bool) -> SeatChange:
    """Buy more seats, or give back unused ones (never below the members, nor min_seats). Applied, it
    reports what it charged: priced again under the seat claim when the quantity moved meanwhile.
    A claim that lapsed during the Stripe call is refused (409 SEAT_CHANGE_IN_PROGRESS), the change
    put back: the members it was decided on may have changed meanwhile."""
    org_id = actor.require_role(Role.ADMIN)
    subscriptions._manageable_subscription(org_id)  # the usual refusals: none, lifetime, ended
    per_seat = per_seat_subscription(org_id)
    if per_seat is None:
        raise AppError(ErrorCode.NOT_PER_SEAT, "Your plan is not billed per seat: its seats come with the plan.")
    if seats < per_seat.plan.min_seats:
        raise AppError(ErrorCode.VALIDATION_ERROR, f"The {per_seat.plan.name} plan needs at least {per_seat.plan.min_seats} seats.")

    def refuse_below_members() -> int:
        with session_scope() as session:
            members = count_members(session, org_id)
        if seats < members:
            raise AppError(
                ErrorCode.SEATS_BELOW_MEMBERS,
                f"Your organization has {members} members, so it needs at least {members} seats. Remove members first.",
            )
        return members

    members = refuse_below_members()
    prices = _seat_prices(per_seat, seats, (seats,))
    before, applied = prices.from_seats, False
    if not preview:

        def priced_from(current: int) -> int:
            nonlocal prices
            if current != prices.from_seats:  # another change landed meanwhile (it held the claim): price it from here
                prices = _seat_prices(per_seat, seats, (seats,))
            renew_seat_claim(org_id)  # pricing took Stripe calls: the write gets a whole claim
            return seats

        with seat_claim(org_id):
            admin_now(actor)  # the role as it is now: the request may have waited for the claim
            members = refuse_below_members()
            change = set_quantity(per_seat, priced_from)
            with undone_on_failure(change), session_scope() as session:
                # Not lapsed during the Stripe call: nobody joined meanwhile on seats this gives back.
                confirm_seat_claim(session, org_id)
        resync_after_change(change.customer_id)
        before, applied = change.before, True
    return SeatChange(
        from_seats=before, to_seats=seats, members=members, unit_amount=per_seat.unit_amount,
        currency=per_seat.currency, interval=per_seat.interval, recurring_amount=prices.per_period[seats],
        prorated_amount=prices.prorated, amount_due_now=prices.due_now, applied=applied,
    )
