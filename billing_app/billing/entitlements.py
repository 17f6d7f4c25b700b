"""Who may use what: the one rule that turns the mirror into access (Cashier-style predicates)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlmodel import Session, select

from billing_app.models import OrgSubscription, Plan, PlanPeriod, utcnow
from billing_app.settings import get_settings

# Subscriptions that still exist at Stripe (not ended); at most one per org in normal use.
LIVE_STATUSES = ("trialing", "active", "past_due", "unpaid", "paused", "incomplete")


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


def current_subscription(session: Session, org_id: int) -> OrgSubscription | None:
    """The row that decides the org's access: a held lifetime purchase, else the newest live
    subscription, else the newest one of any status (so "Canceled" can still be shown)."""
    rows = session.exec(select(OrgSubscription).where(OrgSubscription.org_id == org_id)).all()
    if not rows:
        return None
    lifetime = [r for r in rows if r.one_off and r.status == "active"]
    if lifetime:
        return lifetime[0]
    def newest(r):
        return _utc(r.started_at) or _utc(r.updated_at)
    live = [r for r in rows if not r.one_off and r.status in LIVE_STATUSES]
    return max(live or rows, key=newest)


@dataclass(frozen=True)
class Entitlement:
    access: bool
    reason: str
    plan_key: str | None = None
    plan_name: str | None = None
    period_type: str | None = None
    limits: dict = field(default_factory=dict)
    status: str | None = None
    subscription: OrgSubscription | None = None

    # Readable predicates, as in Laravel Cashier.
    @property
    def on_trial(self) -> bool:
        return self.status == "trialing"

    @property
    def on_grace_period(self) -> bool:
        return self.reason in ("cancels_at_period_end", "past_due_grace")

    @property
    def past_due(self) -> bool:
        return self.status == "past_due"

    @property
    def lifetime(self) -> bool:
        return self.reason == "lifetime"


def _access(sub: OrgSubscription, now: datetime) -> tuple[bool, str]:
    if sub.one_off:
        return (sub.status == "active", "lifetime" if sub.status == "active" else "lifetime_refunded")
    if sub.paused or sub.status == "paused":
        return False, "paused"
    if sub.status == "trialing":
        return True, "trialing"
    if sub.status == "active":
        return True, "cancels_at_period_end" if sub.cancel_at_period_end else "active"
    if sub.status == "canceled":
        # Stripe keeps a subscription canceled "at period end" active until that end (the grace
        # period above); `canceled` means it has ended: at once, at the period end, or by dunning.
        return False, "canceled"
    if sub.status == "past_due":
        grace = timedelta(days=get_settings().past_due_grace_days)
        began = _utc(sub.current_period_start)
        if began and now < began + grace:
            return True, "past_due_grace"
        return False, "past_due"
    return False, sub.status  # unpaid, incomplete, incomplete_expired


def entitlement(session: Session, org_id: int, now: datetime | None = None) -> Entitlement:
    sub = current_subscription(session, org_id)
    if sub is None:
        return Entitlement(access=False, reason="no_subscription")
    access, reason = _access(sub, now or utcnow())
    period = session.get(PlanPeriod, sub.plan_period_id) if sub.plan_period_id else None
    plan = session.get(Plan, period.plan_id) if period else None
    return Entitlement(
        access=access,
        reason=reason,
        plan_key=plan.key if plan else None,
        plan_name=plan.name if plan else None,
        period_type=period.period_type if period else None,
        limits=json.loads(plan.limits_json) if plan else {},
        status=sub.status,
        subscription=sub,
    )
