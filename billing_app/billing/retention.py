"""The cancellation flow's other ways out: pause instead, the retention offer, and the confirmed cancel.

1. Reason (one of Stripe's) and an optional comment.
2. Pause instead: no charge for 1, 2 or 3 months (`pause_collection`, voiding what falls in the
   pause), then Stripe resumes by itself at `resumes_at`; an admin may resume early. Paused means
   no access (billing/entitlements.py).
3. Retention offer: the coupon named in plans.toml `[retention]`, offered once per organization
   before the cancellation is confirmed. Accepting applies it to the subscription and cancels
   nothing; confirming the cancellation while it stood declines it. The portal's cancel flow
   offers the same coupon (billing/portal.py).
4. Confirm: at the period end (default) or now.

Each action decides on the subscription as Stripe has it now (`_acting_on`, as in
billing/subscriptions.py) and re-syncs after.
"""

from __future__ import annotations

import calendar
import json
from datetime import datetime, timezone

from sqlmodel import Session

from billing_app.auth.accounts import Actor, admin_now
from billing_app.billing import gateway, idempotency, schedules, subscriptions
from billing_app.billing.catalog import load_catalog
from billing_app.billing.coupons import CouponSpec
from billing_app.billing.subscriptions import _acting_on, _admin_acting_on, _manageable_subscription
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.formatting import format_date
from billing_app.models import BillingProfile, RetentionOffer, Role, utcnow

PAUSE_MONTHS = (1, 2, 3)
PAUSABLE = ("active", "trialing")


def add_months(moment: datetime, months: int) -> datetime:
    """The same day `months` later (the month's last day when it is shorter), same time."""
    month0 = moment.month - 1 + months
    year, month = moment.year + month0 // 12, month0 % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


# --- pause -----------------------------------------------------------------------------------------------


def pause(actor: Actor, months: int) -> datetime:
    """Stop charging for `months` months; returns when collection resumes."""
    if months not in PAUSE_MONTHS:
        raise AppError(ErrorCode.VALIDATION_ERROR, "A pause lasts 1, 2 or 3 months.")
    failed = AppError(ErrorCode.STRIPE_PAUSE_FAILED, "We could not pause the subscription. Please try again.")
    resumes_at = add_months(utcnow().replace(microsecond=0), months)
    with _admin_acting_on(actor, failed) as (sub, client, fresh):
        stripe_sub = fresh.stripe_sub
        pc = stripe_sub.get("pause_collection")
        if fresh.paused:
            until = f" until {format_date(datetime.fromtimestamp(pc['resumes_at'], timezone.utc))}" if pc and pc.get("resumes_at") else ""
            raise AppError(ErrorCode.SUBSCRIPTION_PAUSED, f"This subscription is already paused{until}.")
        if fresh.canceling:
            raise AppError(ErrorCode.SUBSCRIPTION_CANCELING,
                           "This subscription is set to cancel at the end of the period. Reactivate it before pausing.")
        if stripe_sub["status"] not in PAUSABLE:
            raise AppError(ErrorCode.SUBSCRIPTION_NOT_PAUSABLE,
                           "A subscription with a failed payment cannot be paused: update the payment method first.")
        gateway.call(client.v1.subscriptions.update, sub.stripe_id, params={
            "pause_collection": {"behavior": "void", "resumes_at": int(resumes_at.timestamp())}})
    return resumes_at


def resume(actor: Actor) -> None:
    """Resume now: collection paused by the cancellation flow, or a subscription Stripe paused."""
    failed = AppError(ErrorCode.STRIPE_PAUSE_FAILED, "We could not resume the subscription. Please try again.")
    with _admin_acting_on(actor, failed) as (sub, client, fresh):
        if fresh.stripe_sub["status"] == "paused":
            gateway.call(client.v1.subscriptions.resume, sub.stripe_id)
        elif fresh.stripe_sub.get("pause_collection"):
            gateway.call(client.v1.subscriptions.update, sub.stripe_id, params={"pause_collection": ""})
        else:
            raise AppError(ErrorCode.SUBSCRIPTION_NOT_PAUSED, "This subscription is not paused.")


# --- the retention offer --------------------------------------------------------------------------------------


def retention_coupon() -> CouponSpec | None:
    """The coupon plans.toml offers before a cancellation, or None when it offers none."""
    spec = load_catalog()
    if spec.retention is None:
        return None
    return next(c for c in spec.coupons if c.id == spec.retention.coupon)


