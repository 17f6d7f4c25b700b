"""Cancel, reactivate and change an org's subscription.

Each action re-reads the subscription (and its schedule) from Stripe right before acting and
decides on that, so a mirror a webhook behind never turns into "please try again": a state that
makes the action impossible is a 409 saying what the state is now. Each ends by re-syncing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import structlog

from billing_app.auth.accounts import Actor, admin_now
from billing_app.billing import gateway, schedules, set_aside
from billing_app.billing.fresh import Fresh
from billing_app.billing.entitlements import count_members, current_subscription
from billing_app.billing.prices import period_for_price, plan_for_price
from billing_app.billing.seats import (
    refuse_plan_too_small,
    renew_seat_claim,
    required_quantity,
    seat_claim,
)
from billing_app.billing.sync import resync_after_change
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.formatting import format_datetime
from billing_app.models import (
    OrgSubscription,
    PeriodType,
    PlanPeriod,
    Role,
)

log = structlog.get_logger(__name__)


def _manageable_subscription(org_id: int) -> OrgSubscription:
    """Which subscription to act on: the org's own row (only our row ties an org to Stripe)."""
    with session_scope() as session:
        sub = current_subscription(session, org_id)
    if sub is None:
        raise AppError(ErrorCode.SUBSCRIPTION_NOT_FOUND, "Your organization has no subscription.")
    if sub.one_off:
        raise AppError(ErrorCode.LIFETIME_NOT_CHANGEABLE, "A lifetime plan is paid once: there is nothing to cancel or change.")
    if not sub.is_manageable:
        raise _ended()
    return sub


def _ended() -> AppError:
    return AppError(ErrorCode.SUBSCRIPTION_ALREADY_CANCELED, "This subscription has already ended. Subscribe again from the pricing page.")


def _fresh(client, sub: OrgSubscription, failed: AppError) -> Fresh:
    """Re-read the subscription and its schedule from Stripe; an ended one is refused (and synced).
    `failed` is the action's own 502, raised when Stripe cannot be read."""
    try:
        fresh = Fresh(gateway.call(client.v1.subscriptions.retrieve, sub.stripe_id, params={"expand": ["schedule"]}))
    except gateway.StripeFailure:
        raise failed from None
    if fresh.ended:
        resync_after_change(fresh.customer_id)
        raise _ended()
    return fresh


def _refusal(client, sub: OrgSubscription, failure: gateway.StripeFailure, otherwise: AppError) -> AppError:
    """Stripe refused an action: when the subscription changed meanwhile, say what it is now (409).

    `otherwise` (a 502) stays for Stripe being down or failing, and for refusals the state does
    not explain.
    """
    if failure.status is None or failure.status >= 500 or failure.card_error:
        return otherwise
    try:
        _fresh(client, sub, otherwise)
    except AppError as conflict:
        return conflict
    return otherwise


def _release_schedule(client, fresh: Fresh) -> None:
    """Drop a schedule Stripe has on the subscription (known to the mirror or not)."""
    if fresh.schedule_id:
        gateway.call(client.v1.subscription_schedules.release, fresh.schedule_id)


@contextlib.contextmanager
def _schedule_set_aside(client, sub: OrgSubscription, fresh: Fresh) -> Iterator[None]:
    """Release the schedule (a scheduled change) for an update Stripe refuses under one; when the
    update then fails, put the same change back, so a failed action never drops it unseen."""
    schedule = fresh.stripe_sub["schedule"] if fresh.schedule_id else None
    _release_schedule(client, fresh)
    try:
        yield
    except Exception:
        if schedule is not None:
            _restore_schedule(client, sub, fresh, schedule)
        raise


def _restore_schedule(client, sub: OrgSubscription, fresh: Fresh, schedule: dict) -> None:
    """Re-create a released schedule's next phase, if the subscription is still as it was (an action
    that went through despite its error keeps its effect). A restore that fails is logged: the
    caller's re-sync then shows the change as gone, which is the truth at Stripe."""
    later = schedules.waiting(schedule)
    try:
        now = Fresh(gateway.call(client.v1.subscriptions.retrieve, sub.stripe_id, params={"expand": ["schedule"]}))
        unchanged = not now.ended and not now.schedule_id and not now.stripe_sub.get("pending_update") \
            and now.canceling == fresh.canceling and now.plan_and_quantity == fresh.plan_and_quantity
        if unchanged and later:
            schedules.write(client, sub.stripe_id, None, fresh.stripe_sub["items"]["data"][0],
                            schedules.phase_items(later[0]), schedule.get("end_behavior") or "release")
    except gateway.StripeFailure as failure:
        log.error("billing.scheduled_change_lost", subscription=sub.stripe_id, schedule=schedule["id"],
                  phases=[schedules.phase_items(p) for p in later], error=failure.message)


