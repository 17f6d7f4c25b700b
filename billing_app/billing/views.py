"""What the billing pages and the REST API show, computed from the database only (never a Stripe call).

Each function returns plain dataclasses, which is what Reflex state should hold: display-ready
strings for the pages (`pricing_view`, `billing_view`, `change_options`), raw values for the API
(`catalog`, `subscription_detail`, `billing_summary`). Where both show the same thing they read
it through the same function here (the catalog, a scheduled change).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import or_
from sqlmodel import Session, select

from billing_app.billing import payments
from billing_app.billing.entitlements import AccessReason, current_subscription, entitlement
from billing_app.billing.prices import period_for_price
from billing_app.formatting import PERIOD_NAME, format_amount, format_date, plan_label
from billing_app.models import OrgSubscription, Payment, PaymentStatus, PeriodType, Plan, PlanPeriod, SetAsideChange, SubscriptionStatus

INTERVAL_LABEL = {"MONTHLY": "/ month", "YEARLY": "/ year", "ALL_TIME": "one-time · lifetime"}


# --- the catalog: the pricing page and GET /api/subscriptions ----------------------------------------


@dataclass(frozen=True)
class CatalogPeriod:
    id: int
    period_type: PeriodType
    amount: int  # in the currency's minor unit (cents)
    currency: str
    trial_days: int | None


@dataclass(frozen=True)
class CatalogPlan:
    id: int
    key: str
    name: str
    description: str
    features: list[str]
    limits: dict
    most_popular: bool
    periods: list[CatalogPeriod]  # the active ones: monthly, yearly, lifetime
    feature_flags: dict = field(default_factory=dict)
    per_seat: bool = False  # each period's amount is per seat
    min_seats: int = 1


PERIOD_ORDER = {period_type: i for i, period_type in enumerate(PeriodType)}


def catalog(session: Session, *, legacy_plan_id: int | None = None) -> list[CatalogPlan]:
    """Active plans in display order, each with its active periods (possibly none).

    Legacy plans are left out, except `legacy_plan_id`: the one an organization still holds.
    """
    shown = Plan.legacy == False  # noqa: E712
    if legacy_plan_id is not None:
        shown = or_(shown, Plan.id == legacy_plan_id)
    plans = session.exec(select(Plan).where(Plan.active == True, shown).order_by(Plan.display_order, Plan.id)).all()  # noqa: E712
    periods = session.exec(
        select(PlanPeriod).where(PlanPeriod.active == True, PlanPeriod.plan_id.in_([plan.id for plan in plans]))  # noqa: E712
    ).all()
    by_plan: dict[int, list[CatalogPeriod]] = {}
    for period in periods:
        by_plan.setdefault(period.plan_id, []).append(CatalogPeriod(
            id=period.id, period_type=PeriodType(period.period_type), amount=period.amount,
            currency=period.currency, trial_days=period.trial_days,
        ))
    for plan_periods in by_plan.values():
        plan_periods.sort(key=lambda p: (PERIOD_ORDER[p.period_type], p.id))
    return [
        CatalogPlan(
            id=plan.id, key=plan.key, name=plan.name, description=plan.description, features=plan.features,
            limits=plan.limits, most_popular=plan.most_popular, periods=by_plan.get(plan.id, []),
            feature_flags=plan.feature_flags, per_seat=plan.per_seat, min_seats=plan.min_seats,
        )
        for plan in plans
    ]


# --- the pages: pricing, the billing dashboard, the plan change -------------------------------------


@dataclass
class PeriodCard:
    period_id: str = ""
    type: str = ""
    price: str = ""
    interval: str = ""
    trial: str = ""


@dataclass
class PlanCard:
    key: str = ""
    name: str = ""
    description: str = ""
    features: list[str] = field(default_factory=list)
    most_popular: bool = False
    is_current: bool = False
    monthly: PeriodCard = field(default_factory=PeriodCard)
    yearly: PeriodCard = field(default_factory=PeriodCard)
    lifetime: PeriodCard = field(default_factory=PeriodCard)
    per_seat: bool = False
    min_seats: int = 1


@dataclass
class PricingView:
    plans: list[PlanCard] = field(default_factory=list)
    has_subscription: bool = False
    holds_lifetime: bool = False
    awaiting_payment: str = ""  # why no plan can be bought now: a purchase's payment still clearing


@dataclass
class BillingView:
    has_subscription: bool = False
    plan_name: str = ""
    period: str = ""
    price: str = ""
    status: str = ""
    status_color: str = "gray"
    access: bool = False
    renewal_label: str = ""
    renewal_date: str = ""
    trial_end: str = ""
    start_date: str = ""
    auto_renew: str = ""
    lifetime: bool = False
    can_cancel: bool = False
    can_reactivate: bool = False
    can_change: bool = False
    payment_problem: bool = False
    scheduled_change: str = ""  # e.g. "Changes to Starter on Dec 22, 2026"
    # The hosted invoice page while a payment waits for the bank's confirmation (3-D Secure).
    confirm_payment_url: str = ""
    awaiting_payment: str = ""  # no live plan: a new purchase's payment still clearing


@dataclass
class ChangeOption:
    period_id: str = ""
    label: str = ""


def _period_card(period: CatalogPeriod, per_seat: bool = False) -> PeriodCard:
    return PeriodCard(
        period_id=str(period.id),
        type=period.period_type.value,
        price=format_amount(period.amount, period.currency),
        interval=("per seat " if per_seat else "") + INTERVAL_LABEL[period.period_type.value],
        trial=f"{period.trial_days}-day free trial" if period.trial_days else "",
    )


def pricing_view(session: Session, org_id: int | None) -> PricingView:
    """Plan cards for the pricing page, and where the org stands."""
    current = current_subscription(session, org_id) if org_id else None
    live = current is not None and current.holds_plan
    current_plan_id = current.period.plan_id if live and current.period else None
    plans = []
    # Legacy plans are shown only to the orgs that have them.
    for plan in catalog(session, legacy_plan_id=current_plan_id):
        periods = {p.period_type: _period_card(p, plan.per_seat) for p in plan.periods}
        plans.append(PlanCard(
            key=plan.key,
            name=plan.name,
            description=plan.description,
            features=plan.features,
            most_popular=plan.most_popular,
            is_current=plan.id == current_plan_id,
            monthly=periods.get(PeriodType.MONTHLY, PeriodCard()),
            yearly=periods.get(PeriodType.YEARLY, PeriodCard()),
            lifetime=periods.get(PeriodType.ALL_TIME, PeriodCard()),
            per_seat=plan.per_seat,
            min_seats=plan.min_seats,
        ))
    return PricingView(plans, has_subscription=live and not current.one_off, holds_lifetime=live and current.one_off,
                       awaiting_payment=_awaiting_payment(session, org_id) if org_id and not live else "")


def _awaiting_payment(session: Session, org_id: int) -> str:
    """The notice for a purchase paid by a delayed method (SEPA, ACH) still clearing: checkout refuses
    a second one, so neither page offers it."""
    return payments.AWAITING_PAYMENT_MESSAGE if payments.awaiting_purchase(session, org_id) is not None else ""


S = SubscriptionStatus
STATUS_BADGES = {
    S.TRIALING.value: ("Trialing", "blue"),
    S.ACTIVE.value: ("Active", "green"),
    S.PAST_DUE.value: ("Past due", "red"),
    S.UNPAID.value: ("Unpaid", "red"),
    S.CANCELED.value: ("Canceled", "gray"),
    S.PAUSED.value: ("Paused", "amber"),
    S.INCOMPLETE.value: ("Incomplete", "amber"),
    S.INCOMPLETE_EXPIRED.value: ("Expired", "gray"),
}


# A lifetime purchase held no more (refunded, or undone as a duplicate), by what its payment says became of the money.
LIFETIME_NOT_HELD_BADGES = {
    PaymentStatus.REFUNDED.value: ("Refunded", "gray"),
    PaymentStatus.DISPUTED.value: ("Disputed", "red"),  # charged back: the buyer's dispute was lost
    PaymentStatus.CANCELLED.value: STATUS_BADGES[S.CANCELED.value],  # free (a 100%-off code): nothing charged
    PaymentStatus.COMPLETED.value: ("Refund failed", "red"),  # undone, but its refund failed at Stripe: money kept
}


def status_badge(session: Session, sub: OrgSubscription | None) -> tuple[str, str]:
    """The dashboard's status label and its colour."""
    if sub is None:
        return "No subscription", "gray"
    if sub.one_off:
        if sub.is_lifetime_held:
            return "Lifetime", "iris"
        paid = session.exec(select(Payment.status).where(Payment.stripe_id == sub.stripe_id)).first()
        return LIFETIME_NOT_HELD_BADGES.get(paid, STATUS_BADGES[S.CANCELED.value])  # no payment row: not held, nothing more known
    if sub.status == S.ACTIVE.value and sub.is_canceling:
        return f"Cancels on {format_date(sub.ends_at)}", "orange"
    return STATUS_BADGES.get(sub.status, (sub.status.replace("_", " ").title(), "gray"))


