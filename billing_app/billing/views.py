"""What the billing pages show, computed from the database only (never a Stripe call).

Each function returns plain dataclasses of display-ready values, which is what Reflex
state should hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import Session, select

from billing_app.billing.entitlements import current_subscription, entitlement
from billing_app.formatting import format_amount, format_date
from billing_app.models import OrgSubscription, Plan, PlanPeriod, SubscriptionStatus

INTERVAL_LABEL = {"MONTHLY": "/ month", "YEARLY": "/ year", "ALL_TIME": "one-time · lifetime"}
PERIOD_NAME = {"MONTHLY": "Monthly", "YEARLY": "Yearly", "ALL_TIME": "Lifetime"}


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


@dataclass
class PricingView:
    plans: list[PlanCard] = field(default_factory=list)
    has_subscription: bool = False
    holds_lifetime: bool = False


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


@dataclass
class ChangeOption:
    period_id: str = ""
    label: str = ""


def _period_card(period: PlanPeriod) -> PeriodCard:
    return PeriodCard(
        period_id=str(period.id),
        type=period.period_type,
        price=format_amount(period.amount, period.currency),
        interval=INTERVAL_LABEL[period.period_type],
        trial=f"{period.trial_days}-day free trial" if period.trial_days else "",
    )


def pricing_view(session: Session, org_id: int | None) -> PricingView:
    """Plan cards for the pricing page, and where the org stands."""
    current = current_subscription(session, org_id) if org_id else None
    live = current is not None and current.holds_plan
    current_plan_id = current.period.plan_id if live and current.period else None
    plans = []
    for plan in session.exec(select(Plan).where(Plan.active == True).order_by(Plan.display_order)).all():  # noqa: E712
        if plan.legacy and plan.id != current_plan_id:
            continue  # legacy plans are shown only to the orgs that have them
        periods = {p.period_type: _period_card(p) for p in session.exec(
            select(PlanPeriod).where(PlanPeriod.plan_id == plan.id, PlanPeriod.active == True)  # noqa: E712
        ).all()}
        plans.append(PlanCard(
            key=plan.key,
            name=plan.name,
            description=plan.description,
            features=plan.features,
            most_popular=plan.most_popular,
            is_current=plan.id == current_plan_id,
            monthly=periods.get("MONTHLY", PeriodCard()),
            yearly=periods.get("YEARLY", PeriodCard()),
            lifetime=periods.get("ALL_TIME", PeriodCard()),
        ))
    return PricingView(plans, has_subscription=live and not current.one_off, holds_lifetime=live and current.one_off)


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


def status_badge(sub: OrgSubscription | None) -> tuple[str, str]:
    """The dashboard's status label and its colour."""
    if sub is None:
        return "No subscription", "gray"
    if sub.one_off:
        return ("Lifetime", "iris") if sub.is_lifetime_held else ("Refunded", "gray")
    if sub.status == S.ACTIVE.value and sub.cancel_at_period_end:
        return f"Cancels on {format_date(sub.current_period_end)}", "orange"
    return STATUS_BADGES.get(sub.status, (sub.status.replace("_", " ").title(), "gray"))


def billing_view(session: Session, org_id: int) -> BillingView:
    """The billing dashboard: plan, status, dates, and which actions apply."""
    ent = entitlement(session, org_id)
    sub = ent.subscription
    if sub is None:
        return BillingView(status="No subscription")
    label, color = status_badge(sub)
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
    elif sub.cancel_at_period_end:
        view.renewal_label, view.renewal_date = "Access until", format_date(sub.current_period_end)
    else:
        view.renewal_label, view.renewal_date = "Next renewal", format_date(sub.current_period_end)
    view.trial_end = format_date(sub.trial_end) if sub.status == S.TRIALING.value else ""
    view.auto_renew = "Yes" if sub.auto_renew else "No"
    view.can_cancel = not ended and not sub.cancel_at_period_end
    view.can_reactivate = not ended and sub.cancel_at_period_end
    view.can_change = not ended
    scheduled = sub.scheduled_period if not ended else None
    if scheduled:
        view.scheduled_change = f"Changes to {scheduled.plan.name} ({PERIOD_NAME[scheduled.period_type].lower()}) on {format_date(sub.scheduled_change_at)}"
    return view


def change_options(session: Session, org_id: int) -> list[ChangeOption]:
    """Recurring periods the org may switch to (same audience: legacy or current)."""
    sub = current_subscription(session, org_id)
    current_period = sub.period if sub else None
    legacy = bool(current_period and current_period.plan.legacy)
    rows = session.exec(
        select(Plan, PlanPeriod).join(PlanPeriod, PlanPeriod.plan_id == Plan.id)
        .where(Plan.active == True, Plan.legacy == legacy, PlanPeriod.active == True, PlanPeriod.period_type != "ALL_TIME")  # noqa: E712
        .order_by(Plan.display_order, PlanPeriod.period_type)
    ).all()
    return [
        ChangeOption(str(period.id), f"{plan.name} — {format_amount(period.amount, period.currency)} {INTERVAL_LABEL[period.period_type]}")
        for plan, period in rows
        if not current_period or period.id != current_period.id
    ]
