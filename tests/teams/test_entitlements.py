"""The Python API for the host product: entitlements.check and entitlements.limit, on the one rule."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import func, select

from billing_app.billing import entitlements, gateway
from billing_app.billing.catalog import load_catalog
from billing_app.billing.subscriptions import cancel
from billing_app.db import session_scope
from billing_app.models import OrgSubscription, utcnow
from tests.billing.helpers import buy, subscription
from tests.teams.helpers import buy_team, join


def test_the_free_tier_until_a_plan_is_live(org, stripe_env, db):
    free = load_catalog().free
    assert entitlements.check(org.id, "sso") is False and entitlements.check(org.id, "api_access") is False
    assert entitlements.limit(org.id, "seats") == entitlements.Limit(limit=free.limits["seats"], used=2)
    assert entitlements.limit(org.id, "seats").reached
    assert entitlements.limit(org.id, "projects") == entitlements.Limit(limit=1, used=None)
    assert entitlements.check(org.id, "no_such_feature") is False

    buy(org, "starter", sandbox=stripe_env)
    assert entitlements.check(org.id, "api_access") is True and entitlements.check(org.id, "sso") is False
    seats = entitlements.limit(org.id, "seats")
    assert (seats.limit, seats.used, seats.remaining, seats.reached) == (3, 2, 1, False)

    # Past due beyond the grace period: no access, so the free tier's grants again.
    row = subscription(db, org)
    row.status, row.current_period_start = "past_due", utcnow() - timedelta(days=30)
    db.add(row)
    db.commit()
    assert entitlements.check(org.id, "api_access") is False
    assert entitlements.limit(org.id, "seats").limit == free.limits["seats"]


def test_a_lifetime_plan_grants_everything_it_lists(org, stripe_env):
    buy(org, "business", "ALL_TIME", sandbox=stripe_env)
    assert entitlements.check(org.id, "sso") is True
    assert entitlements.limit(org.id, "seats") == entitlements.Limit(limit=None, used=2)  # unlimited
    assert entitlements.limit(org.id, "seats").remaining is None


def test_an_ended_subscription_falls_back_to_the_free_tier(org, stripe_env):
    buy(org, "pro", sandbox=stripe_env)
    assert entitlements.check(org.id, "priority_support") is True  # trialing
    cancel(org.admin, at_period_end=False)
    assert entitlements.check(org.id, "priority_support") is False


def test_per_seat_plans_report_purchased_seats_and_usage_counters(org, stripe_env):
    buy_team(org, stripe_env)
    join(org, "carol@example.com")
    with session_scope() as s:
        granted = entitlements.grants(s, org.id)
    assert (granted.plan_key, granted.per_seat, granted.min_seats, granted.purchased_seats) == ("team", True, 3, 3)
    assert entitlements.limit(org.id, "seats") == entitlements.Limit(limit=None, used=3)

    entitlements.register_usage("projects", lambda session, org_id: 7)
    try:
        assert entitlements.limit(org.id, "projects") == entitlements.Limit(limit=None, used=7)
    finally:
        entitlements.USAGE.pop("projects")


def test_reading_entitlements_makes_no_stripe_call(org, stripe_env):
    buy(org, "starter", sandbox=stripe_env)
    before = gateway.call_counter["count"]
    for _ in range(3):
        entitlements.check(org.id, "sso")
        entitlements.limit(org.id, "seats")
    assert gateway.call_counter["count"] == before
    with session_scope() as s:
        assert s.exec(select(func.count()).select_from(OrgSubscription)).one() == 1