@contextlib.contextmanager
def _acting_on(sub: OrgSubscription, failed: AppError) -> Iterator[tuple[object, Fresh]]:
    """Decide and act on the subscription as Stripe has it now; the mirror follows whatever happened.

    A Stripe refusal becomes a 409 when the state explains it, else `failed` (the action's 502);
    every exit, refusals included, re-syncs, so the page shows what is true.
    """
    client = gateway.stripe_client()
    fresh = _fresh(client, sub, failed)
    try:
        yield client, fresh
    except gateway.StripeFailure as failure:
        raise _refusal(client, sub, failure, failed) from None
    finally:
        resync_after_change(fresh.customer_id)


@contextlib.contextmanager
def _admin_acting_on(actor: Actor, failed: AppError) -> Iterator[tuple[OrgSubscription, object, Fresh]]:
    """An admin's action on the org's manageable subscription: `_acting_on` it, yielding it too."""
    actor.require_role(Role.ADMIN)
    sub = _manageable_subscription(admin_now(actor).require_role(Role.ADMIN))  # as it is now, after any wait
    with _acting_on(sub, failed) as (client, fresh):
        yield sub, client, fresh


# Stripe's cancellation reasons (cancellation_details.feedback), asked in the cancellation flow.
CANCELLATION_FEEDBACK = ("too_expensive", "missing_features", "switched_service", "unused", "customer_service",
                         "too_complex", "low_quality", "other")


def cancel(actor: Actor, *, at_period_end: bool = True, reason: str | None = None, feedback: str | None = None) -> None:
    """`reason` is the admin's own words (Stripe's cancellation comment); `feedback` one of Stripe's reasons."""
    actor.require_role(Role.ADMIN)
    sub = _manageable_subscription(admin_now(actor).require_role(Role.ADMIN))  # as it is now, after any wait
    if feedback is not None and feedback not in CANCELLATION_FEEDBACK:
        raise AppError(ErrorCode.VALIDATION_ERROR, f"Unknown cancellation reason {feedback!r}.")
    failed = AppError(ErrorCode.STRIPE_CANCELLATION_FAILED, "We could not cancel the subscription. Please try again.")
    with _acting_on(sub, failed) as (client, fresh):
        if at_period_end and fresh.canceling:
            raise AppError(ErrorCode.SUBSCRIPTION_ALREADY_CANCELED, "This subscription is already set to cancel at the end of the period.")
        said = {k: v for k, v in {"comment": reason[:500] if reason else None, "feedback": feedback}.items() if v}
        details = {"cancellation_details": said} if said else {}
        # A pending downgrade's schedule would own the subscription; the cancellation replaces it.
        with _schedule_set_aside(client, sub, fresh):
            if at_period_end:
                gateway.call(client.v1.subscriptions.update, sub.stripe_id, params={"cancel_at_period_end": True, **details})
            else:
                gateway.call(client.v1.subscriptions.cancel, sub.stripe_id, params=details)


def reactivate(actor: Actor) -> None:
    failed = AppError(ErrorCode.STRIPE_REACTIVATION_FAILED, "We could not reactivate the subscription. Please try again.")
    with _admin_acting_on(actor, failed) as (sub, client, fresh):
        if not fresh.canceling:
            raise AppError(ErrorCode.SUBSCRIPTION_NOT_CANCELING, "This subscription is not set to cancel.")
        # Stripe refuses cancel-behaviour changes under a schedule (one left by a change made meanwhile).
        # One of the two (Stripe may refuse both in one request): cancel_at_period_end also set
        # cancel_at to the period end, and unsetting the flag clears it; a chosen date is unset.
        undo = {"cancel_at_period_end": False} if fresh.stripe_sub.get("cancel_at_period_end") else {"cancel_at": ""}
        with _schedule_set_aside(client, sub, fresh):
            gateway.call(client.v1.subscriptions.update, sub.stripe_id, params=undo)


