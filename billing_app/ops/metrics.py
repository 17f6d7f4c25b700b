"""Revenue and subscription figures for /ops, read from the mirror only (never a Stripe call).

MRR is normalized monthly, per currency, in minor units: a monthly price counts in full, a
yearly one a twelfth, a lifetime purchase nothing (it recurs never); a discount lowers the
price of each period before that. A price counts once per unit of the subscription item (Stripe
bills unit price times quantity: the seats of a per-seat plan; 1 on a flat plan), and a
discount applies to that total. Only subscriptions that are paying now count: `active` and
`past_due` (Stripe still tries to collect), unless collection is paused (`pause_collection`,
the cancellation flow's pause: the status stays active; the console counts it as paused). A
trial counts zero; `paused`, `unpaid` and `incomplete` collect nothing. ARR is twelve times MRR.

The 12-month charts are rebuilt from the dates the mirror keeps (started, trial end, ended),
so a past month knows trials and cancellations but not a past_due spell; its last point is
the current MRR. Every query here filters on an indexed column (status, started_at,
ended_at, trial_end, payment status and attempts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import and_, case, func, or_
from sqlmodel import Session, select

from billing_app.formatting import ZERO_DECIMAL
from billing_app.models import OrgSubscription, Payment, PaymentStatus, PeriodType, PlanPeriod, SubscriptionStatus, utcnow

S = SubscriptionStatus
MRR_STATUSES = frozenset({S.ACTIVE.value, S.PAST_DUE.value})
# Shown on the console, in this order.
COUNTED_STATUSES = (S.ACTIVE.value, S.TRIALING.value, S.PAST_DUE.value, S.PAUSED.value, S.CANCELED.value)
NEVER_STARTED = frozenset({S.INCOMPLETE.value, S.INCOMPLETE_EXPIRED.value})
STILL_SUBSCRIBED = frozenset({S.ACTIVE.value, S.PAST_DUE.value, S.UNPAID.value, S.PAUSED.value})
MONTHS = 12


def monthly_amount(amount: int, period_type: str, *, quantity: int = 1, percent_off: float | None = None,
                   amount_off: int | None = None) -> Decimal:
    """One subscription's share of MRR, in minor units (not rounded: sums are rounded once).
    `amount` is the unit price; monthly_amount_sql is the same rule in SQL."""
    if period_type == PeriodType.ALL_TIME.value:
        return Decimal(0)
    price = Decimal(amount) * quantity
    if amount_off:
        price = max(Decimal(0), price - amount_off)
    if percent_off:
        price = price * (Decimal(100) - Decimal(str(percent_off))) / 100
    return price / 12 if period_type == PeriodType.YEARLY.value else price


def round_minor(value: Decimal) -> int:
    """A sum of monthly amounts in whole minor units: half a cent up (the console's one rounding)."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def month_start(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(start: datetime) -> datetime:
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


def _previous_month(start: datetime) -> datetime:
    return start.replace(year=start.year - 1, month=12) if start.month == 1 else start.replace(month=start.month - 1)


def monthly_amount_sql(sub=OrgSubscription, period=PlanPeriod):
    """monthly_amount in SQL (a float, for sorting), on a subscription joined to its price."""
    total = period.amount * sub.quantity - func.coalesce(sub.discount_amount_off, 0)
    price = case((total < 0, 0), else_=total) * (100 - func.coalesce(sub.discount_percent_off, 0)) / 100.0
    return case((period.period_type == PeriodType.YEARLY.value, price / 12.0),
                (period.period_type == PeriodType.MONTHLY.value, price), else_=0)


def console_status(sub=OrgSubscription):
    """The status the console shows and filters by, in SQL: Stripe's, except `paused` for a
    subscription whose collection is paused (Stripe keeps that one active or past_due)."""
    return case((and_(sub.paused == True, sub.status.in_(MRR_STATUSES)), S.PAUSED.value), else_=sub.status)  # noqa: E712


def paying(sub=OrgSubscription):
    """The subscriptions MRR counts: collecting now (see the module docstring), not a one-off purchase."""
    return and_(sub.status.in_(MRR_STATUSES), sub.paused == False, sub.one_off == False)


_PRICED = (OrgSubscription.__table__.c.plan_period_id == PlanPeriod.__table__.c.id)


def mrr(session: Session) -> dict[str, int]:
    """Current MRR per currency (minor units). Grouped in SQL: one row per price and discount."""
    rows = session.exec(
        select(PlanPeriod.currency, PlanPeriod.period_type, PlanPeriod.amount, OrgSubscription.quantity,
               OrgSubscription.discount_percent_off, OrgSubscription.discount_amount_off, func.count())
        .join(PlanPeriod, _PRICED)
        .where(paying())
        .group_by(PlanPeriod.currency, PlanPeriod.period_type, PlanPeriod.amount, OrgSubscription.quantity,
                  OrgSubscription.discount_percent_off, OrgSubscription.discount_amount_off)
    ).all()
    totals: dict[str, Decimal] = {}
    for currency, period_type, amount, quantity, percent_off, amount_off, count in rows:
        share = monthly_amount(amount, period_type, quantity=quantity, percent_off=percent_off, amount_off=amount_off) * count
        totals[currency] = totals.get(currency, Decimal(0)) + share
    return {currency: round_minor(total) for currency, total in sorted(totals.items())}


@dataclass
class Overview:
    mrr: dict[str, int] = field(default_factory=dict)  # currency -> minor units
    arr: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # COUNTED_STATUSES
    new_this_month: int = 0
    churned_this_month: int = 0
    trials_ended: int = 0  # in the last 12 months
    trials_converted: int = 0
    failed_payments: int = 0  # invoices that failed at least once, in the last 12 months
    recovered_payments: int = 0  # ... and were paid after all

    @property
    def trial_conversion(self) -> float | None:
        return self.trials_converted / self.trials_ended if self.trials_ended else None

    @property
    def recovery_rate(self) -> float | None:
        return self.recovered_payments / self.failed_payments if self.failed_payments else None


def overview(session: Session, now: datetime | None = None) -> Overview:
    now = now or utcnow()
    start = month_start(now)
    year_ago = now - timedelta(days=365)
    subs = OrgSubscription.one_off == False  # noqa: E712
    current = mrr(session)
    counts: dict[str, int] = {}
    shown = console_status().label("shown")
    for status, count in session.exec(
        select(shown, func.count()).where(subs, OrgSubscription.status.in_(COUNTED_STATUSES)).group_by(shown)
    ).all():
        counts[status] = count
    new = session.exec(select(func.count()).where(subs, OrgSubscription.started_at >= start, OrgSubscription.started_at <= now,
                                                  OrgSubscription.status.not_in(NEVER_STARTED))).one()
    churned = session.exec(select(func.count()).where(subs, OrgSubscription.status == S.CANCELED.value,
                                                      OrgSubscription.ended_at >= start, OrgSubscription.ended_at <= now)).one()
    # Trials that ended in the last year; converted when the subscription went on past its trial.
    trials = session.exec(
        select(OrgSubscription.status, OrgSubscription.trial_end, OrgSubscription.ended_at)
        .where(subs, OrgSubscription.trial_end > year_ago, OrgSubscription.trial_end <= now)
    ).all()
    converted = sum(1 for status, trial_end, ended_at in trials
                    if status in STILL_SUBSCRIBED or (ended_at is not None and ended_at > trial_end))
    # Invoices (not one-off payments) that failed at least once: still failed, voided after trying,
    # or paid on a later attempt (recovered).
    invoices = and_(Payment.stripe_id.like("in\\_%", escape="\\"), Payment.created > year_ago)
    still_failed = session.exec(select(func.count()).where(Payment.status == PaymentStatus.FAILED.value, invoices)).one()
    given_up = session.exec(select(func.count()).where(
        Payment.status == PaymentStatus.CANCELLED.value, Payment.attempt_count >= 1, invoices)).one()
    recovered = session.exec(select(func.count()).where(
        Payment.status.in_([PaymentStatus.COMPLETED.value, PaymentStatus.REFUNDED.value, PaymentStatus.DISPUTED.value]),
        Payment.attempt_count >= 2, invoices)).one()
    return Overview(
        mrr=current, arr={c: v * 12 for c, v in current.items()},
        counts={status: counts.get(status, 0) for status in COUNTED_STATUSES},
        new_this_month=new, churned_this_month=churned,
        trials_ended=len(trials), trials_converted=converted,
        failed_payments=still_failed + given_up + recovered, recovered_payments=recovered,
    )


@dataclass
class Month:
    """One month of the charts; `mrr` at its end (now, for the current month)."""

    start: datetime
    mrr: dict[str, int] = field(default_factory=dict)
    trialing: int = 0
    active: int = 0  # paying at the month's end
    canceled: int = 0  # ended during the month
    new: int = 0
    churned: int = 0

    @property
    def label(self) -> str:
        return self.start.strftime("%b %Y")


def months(session: Session, now: datetime | None = None, count: int = MONTHS) -> list[Month]:
    """The last `count` months, oldest first, ending with the current one."""
    now = now or utcnow()
    starts = [month_start(now)]
    while len(starts) < count:
        starts.insert(0, _previous_month(starts[0]))
    window_start = starts[0]
    rows = session.exec(
        select(OrgSubscription.status, OrgSubscription.started_at, OrgSubscription.trial_end, OrgSubscription.ended_at,
               OrgSubscription.quantity, OrgSubscription.discount_percent_off, OrgSubscription.discount_amount_off,
               PlanPeriod.currency, PlanPeriod.period_type, PlanPeriod.amount)
        .join(PlanPeriod, _PRICED, isouter=True)
        .where(OrgSubscription.one_off == False, OrgSubscription.started_at <= now,  # noqa: E712
               OrgSubscription.status.not_in(NEVER_STARTED),
               or_(OrgSubscription.ended_at.is_(None), OrgSubscription.ended_at >= window_start))
    ).all()
    result = []
    for start in starts:
        end = min(_next_month(start), now)
        month = Month(start)
        totals: dict[str, Decimal] = {}
        for status, started, trial_end, ended, quantity, percent_off, amount_off, currency, period_type, amount in rows:
            if start <= started < end:
                month.new += 1
            if ended is not None and start <= ended < end and status == S.CANCELED.value:
                month.canceled += 1
                month.churned += 1
            if started >= end or (ended is not None and ended <= end):
                continue
            if trial_end is not None and trial_end > end:
                month.trialing += 1
                continue
            month.active += 1
            if currency is not None:
                share = monthly_amount(amount, period_type, quantity=quantity, percent_off=percent_off, amount_off=amount_off)
                totals[currency] = totals.get(currency, Decimal(0)) + share
        month.mrr = {c: round_minor(v) for c, v in sorted(totals.items())}
        result.append(month)
    result[-1].mrr = mrr(session)  # the current month ends now: today's MRR, by today's statuses
    return result


def major_units(amount: int, currency: str) -> float:
    """For charts: 2900 cents -> 29.0; zero-decimal currencies as they are."""
    return float(amount) if currency.lower() in ZERO_DECIMAL else amount / 100