def offer_for(session: Session, org_id: int) -> CouponSpec | None:
    """The offer this organization may still be made (from the database only), or None.

    Once per organization: not after it was accepted (here, through the API or in the portal, where
    the sync notes it), nor after a cancellation was confirmed while it stood (here, or in the
    portal's cancel flow that showed it, which the sync notes).
    """
    coupon = retention_coupon()
    if coupon is None:
        return None
    row = session.get(RetentionOffer, org_id)
    if row is not None and (row.accepted_at or row.declined_at):
        return None
    profile = session.get(BillingProfile, org_id)
    if profile is not None and coupon.id in {d["coupon"] for d in json.loads(profile.discounts_json or "[]")}:
        return None  # running now (applied at Stripe: the sync also notes it as accepted)
    return coupon


def _record(org_id: int, coupon_id: str, **moment: datetime) -> None:
    with session_scope() as session:
        row = session.get(RetentionOffer, org_id) or RetentionOffer(org_id=org_id, coupon_id=coupon_id)
        for name, value in moment.items():
            if getattr(row, name) is None:
                setattr(row, name, value)
        session.add(row)


def note_offered(org_id: int, coupon_id: str) -> None:
    """The portal's cancel flow is about to show the offer."""
    _record(org_id, coupon_id, offered_at=utcnow())


def accept(actor: Actor) -> CouponSpec:
    """Apply the retention coupon to the subscription; nothing is canceled."""
    actor.require_role(Role.ADMIN)
    org_id = admin_now(actor).require_role(Role.ADMIN)  # as it is now, after any wait
    coupon = retention_coupon()
    if coupon is None:
        raise AppError(ErrorCode.RETENTION_OFFER_UNAVAILABLE, "There is no offer to accept.")
    sub = _manageable_subscription(org_id)
    with session_scope() as session:
        available = offer_for(session, org_id) is not None
    used = AppError(ErrorCode.RETENTION_OFFER_USED, "Your organization has already had this offer.")
    # Had already, unless a first click applied the coupon but could not name it on a waiting change's
    # phase (so it would end at the switch): a second click finishes that, and only that.
    if not available and sub.scheduled_period_id is None:
        raise used
    failed = AppError(ErrorCode.STRIPE_OFFER_FAILED, "We could not apply the offer. Please try again.")
    with _acting_on(sub, failed) as (client, fresh):
        if fresh.canceling:
            raise AppError(ErrorCode.SUBSCRIPTION_CANCELING,
                           "This subscription is set to cancel at the end of the period. Reactivate it to take the offer.")
        discounts = _discounts(client, sub.stripe_id)
        applied = _from_coupon(discounts, coupon.id)  # already there on a second click
        if applied is None:
            if not available:
                raise used
            kept = [{"discount": d["id"]} for d in discounts]
            idempotency.call_once(
                client.v1.subscriptions.update, sub.stripe_id,
                params={"discounts": [*kept, {"coupon": coupon.id}]},
                key=f"retention-{sub.stripe_id}-{coupon.id}-{len(kept)}",
            )
            applied = _from_coupon(_discounts(client, sub.stripe_id), coupon.id)
        # A downgrade waiting for the period end: its phase must name the discount too, or Stripe ends it
        # at the switch.
        named_now = False
        if fresh.change_waiting and applied is not None:
            schedule = gateway.call(client.v1.subscription_schedules.retrieve, fresh.schedule_id)
            named_now = schedules.add_discount(client, schedule, applied)
        if not available and not named_now:
            raise used
    _record(org_id, coupon.id, accepted_at=utcnow())
    return coupon


def _discounts(client, subscription_id: str) -> list[dict]:
    """The subscription's discounts as Stripe has them now."""
    current = gateway.call(client.v1.subscriptions.retrieve, subscription_id, params={"expand": ["discounts"]})
    return [d for d in current.get("discounts") or [] if isinstance(d, dict)]


def _from_coupon(discounts: list[dict], coupon_id: str) -> str | None:
    """The id of the discount from `coupon_id`, or None."""
    return next((d["id"] for d in discounts if (d.get("source") or {}).get("coupon") == coupon_id), None)


# --- confirming the cancellation --------------------------------------------------------------------------------


def cancel(actor: Actor, *, at_period_end: bool = True, feedback: str | None = None, comment: str | None = None) -> None:
    """Confirm the cancellation; an offer still standing is declined by it."""
    org_id = actor.require_role(Role.ADMIN)
    with session_scope() as session:
        offer = offer_for(session, org_id)
    subscriptions.cancel(actor, at_period_end=at_period_end, reason=comment, feedback=feedback)
    if offer is not None:
        _record(org_id, offer.id, declined_at=utcnow())
