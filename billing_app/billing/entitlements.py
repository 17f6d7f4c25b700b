"""Who may use what: the one rule that turns the mirror into access (Cashier-style predicates)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session, select

from billing_app.models import OrgSubscription, SubscriptionStatus, utcnow
from billing_app.settings import get_settings

S = SubscriptionStatus


class AccessReason(str, enum.Enum):
    """Why an org has access or not (`reason` in /api/billing/summary)."""

    NO_SUBSCRIPTION = "no_subscription"
    LIFETIME = "lifetime"
    LIFETIME_REFUNDED = "lifetime_refunded"
    TRIALING = "trialing"
    ACTIVE = "active"
    CANCELS_AT_PERIOD_END = "cancels_at_period_end"
    PAST_DUE_GRACE = "past_due_grace"
    PAST_DUE = "past_due"
    PAUSED = "paused"
    CANCELED = "canceled"
    UNPAID = "unpaid"
    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"


R = AccessReason


def current_subscription(session: Session, org_id: int) -> OrgSubscription | None:
    """The row that decides the org's access: a held lifetime purchase, else the newest live
    subscription, else the newest one of any status (so "Canceled" can still be shown)."""
    rows = session.exec(select(OrgSubscription).where(OrgSubscription.org_id == org_id)).all()
    if not rows:
        return None
    lifetime = [r for r in rows if r.is_lifetime_held]
    if lifetime:
        return lifetime[0]
    def newest(r):
        return r.started_at or r.updated_at
    live = [r for r in rows if not r.one_off and r.is_live]
    return max(live or rows, key=newest)


@dataclass(frozen=True)
class Entitlement:
    access: bool
    reason: AccessReason
    plan_key: str | None = None
    plan_name: str | None = None
    period_type: str | None = None
    limits: dict = field(default_factory=dict)
    status: str | None = None
    subscription: OrgSubscription | None = None

    # Readable predicates, as in Laravel Cashier.
    @property
    def on_trial(self) -> bool:
        return self.status == S.TRIALING.value

    @property
    def on_grace_period(self) -> bool:
        return self.reason in (R.CANCELS_AT_PERIOD_END, R.PAST_DUE_GRACE)

    @property
    def past_due(self) -> bool:
        return self.status == S.PAST_DUE.value

    @property
    def lifetime(self) -> bool:
        return self.reason == R.LIFETIME


def _access(sub: OrgSubscription, now: datetime) -> tuple[bool, AccessReason]:
    if sub.one_off:
        return (True, R.LIFETIME) if sub.is_lifetime_held else (False, R.LIFETIME_REFUNDED)
    status = S(sub.status)
    if sub.paused or status == S.PAUSED:
        return False, R.PAUSED
    if status == S.TRIALING:
        return True, R.TRIALING
    if status == S.ACTIVE:
        return True, R.CANCELS_AT_PERIOD_END if sub.cancel_at_period_end else R.ACTIVE
    if status == S.CANCELED:
        # Stripe keeps a subscription canceled "at period end" active until that end (the grace
        # period above); `canceled` means it has ended: at once, at the period end, or by dunning.
        return False, R.CANCELED
    if status == S.PAST_DUE:
        grace = timedelta(days=get_settings().past_due_grace_days)
        began = sub.current_period_start
        if began and now < began + grace:
            return True, R.PAST_DUE_GRACE
        return False, R.PAST_DUE
    return False, R(status.value)  # unpaid, incomplete, incomplete_expired


def entitlement(session: Session, org_id: int, now: datetime | None = None) -> Entitlement:
    sub = current_subscription(session, org_id)
    if sub is None:
        return Entitlement(access=False, reason=R.NO_SUBSCRIPTION)
    access, reason = _access(sub, now or utcnow())
    period = sub.period
    plan = period.plan if period else None
    return Entitlement(
        access=access,
        reason=reason,
        plan_key=plan.key if plan else None,
        plan_name=plan.name if plan else None,
        period_type=period.period_type if period else None,
        limits=plan.limits if plan else {},
        status=sub.status,
        subscription=sub,
    )
