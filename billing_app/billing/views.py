"""What the billing pages show, computed from the database only (never a Stripe call).

Each function returns plain dicts of display-ready strings, which is what Reflex
state should hold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlmodel import Session, select

from billing_app.billing.entitlements import current_subscription, entitlement
from billing_app.billing.payments import format_amount
from billing_app.models import Plan, PlanPeriod

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


def fmt_date(value: datetime | None) -> str:
    if value is None:
        return ""
    value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return value.strftime("%b %-d, %Y")


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
    live = current is not None and (
        (current.one_off and current.status == "active")
        or current.status in ("active", "trialing", "past_due", "unpaid", "paused")
    )
    current_period = session.get(PlanPeriod, current.plan_period_id) if live and current.plan_period_id else None
    current_plan_id = current_period.plan_id if current_period else None
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
            features=json.loads(plan.features_json),
            most_popular=plan.most_popular,
            is_current=plan.id == current_plan_id,
            monthly=periods.get("MONTHLY", PeriodCard()),
            yearly=periods.get("YEARLY", PeriodCard()),
            lifetime=periods.get("ALL_TIME", PeriodCard()),
        ))
    return PricingView(plans, has_subscription=live and not current.one_off, holds_lifetime=live and current.one_off)


def status_badge(sub, now: datetime | None = None) -> tuple[str, str]:
    """The dashboard's status label and its colour."""
    if sub is None:
        return "No subscription", "gray"
    if sub.one_off:
        return ("Lifetime", "iris") if sub.status == "active" else ("Refunded", "gray")
    if sub.status == "active" and sub.cancel_at_period_end:
        return f"Cancels on {fmt_date(sub.current_period_end)}", "orange"
    return {
        "trialing": ("Trialing", "blue"),
        "active": ("Active", "green"),
        "past_due": ("Past due", "red"),
        "unpaid": ("Unpaid", "red"),
        "canceled": ("Canceled", "gray"),
        "paused": ("Paused", "amber"),
        "incomplete": ("Incomplete", "amber"),
        "incomplete_expired": ("Expired", "gray"),
    }.get(sub.status, (sub.status.replace("_", " ").title(), "gray"))


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
        start_date=fmt_date(sub.started_at),
        lifetime=sub.one_off,
        payment_problem=sub.status in ("past_due", "unpaid"),
    )
    period = session.get(PlanPeriod, sub.plan_period_id) if sub.plan_period_id else None
    if period:
        view.price = f"{format_amount(period.amount, period.currency)} {INTERVAL_LABEL[period.period_type]}"
    if sub.one_off:
        view.renewal_label, view.renewal_date, view.auto_renew = "Expires", "Never", "No (paid once)"
        return view
    ended = sub.status in ("canceled", "incomplete_expired")
    if ended:
        view.renewal_label, view.renewal_date = "Ended", fmt_date(sub.ended_at or sub.canceled_at)
    elif sub.cancel_at_period_end:
        view.renewal_label, view.renewal_date = "Access until", fmt_date(sub.current_period_end)
    else:
        view.renewal_label, view.renewal_date = "Next renewal", fmt_date(sub.current_period_end)
    view.trial_end = fmt_date(sub.trial_end) if sub.status == "trialing" else ""
    view.auto_renew = "Yes" if sub.auto_renew else "No"
    view.can_cancel = not ended and not sub.cancel_at_period_end
    view.can_reactivate = not ended and sub.cancel_at_period_end
    view.can_change = not ended
    scheduled = session.get(PlanPeriod, sub.scheduled_period_id) if sub.scheduled_period_id and not ended else None
    if scheduled:
        plan = session.get(Plan, scheduled.plan_id)
        view.scheduled_change = f"Changes to {plan.name} ({PERIOD_NAME[scheduled.period_type].lower()}) on {fmt_date(sub.scheduled_change_at)}"
    return view


def change_options(session: Session, org_id: int) -> list[ChangeOption]:
    """Recurring periods the org may switch to (same audience: legacy or current)."""
    sub = current_subscription(session, org_id)
    current_period = session.get(PlanPeriod, sub.plan_period_id) if sub and sub.plan_period_id else None
    current_plan = session.get(Plan, current_period.plan_id) if current_period else None
    legacy = bool(current_plan and current_plan.legacy)
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