def cancel_scheduled_change(actor: Actor) -> None:
    """Keep the current plan: drop a downgrade that was waiting for the period end, or one set aside
    for an upgrade awaiting 3-D Secure, which would come back if the upgrade lapsed (set_aside.py).
    Under the org's seat claim, as plan changes are: never beside an upgrade being made."""
    org_id = actor.require_role(Role.ADMIN)
    failed = AppError(ErrorCode.STRIPE_PLAN_CHANGE_FAILED, "We could not keep your current plan. Please try again.")
    with seat_claim(org_id):
        sub = _manageable_subscription(admin_now(actor).require_role(Role.ADMIN))  # as it is now, after the wait
        with set_aside.dropped(sub.id) as was_set_aside, _acting_on(sub, failed) as (client, fresh):
            if not fresh.change_waiting and not was_set_aside:
                raise AppError(ErrorCode.NO_SCHEDULED_CHANGE, "No plan change is scheduled: your organization stays on its current plan.")
            _release_schedule(client, fresh)


@dataclass(frozen=True)
class PlanChange:
    from_plan: str
    to_plan: str
    upgrade: bool
    amount_due_now: int
    currency: str
    applied: bool
    # When it takes effect: now for an upgrade, the period end for a downgrade.
    effective_at: datetime | None = None
    # An upgrade whose payment waits for the customer's bank (3-D Secure): Stripe's hosted invoice
    # page, where confirming it applies the change (a pending update); `applied` is False until then.
    confirm_url: str | None = None


def _monthly_value(period: PlanPeriod) -> float:
    return period.amount / 12 if period.period_type == PeriodType.YEARLY.value else period.amount


def change_plan(actor: Actor, period_id: int, *, preview: bool) -> PlanChange:
    """Move to another recurring period. An upgrade applies now, billing the prorated difference;
    a downgrade waits for the period end. A plan whose seat cap is below the members is refused
    (409 SEAT_LIMIT_EXCEEDED); the change is made under the org's seat claim, so no invitation is
    accepted meanwhile. The claim is renewed right before the Stripe write (the reads before it take
    Stripe calls); one that lapsed and was taken meanwhile (a member may have joined on the old plan)
    refuses the change with nothing changed (409 SEAT_CHANGE_IN_PROGRESS)."""
    org_id = actor.require_role(Role.ADMIN)
    if preview:
        return _change_plan(actor, org_id, period_id, preview=True)
    with seat_claim(org_id):
        return _change_plan(admin_now(actor), org_id, period_id, preview=False)  # as it is now, after the wait


