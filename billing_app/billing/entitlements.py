"""Who may use what: the one rule that turns the mirror into access (Cashier-style predicates).

`entitlement()` decides access from the org's subscription; `grants()` extends it to what the org
may use: the features and limits of its live plan, else of the free tier ([free] in plans.toml).
For the host product (documented in the README, "Gating your product"), reading the mirror only:

    entitlements.check(org_id, "sso")      -> bool
    entitlements.limit(org_id, "seats")    -> Limit(limit=3, used=2)   (limit None = unlimited)
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, select

from billing_app.billing.catalog import free_tier
from billing_app.db import session_scope
from billing_app.models import Membership, OrgSubscription, Plan, SubscriptionStatus, utcnow
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
    """The row that decides the org's access: a held lifetime purchase, else the newest manageable
    subscription, else the newest live one (its first payment incomplete), else the newest one of
    any status (so "Canceled" can still be shown). Manageable first: an unpaid subscription made
    beside a paid one (Stripe's Dashboard, its API) must not take the paid one's access away."""
    rows = session.exec(select(OrgSubscription).where(OrgSubscription.org_id == org_id)).all()
    if not rows:
        return None
    lifetime = [r for r in rows if r.is_lifetime_held]
    if lifetime:
        return lifetime[0]
    def newest(r):
        return r.started_at or r.updated_at
    live = [r for r in rows if not r.one_off and r.is_live]
    return max([r for r in live if r.is_manageable] or live or rows, key=newest)


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
        return True, R.CANCELS_AT_PERIOD_END if sub.is_canceling else R.ACTIVE
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


# --- what the org may use: features and limits (the live plan's, else the free tier's) -------------


@dataclass(frozen=True)
class Limit:
    """A numeric limit and how much of it is used (None: unlimited / not counted here)."""

    limit: int | None
    used: int | None

    @property
    def remaining(self) -> int | None:
        if self.limit is None:
            return None
        return max(self.limit - (self.used or 0), 0)

    @property
    def reached(self) -> bool:
        return self.limit is not None and (self.used or 0) >= self.limit


@dataclass(frozen=True)
class Grants:
    """The features and limits an org has now; `plan_key` is None on the free tier."""

    access: bool
    reason: AccessReason
    plan_key: str | None
    plan_name: str | None
    features: dict[str, bool]
    limits: dict[str, int]  # -1 = unlimited
    per_seat: bool = False
    min_seats: int = 1
    # The seats paid for on a per-seat plan (the subscription item's quantity), else None.
    purchased_seats: int | None = None

    @property
    def seat_cap(self) -> int | None:
        seats = self.limits.get("seats", -1)
        return None if seats < 0 else seats


def count_members(session: Session, org_id: int) -> int:
    return session.exec(select(func.count()).select_from(Membership).where(Membership.org_id == org_id)).one()


# How much of a limit is used, per limit key. Seats are counted here; the host product registers
# counters for what it owns (register_usage("projects", ...)); other limits answer `used: None`.
USAGE: dict[str, Callable[[Session, int], int]] = {"seats": count_members}


def register_usage(key: str, counter: Callable[[Session, int], int]) -> None:
    """Let `limit()` and GET /api/billing/entitlements count `key`: counter(session, org_id) -> int."""
    USAGE[key] = counter


def grants(session: Session, org_id: int, now: datetime | None = None) -> Grants:
    """The one rule, extended: the live plan's features and limits when the org has access to a
    plan, else the free tier's."""
    ent = entitlement(session, org_id, now)
    sub = ent.subscription
    plan: Plan | None = sub.period.plan if ent.access and sub is not None and sub.period else None
    if plan is None:
        free = free_tier()
        return Grants(ent.access, ent.reason, None, None, dict(free.features), dict(free.limits))
    per_seat = bool(plan.per_seat)
    return Grants(
        ent.access, ent.reason, plan.key, plan.name, plan.feature_flags, plan.limits,
        per_seat=per_seat, min_seats=plan.min_seats if per_seat else 1,
        purchased_seats=sub.quantity if per_seat else None,
    )


def known_keys(session: Session) -> tuple[list[str], list[str]]:
    """Every feature key and limit key the catalog names (plans and the free tier), sorted."""
    free = free_tier()
    features, limit_keys = set(free.features), set(free.limits)
    for plan in session.exec(select(Plan).where(Plan.active == True)).all():  # noqa: E712
        features |= set(plan.feature_flags)
        limit_keys |= set(plan.limits)
    return sorted(features), sorted(limit_keys)


def limit_of(session: Session, org_id: int, key: str, granted: Grants | None = None) -> Limit:
    granted = granted or grants(session, org_id)
    value = granted.limits.get(key)
    counter = USAGE.get(key)
    used = counter(session, org_id) if counter else None
    if value is None:
        # A limit the org's plan does not name is not granted: 0, unless nothing names it at all.
        return Limit(0 if key in known_keys(session)[1] else None, used)
    return Limit(None if value < 0 else value, used)


def check(org_id: int, feature: str) -> bool:
    """May this org use `feature` now? (Unknown features: False.) Reads the mirror only."""
    with session_scope() as session:
        return bool(grants(session, org_id).features.get(feature, False))


def limit(org_id: int, key: str) -> Limit:
    """The org's limit for `key` now and how much is used, e.g. limit(org_id, "seats"). Mirror only."""
    with session_scope() as session:
        return limit_of(session, org_id, key)
