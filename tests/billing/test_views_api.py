"""The read side the REST API shares with the pages: catalog, subscription_detail, billing_summary."""

from datetime import timezone

from sqlmodel import select

from billing_app.billing import gateway
from billing_app.billing.entitlements import AccessReason
from billing_app.billing.subscriptions import change_plan
from billing_app.billing.views import billing_summary, billing_view, catalog, pricing_view, subscription_detail
from billing_app.db import session_scope
from billing_app.models import PeriodType, Plan
from tests.billing.helpers import buy, buy_on_clock, period_id


def test_reading_the_api_views_makes_no_stripe_call(org, stripe_env):
    buy(org, sandbox=stripe_env)
    before = gateway.call_counter["count"]
    with session_scope() as s:
        catalog(s)
        subscription_detail(s, org.id)
        billing_summary(s, org.id)
    assert gateway.call_counter["count"] == before


def test_the_pricing_page_shows_the_catalog_and_a_legacy_plan_only_to_its_holder(org, stripe_env):
    buy(org, sandbox=stripe_env)  # starter
    with session_scope() as s:
        plans = catalog(s)
        cards = pricing_view(s, org.id).plans
    assert [p.key for p in plans] == [c.key for c in cards] == ["starter", "pro", "team", "business"]
    assert [p.id for p in plans[0].periods] == [period_id("starter", "MONTHLY"), period_id("starter", "YEARLY")]
    assert [p.period_type for p in plans[3].periods] == [PeriodType.MONTHLY, PeriodType.YEARLY, PeriodType.ALL_TIME]
    assert (cards[0].monthly.period_id, cards[0].yearly.period_id) == tuple(str(p.id) for p in plans[0].periods)

    with session_scope() as s:
        starter = s.exec(select(Plan).where(Plan.key == "starter")).one()
        starter.legacy = True
        s.add(starter)
    with session_scope() as s:
        assert [p.key for p in catalog(s)] == ["pro", "team", "business"]  # what the API and new orgs see
        assert [p.key for p in catalog(s, legacy_plan_id=starter.id)] == ["starter", "pro", "team", "business"]
        assert [c.key for c in pricing_view(s, org.id).plans] == ["starter", "pro", "team", "business"]  # its holder
        assert [c.key for c in pricing_view(s, None).plans] == ["pro", "team", "business"]


def test_detail_and_summary_without_and_with_a_subscription(org, stripe_env):
    with session_scope() as s:
        assert subscription_detail(s, org.id) is None
        summary = billing_summary(s, org.id)
    assert (summary.access, summary.reason, summary.status, summary.plan) == (False, AccessReason.NO_SUBSCRIPTION, None, None)

    buy(org, sandbox=stripe_env)
    with session_scope() as s:
        detail = subscription_detail(s, org.id)
        summary = billing_summary(s, org.id)
    assert (detail.plan_key, detail.period_type, detail.price, detail.status, detail.access) == ("starter", PeriodType.MONTHLY, 900, "active", True)
    assert detail.date_to.tzinfo == timezone.utc and detail.date_to == summary.current_period_end
    assert (summary.reason, summary.plan.key, summary.plan.limits) == (AccessReason.ACTIVE, "starter", {"seats": 3, "projects": 5})


def test_a_scheduled_downgrade_reads_the_same_on_the_page_and_in_the_api(org, stripe_env):
    buy_on_clock(org, stripe_env, plan="business")
    change_plan(org.admin, period_id("starter", "MONTHLY"), preview=False)
    with session_scope() as s:
        change = subscription_detail(s, org.id).scheduled_change
        page = billing_view(s, org.id).scheduled_change
    assert (change.plan_key, change.plan_name, change.period_type) == ("starter", "Starter", PeriodType.MONTHLY)
    assert change.period_id == period_id("starter", "MONTHLY") and change.at.tzinfo == timezone.utc
    assert page.startswith("Changes to Starter (monthly) on ")