def billing_view(session: Session, org_id: int) -> BillingView:
    """The billing dashboard: plan, status, dates, and which actions apply."""
    ent = entitlement(session, org_id)
    sub = ent.subscription
    if sub is None:
        return BillingView(status="No subscription", awaiting_payment=_awaiting_payment(session, org_id))
    label, color = status_badge(session, sub)
    view = BillingView(
        has_subscription=True,
        plan_name=ent.plan_name or "",
        period=PERIOD_NAME.get(ent.period_type or "", ""),
        status=label,
        status_color=color,
        access=ent.access,
        start_date=format_date(sub.started_at),
        lifetime=sub.one_off,
        payment_problem=sub.has_payment_problem,
        confirm_payment_url=confirm_payment_url(session, org_id),
    )
    period = sub.period
    if period:
        view.price = f"{format_amount(period.amount, period.currency)} {INTERVAL_LABEL[period.period_type]}"
    if sub.one_off:
        view.renewal_label, view.renewal_date, view.auto_renew = "Expires", "Never", "No (paid once)"
        return view
    ended = sub.has_ended
    if ended:
        view.renewal_label, view.renewal_date = "Ended", format_date(sub.ended_at or sub.canceled_at)
        view.awaiting_payment = _awaiting_payment(session, org_id)
    elif sub.is_canceling:
        view.renewal_label, view.renewal_date = "Access until", format_date(sub.ends_at)
    else:
        view.renewal_label, view.renewal_date = "Next renewal", format_date(sub.current_period_end)
    view.trial_end = format_date(sub.trial_end) if sub.status == S.TRIALING.value else ""
    view.auto_renew = "Yes" if sub.auto_renew else "No"
    view.can_cancel = not ended and not sub.is_canceling
    view.can_reactivate = sub.is_canceling
    view.can_change = not ended
    change = _scheduled_change(sub) if not ended else None
    if change and change.period_type:
        view.scheduled_change = f"Changes to {plan_label(change.plan_name, change.period_type.value)} on {format_date(change.at)}"
    elif not ended and (set_aside := _set_aside_change(session, sub)) is not None:
        # Not scheduled at Stripe, but it comes back if the upgrade lapses: Keep current plan drops it.
        period, at = set_aside
        view.scheduled_change = (f"Changes to {plan_label(period.plan.name, period.period_type)} on {format_date(at)}"
                                 " unless the upgrade's payment is confirmed")
    return view


