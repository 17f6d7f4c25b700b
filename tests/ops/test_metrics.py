"""The console's figures against hand-computed fixtures: a yearly plan counts one twelfth, a trial
zero, a discount lowers MRR, currencies stay apart."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from billing_app.models import Organization, OrgSubscription, Payment, Plan, PlanPeriod
from billing_app.ops import metrics, orgs

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
THIS_MONTH = datetime(2026, 11, 3, tzinfo=timezone.utc)
LONG_AGO = datetime(2025, 1, 10, tzinfo=timezone.utc)


@pytest.fixture
def catalog(db):
    plan = Plan(key="team", name="Team")
    db.add(plan)
    db.flush()
    periods = {
        "usd_monthly": PlanPeriod(plan_id=plan.id, period_type="MONTHLY", amount=1000, currency="usd", lookup_key="a"),
        "usd_yearly": PlanPeriod(plan_id=plan.id, period_type="YEARLY", amount=12000, currency="usd", lookup_key="b"),
        "usd_lifetime": PlanPeriod(plan_id=plan.id, period_type="ALL_TIME", amount=50000, currency="usd", lookup_key="c"),
    }
    euro = Plan(key="team_eu", name="Team EU")
    db.add(euro)
    db.flush()
    periods["eur_yearly"] = PlanPeriod(plan_id=euro.id, period_type="YEARLY", amount=24000, currency="eur", lookup_key="d")
    periods["jpy_monthly"] = PlanPeriod(plan_id=euro.id, period_type="MONTHLY", amount=3000, currency="jpy", lookup_key="e")
    db.add_all(periods.values())
    db.commit()
    return {key: p.id for key, p in periods.items()}


def add_sub(db, period_id, status, *, started=LONG_AGO, one_off=False, trial_end=None, ended=None, **extra):
    org = Organization(name="Org")
    db.add(org)
    db.flush()
    sub = OrgSubscription(org_id=org.id, stripe_id=f"sub_{org.id}", plan_period_id=period_id, status=status, one_off=one_off,
                          started_at=started, trial_end=trial_end, ended_at=ended, **extra)
    db.add(sub)
    db.commit()
    return sub


def test_monthly_amount_rules():
    assert metrics.monthly_amount(1000, "MONTHLY") == 1000
    assert metrics.monthly_amount(12000, "YEARLY") == 1000  # one twelfth
    assert metrics.monthly_amount(9000, "YEARLY") == 750
    assert metrics.monthly_amount(249900, "ALL_TIME") == 0  # paid once, recurs never
    assert metrics.monthly_amount(1000, "MONTHLY", percent_off=25) == 750
    assert metrics.monthly_amount(1000, "MONTHLY", amount_off=100) == 900
    assert metrics.monthly_amount(12000, "YEARLY", amount_off=1200) == 900
    assert metrics.monthly_amount(500, "MONTHLY", amount_off=900) == 0  # never negative
    assert metrics.monthly_amount(2900, "YEARLY", percent_off=50) == Decimal(1450) / 12


def test_mrr_arr_and_counts_against_hand_computed_figures(db, catalog):
    add_sub(db, catalog["usd_monthly"], "active")                                   # 1000
    add_sub(db, catalog["usd_yearly"], "active")                                    # 12000 / 12 = 1000
    add_sub(db, catalog["usd_monthly"], "trialing", trial_end=NOW + timedelta(days=5))  # 0
    add_sub(db, catalog["usd_monthly"], "active", discount_percent_off=25.0)       # 750
    add_sub(db, catalog["usd_monthly"], "active", discount_amount_off=100)         # 900
    add_sub(db, catalog["usd_monthly"], "past_due")                                 # 1000: still collecting
    add_sub(db, catalog["usd_monthly"], "paused")                                   # 0
    add_sub(db, catalog["usd_monthly"], "canceled", ended=THIS_MONTH)               # 0, churned this month
    add_sub(db, catalog["usd_lifetime"], "active", one_off=True)                    # 0, and not a subscription
    add_sub(db, catalog["eur_yearly"], "active", started=THIS_MONTH)                # 2000 EUR, new this month
    add_sub(db, catalog["jpy_monthly"], "active")                                   # 3000 JPY

    result = metrics.overview(db, now=NOW)

    assert result.mrr == {"eur": 2000, "jpy": 3000, "usd": 1000 + 1000 + 750 + 900 + 1000}
    assert result.arr == {"eur": 24000, "jpy": 36000, "usd": 4650 * 12}
    assert result.counts == {"active": 6, "trialing": 1, "past_due": 1, "paused": 1, "canceled": 1}
    assert (result.new_this_month, result.churned_this_month) == (1, 1)


def test_trial_conversion(db, catalog):
    ended = NOW - timedelta(days=10)
    add_sub(db, catalog["usd_monthly"], "active", trial_end=ended)                        # converted
    add_sub(db, catalog["usd_monthly"], "canceled", trial_end=ended, ended=NOW)           # paid, then left: converted
    add_sub(db, catalog["usd_monthly"], "canceled", trial_end=ended, ended=ended)         # ended with its trial
    add_sub(db, catalog["usd_monthly"], "canceled", trial_end=ended, ended=ended - timedelta(days=3))  # canceled during it
    add_sub(db, catalog["usd_monthly"], "trialing", trial_end=NOW + timedelta(days=3))    # not decided yet
    result = metrics.overview(db, now=NOW)
    assert (result.trials_converted, result.trials_ended, result.trial_conversion) == (2, 4, 0.5)


def test_failed_payment_recovery(db, catalog):
    org = Organization(name="Payer")
    db.add(org)
    db.flush()
    rows = [("in_1", "COMPLETED", 1), ("in_2", "COMPLETED", 2), ("in_3", "FAILED", 1), ("in_4", "FAILED", 3),
            ("in_5", "CANCELLED", 2), ("in_6", "CANCELLED", 0), ("pi_7", "FAILED", 0), ("in_8", "REFUNDED", 3)]
    for stripe_id, status, attempts in rows:
        db.add(Payment(org_id=org.id, stripe_id=stripe_id, status=status, amount=100, currency="usd",
                       created=NOW - timedelta(days=2), attempt_count=attempts))
    db.commit()
    result = metrics.overview(db, now=NOW)
    # Failed at least once: in_2, in_3, in_4, in_5, in_8; paid after all: in_2, in_8.
    assert (result.recovered_payments, result.failed_payments) == (2, 5)
    assert result.recovery_rate == pytest.approx(0.4)


def test_an_empty_mirror_has_no_rates(db):
    result = metrics.overview(db, now=NOW)
    assert result.mrr == {} and result.trial_conversion is None and result.recovery_rate is None


def test_twelve_months_of_history(db, catalog):
    add_sub(db, catalog["usd_monthly"], "active", started=datetime(2026, 8, 15, tzinfo=timezone.utc))
    add_sub(db, catalog["usd_yearly"], "canceled", started=datetime(2026, 2, 1, tzinfo=timezone.utc),
            ended=datetime(2026, 9, 10, tzinfo=timezone.utc))
    add_sub(db, catalog["usd_monthly"], "active", started=datetime(2026, 10, 5, tzinfo=timezone.utc),
            trial_end=datetime(2026, 10, 19, tzinfo=timezone.utc))
    add_sub(db, catalog["usd_monthly"], "trialing", started=datetime(2026, 11, 10, tzinfo=timezone.utc),
            trial_end=datetime(2026, 11, 24, tzinfo=timezone.utc))

    series = metrics.months(db, now=NOW)

    assert [m.label for m in series][0] == "Dec 2025" and series[-1].label == "Nov 2026" and len(series) == 12
    by = {m.label: m for m in series}
    assert by["Jan 2026"].mrr == {} and by["Feb 2026"].mrr == {"usd": 1000}
    assert by["Aug 2026"].mrr == {"usd": 2000} and by["Aug 2026"].new == 1
    assert by["Sep 2026"].mrr == {"usd": 1000} and (by["Sep 2026"].churned, by["Sep 2026"].canceled) == (1, 1)
    assert by["Oct 2026"].mrr == {"usd": 2000} and by["Oct 2026"].new == 1  # its trial ended in October
    assert (by["Nov 2026"].trialing, by["Nov 2026"].active, by["Nov 2026"].new) == (1, 2, 1)
    assert by["Nov 2026"].mrr == metrics.overview(db, now=NOW).mrr == {"usd": 2000}


@pytest.fixture
def seat_period(db):
    plan = Plan(key="seats", name="Seats", per_seat=True, min_seats=3)
    db.add(plan)
    db.flush()
    period = PlanPeriod(plan_id=plan.id, period_type="MONTHLY", amount=800, currency="usd", lookup_key="seat_m")
    db.add(period)
    db.commit()
    return period.id


def test_per_seat_mrr_counts_the_seats_paid_for(db, catalog, seat_period):
    """5 seats at $8.00 a month: Stripe bills $40.00 a month, on the console, its chart and the org list."""
    seats = add_sub(db, seat_period, "active", quantity=5)                                # 4000
    discounted = add_sub(db, seat_period, "active", quantity=4, discount_amount_off=200)  # 3200 - 200 = 3000
    flat = add_sub(db, catalog["usd_monthly"], "active")                                  # 1000

    assert metrics.overview(db, now=NOW).mrr == {"usd": 8000}
    by = {m.label: m for m in metrics.months(db, now=NOW)}
    assert by["Oct 2026"].mrr == by["Nov 2026"].mrr == {"usd": 8000}
    page = orgs.list_orgs(db, orgs.OrgFilter.parse(sort="-mrr"))
    assert [(r.id, r.mrr) for r in page.rows] == [(seats.org_id, 4000), (discounted.org_id, 3000), (flat.org_id, 1000)]


def test_collection_paused_subscription_is_not_mrr(db, seat_period):
    """The cancellation flow's pause: Stripe keeps status active with pause_collection; nothing is collected."""
    sub = add_sub(db, seat_period, "active", quantity=3, paused=True, pause_resumes_at=NOW + timedelta(days=42))

    result = metrics.overview(db, now=NOW)
    assert result.mrr == {} and result.arr == {}
    assert (result.counts["active"], result.counts["paused"]) == (0, 1)
    assert metrics.months(db, now=NOW)[-1].mrr == {}
    [row] = orgs.list_orgs(db, orgs.OrgFilter.parse()).rows
    assert (row.id, row.mrr, row.status) == (sub.org_id, 0, "paused")  # the org list says what the counts say
    assert [r.id for r in orgs.list_orgs(db, orgs.OrgFilter.parse(status="paused")).rows] == [sub.org_id]
    assert orgs.list_orgs(db, orgs.OrgFilter.parse(status="active")).rows == []


def test_the_org_list_rounds_a_half_cent_as_the_overview_does(db, catalog):
    """$1.50 a year is 12.5 cents a month: the overview says 13, and so does the org's row (it said 12)."""
    plan = Plan(key="tiny", name="Tiny")
    db.add(plan)
    db.flush()
    cheap = PlanPeriod(plan_id=plan.id, period_type="YEARLY", amount=150, currency="usd", lookup_key="cheap_y")
    db.add(cheap)
    db.commit()
    sub = add_sub(db, cheap.id, "active")

    assert metrics.overview(db, now=NOW).mrr == {"usd": 13}
    [row] = orgs.list_orgs(db, orgs.OrgFilter.parse()).rows
    assert (row.id, row.mrr) == (sub.org_id, 13)