def _change_plan(actor: Actor, org_id: int, period_id: int, *, preview: bool) -> PlanChange:
    sub = _manageable_subscription(org_id)
    with session_scope() as session:
        target = session.get(PlanPeriod, period_id)
        target_plan = target.plan if target else None
    if target is None or not target.active or target_plan is None or not target_plan.active or not target.stripe_price_id:
        raise AppError(ErrorCode.SUBSCRIPTION_PERIOD_NOT_FOUND, "That plan or billing period is not available.")
    if target.period_type == PeriodType.ALL_TIME.value:
        raise AppError(ErrorCode.VALIDATION_ERROR, "A lifetime plan is bought once from the pricing page, not switched to.")
    with session_scope() as session:
        refuse_plan_too_small(session, org_id, target_plan)
        members = count_members(session, org_id)
    client = gateway.stripe_client()
    fresh = _fresh(client, sub, gateway.unavailable())
    with session_scope() as session:
        # The plan it is on now, by Stripe's price (the mirror's row when the price is not ours).
        current = period_for_price(session, fresh.stripe_sub["items"]["data"][0].get("price"))
        current = current or session.get(OrgSubscription, sub.id).period
        current_plan = current.plan if current else None
    if target_plan.legacy != bool(current_plan and current_plan.legacy):
        raise AppError(ErrorCode.SUBSCRIPTION_PERIOD_NOT_FOUND, "That plan is not available to your organization.")
    if fresh.price_id == target.stripe_price_id or (current is not None and current.id == target.id):
        # The same period on an older price is the same plan: moving to its new price is no change asked for.
        raise AppError(ErrorCode.SAME_PLAN, "You are already on this plan.")
    awaiting = _pending_upgrade(client, fresh)
    if fresh.canceling:
        resync_after_change(fresh.customer_id)
        raise AppError(
            ErrorCode.SUBSCRIPTION_CANCELING,
            "This subscription is set to cancel at the end of the period. Reactivate it before changing the plan.",
        )
    # Seats: a per-seat plan bills the members (at least min_seats, and never fewer than bought); a flat one is one item.
    current_quantity = fresh.stripe_sub["items"]["data"][0].get("quantity") or 1
    quantity = 1
    if target_plan.per_seat:
        kept = current_quantity if current_plan is not None and current_plan.per_seat else 1
        quantity = max(kept, required_quantity(target_plan.min_seats, members))
    upgrade = current is None or _monthly_value(target) * quantity >= _monthly_value(current) * current_quantity
    if upgrade and fresh.paused:
        # A paused subscription's invoices are voided (pause_collection: void), which would discard
        # the upgrade as if the card were declined.
        raise AppError(ErrorCode.SUBSCRIPTION_PAUSED,
                       "This subscription is paused. Resume it first (Resume now on the billing page), then upgrade.")
    change = PlanChange(
        from_plan=current_plan.name if current_plan else "", to_plan=target_plan.name, upgrade=upgrade,
        amount_due_now=0, currency=target.currency, applied=not preview,
    )
    if awaiting is not None:
        return _answer_pending(awaiting, target, change)
    if not upgrade:
        if not preview:
            renew_seat_claim(org_id)  # the reads and checks above took Stripe calls: the write gets a whole claim
        return _schedule_downgrade(client, sub, fresh, target, change, quantity)
    items = [{"id": fresh.stripe_sub["items"]["data"][0]["id"], "price": target.stripe_price_id, "quantity": quantity}]
    if preview:
        try:
            invoice = gateway.call(
                client.v1.invoices.create_preview,
                params={
                    "customer": fresh.customer_id,
                    "subscription": sub.stripe_id,
                    "subscription_details": {"items": items, "proration_behavior": "always_invoice"},
                },
            )
        except gateway.StripeFailure as failure:
            raise _refusal(client, sub, failure, _change_failed()) from None
        return replace(change, amount_due_now=invoice["amount_due"])
    renew_seat_claim(org_id)  # the reads and checks above took Stripe calls: the write gets a whole claim
    # A pending downgrade would switch the upgrade back at the period end: set it aside first (back in
    # place if the upgrade fails, or if it waits for 3-D Secure and lapses: billing/set_aside.py).
    set_aside_claim = set_aside.remember(sub, fresh)
    try:
        with _schedule_set_aside(client, sub, fresh):
            try:
                updated = gateway.call(
                    client.v1.subscriptions.update, sub.stripe_id,
                    # Pending updates: the plan changes only once the prorated invoice is paid. A declined card
                    # leaves the plan as it was (its invoice is voided below); a payment that needs the
                    # customer's bank waits for them on the hosted invoice page.
                    params={"items": items, "proration_behavior": "always_invoice", "payment_behavior": "pending_if_incomplete"},
                )
            except gateway.StripeFailure as failure:
                updated = _made_despite(client, sub, failure, target.stripe_price_id)
            if updated.get("pending_update"):
                confirm_url = _awaiting_customer(client, updated["latest_invoice"])
                if confirm_url is None:
                    raise _declined()
                change = replace(change, applied=False, confirm_url=confirm_url)
    except gateway.StripeFailure as failure:
        if failure.card_error:
            raise _declined() from None
        raise _refusal(client, sub, failure, _change_failed()) from None
    finally:
        if set_aside_claim:
            set_aside.let_go(sub.id, set_aside_claim)  # the sync below judges it on what Stripe has now
        resync_after_change(fresh.customer_id)
    return change


def _made_despite(client, sub: OrgSubscription, failure: gateway.StripeFailure, price_id: str) -> dict:
    """A 5xx, or no answer, can come after Stripe made the update (and the SDK's retries under its
    key replay the error): when the subscription as Stripe has it now shows the change made (applied,
    or pending its payment), that is the answer, not "try again"; otherwise the failure stands."""
    if failure.card_error or (failure.status is not None and failure.status < 500):
        raise failure
    try:
        now = Fresh(gateway.call(client.v1.subscriptions.retrieve, sub.stripe_id))
    except gateway.StripeFailure:
        raise failure from None
    if price_id not in (now.price_id, now.pending_price_id):
        raise failure
    return now.stripe_sub