def _set_aside_change(session: Session, sub: OrgSubscription) -> tuple[PlanPeriod, datetime] | None:
    """The plan period and date of a downgrade set aside for an upgrade awaiting 3-D Secure (billing/set_aside.py)."""
    change = session.get(SetAsideChange, sub.id)
    items = json.loads(change.next_items_json) if change else []
    period = period_for_price(session, items[0]["price"]) if items else None
    return (period, change.period_end) if period else None


def change_options(session: Session, org_id: int) -> list[ChangeOption]:
    """Recurring periods the org may switch to (same audience: legacy or current)."""
    sub = current_subscription(session, org_id)
    current_period = sub.period if sub else None
    legacy = bool(current_period and current_period.plan.legacy)
    rows = session.exec(
        select(Plan, PlanPeriod).join(PlanPeriod, PlanPeriod.plan_id == Plan.id)
        .where(Plan.active == True, Plan.legacy == legacy, PlanPeriod.active == True, PlanPeriod.period_type != PeriodType.ALL_TIME.value)  # noqa: E712
        .order_by(Plan.display_order, PlanPeriod.period_type)
    ).all()
    return [
        ChangeOption(str(period.id), f"{plan.name} — {format_amount(period.amount, period.currency)} {INTERVAL_LABEL[period.period_type]}")
        for plan, period in rows
        if not current_period or period.id != current_period.id
    ]


# --- the subscription and the summary: GET /api/subscriptions/my, GET /api/billing/summary ----------


@dataclass(frozen=True)
class ScheduledChange:
    """A downgrade waiting for the period end (a Stripe subscription schedule's next phase)."""

    period_id: int | None
    plan_key: str | None
    plan_name: str | None
    period_type: PeriodType | None
    at: datetime | None