@dataclass(frozen=True)
class _PendingUpgrade:
    price_id: str
    invoice: dict
    expires_at: int | None


def _pending_upgrade(client, fresh: Fresh) -> _PendingUpgrade | None:
    """An upgrade already waiting for its payment (a pending update: Stripe applies it once the
    subscription's latest invoice, still open, is paid, and drops it at `expires_at`)."""
    if not fresh.pending_price_id or not fresh.stripe_sub.get("latest_invoice"):
        return None
    invoice = fresh.stripe_sub["latest_invoice"]
    invoice_id = invoice if isinstance(invoice, str) else invoice["id"]
    try:
        invoice = gateway.call(client.v1.invoices.retrieve, invoice_id)
    except gateway.StripeFailure:
        raise _change_failed() from None
    if invoice["status"] != "open":
        return None
    return _PendingUpgrade(fresh.pending_price_id, invoice, fresh.stripe_sub["pending_update"].get("expires_at"))


def _answer_pending(awaiting: _PendingUpgrade, target: PlanPeriod, change: PlanChange) -> PlanChange:
    """Never a second bill for one upgrade: the same target answers the page the first click was
    sent to; another plan waits until that payment is confirmed or lapses."""
    if awaiting.price_id == target.stripe_price_id:
        return replace(change, applied=False, amount_due_now=awaiting.invoice["amount_due"],
                       confirm_url=awaiting.invoice["hosted_invoice_url"])
    with session_scope() as session:
        plan = plan_for_price(session, awaiting.price_id)
        name = plan.name if plan else "another plan"
    lapses = f" (it lapses on {format_datetime(datetime.fromtimestamp(awaiting.expires_at, tz=UTC))})" if awaiting.expires_at else ""
    raise AppError(
        ErrorCode.PLAN_CHANGE_PENDING,
        f"An upgrade to {name} is waiting for the payment to be confirmed. Confirm it on the payment page, "
        f"or let it lapse{lapses}, before choosing another plan.",
    )


def _awaiting_customer(client, invoice_id: str) -> str | None:
    """The hosted invoice page when the invoice's payment waits for 3-D Secure; otherwise the payment
    failed: the invoice is voided, which discards the pending update (nothing changed, nothing owed)."""
    invoice = gateway.call(client.v1.invoices.retrieve, invoice_id)
    payments = gateway.call(client.v1.invoice_payments.list,
                            params={"invoice": invoice_id, "limit": 10, "expand": ["data.payment.payment_intent"]})["data"]
    for payment in payments:
        intent = (payment.get("payment") or {}).get("payment_intent")
        if payment.get("status") == "open" and isinstance(intent, dict) and intent.get("status") == "requires_action":
            return invoice["hosted_invoice_url"]
    if invoice["status"] == "open":
        gateway.call(client.v1.invoices.void_invoice, invoice_id)
    return None


def _change_failed() -> AppError:
    return AppError(ErrorCode.STRIPE_PLAN_CHANGE_FAILED, "We could not change the plan. Please try again.")


def _declined() -> AppError:
    return AppError(ErrorCode.STRIPE_PLAN_CHANGE_FAILED,
                    "Your card was declined, so your plan was not changed. Update your payment method and try again.")


def _schedule_downgrade(client, sub: OrgSubscription, fresh: Fresh, target: PlanPeriod, change: PlanChange,
                        quantity: int = 1) -> PlanChange:
    """A downgrade keeps what was paid for until the period end, then switches (a schedule's second phase)."""
    item = fresh.stripe_sub["items"]["data"][0]
    change = replace(change, effective_at=datetime.fromtimestamp(item["current_period_end"], tz=UTC))
    if not change.applied:
        return change
    try:
        if not schedules.write(client, sub.stripe_id, fresh.schedule_id, item, [{"price": target.stripe_price_id, "quantity": quantity}]):
            raise AppError(ErrorCode.SEAT_CHANGE_IN_PROGRESS, "Your organization's plan changed while the downgrade was being "
                           "scheduled, so nothing was scheduled. Please try again.")
    except gateway.StripeFailure as failure:
        raise _refusal(client, sub, failure, AppError(
            ErrorCode.STRIPE_PLAN_CHANGE_FAILED, "We could not schedule the plan change. Please try again.")) from None
    finally:
        resync_after_change(fresh.customer_id)
    return change