def _scheduled_change(sub: OrgSubscription) -> ScheduledChange | None:
    if sub.scheduled_period_id is None and sub.scheduled_change_at is None:
        return None
    period = sub.scheduled_period
    plan = period.plan if period else None
    return ScheduledChange(
        period_id=sub.scheduled_period_id,
        plan_key=plan.key if plan else None,
        plan_name=plan.name if plan else None,
        period_type=PeriodType(period.period_type) if period else None,
        at=sub.scheduled_change_at,
    )


@dataclass(frozen=True)
class SubscriptionDetail:
    """The organization's subscription (or lifetime purchase) with its plan; times are aware UTC."""

    stripe_id: str
    plan_key: str | None
    plan_name: str | None
    period_type: PeriodType | None
    period_id: int | None
    price: int | None  # in the currency's minor unit (cents)
    currency: str | None
    date_from: datetime | None
    date_to: datetime | None  # the current period's end; None for a lifetime purchase
    status: str  # Stripe's status
    auto_renew: bool
    cancel_at_period_end: bool
    cancel_at: datetime | None  # when it ends by itself (at the period end or a chosen date); None: it renews
    trial_ends_at: datetime | None
    access: bool
    scheduled_change: ScheduledChange | None
    paused: bool = False  # collection paused, or Stripe paused the subscription: no access meanwhile
    pause_resumes_at: datetime | None = None


def subscription_detail(session: Session, org_id: int) -> SubscriptionDetail | None:
    """The subscription that decides the org's access (see `entitlement`), or None."""
    ent = entitlement(session, org_id)
    sub = ent.subscription
    if sub is None:
        return None
    period = sub.period
    lifetime = sub.one_off or (period is not None and period.period_type == PeriodType.ALL_TIME.value)
    return SubscriptionDetail(
        stripe_id=sub.stripe_id,
        plan_key=ent.plan_key,
        plan_name=ent.plan_name,
        period_type=PeriodType(period.period_type) if period else (PeriodType.ALL_TIME if sub.one_off else None),
        period_id=sub.plan_period_id,
        price=period.amount if period else None,
        currency=period.currency if period else None,
        date_from=sub.started_at if lifetime else (sub.current_period_start or sub.started_at),
        date_to=None if lifetime else sub.current_period_end,
        status=sub.status,
        auto_renew=bool(sub.auto_renew),
        cancel_at_period_end=bool(sub.cancel_at_period_end),
        cancel_at=sub.ends_at,
        trial_ends_at=sub.trial_end,
        access=ent.access,
        scheduled_change=_scheduled_change(sub),
        paused=bool(sub.paused) or sub.status == SubscriptionStatus.PAUSED.value,
        pause_resumes_at=sub.pause_resumes_at,
    )


@dataclass(frozen=True)
class SummaryPlan:
    key: str
    name: str
    period_type: PeriodType | None
    limits: dict


@dataclass(frozen=True)
class BillingSummary:
    """Status, plan and key dates, for gating features; `access` and `reason` are the app's one rule."""

    access: bool
    reason: AccessReason
    status: str | None = None  # Stripe's status; None without a subscription
    plan: SummaryPlan | None = None
    trial_ends_at: datetime | None = None
    activated_at: datetime | None = None
    current_period_end: datetime | None = None  # None for a lifetime purchase


def billing_summary(session: Session, org_id: int) -> BillingSummary:
    ent = entitlement(session, org_id)
    sub = ent.subscription
    plan = None
    if ent.plan_key:
        period_type = PeriodType(ent.period_type) if ent.period_type else None
        plan = SummaryPlan(key=ent.plan_key, name=ent.plan_name or ent.plan_key, period_type=period_type, limits=ent.limits)
    if sub is None:
        return BillingSummary(access=ent.access, reason=ent.reason, plan=plan)
    return BillingSummary(
        access=ent.access,
        reason=ent.reason,
        status=sub.status,
        plan=plan,
        trial_ends_at=sub.trial_end,
        activated_at=sub.started_at,
        current_period_end=None if sub.one_off else sub.current_period_end,
    )


def confirm_payment_url(session: Session, org_id: int) -> str:
    """The hosted invoice page of the org's newest payment waiting for 3-D Secure, or ''."""
    url = session.exec(
        select(Payment.invoice_url)
        .where(Payment.org_id == org_id, Payment.action_required, Payment.invoice_url.is_not(None))
        .order_by(Payment.created.desc())
    ).first()
    return url or ""
