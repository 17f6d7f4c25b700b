import pytest
from sqlmodel import select

from billing_app.billing.catalog import CatalogError, load_catalog, sync_catalog
from billing_app.db import session_scope
from billing_app.models import Plan, PlanPeriod


def test_catalog_is_mirrored_in_stripe_and_the_tables(stripe_env, db):
    spec = load_catalog()
    plans = {p.key: p for p in db.exec(select(Plan)).all()}
    assert set(plans) == {p.key for p in spec.plans}
    for plan_spec in spec.plans:
        for period_spec in plan_spec.periods:
            price = stripe_env.client.v1.prices.list(params={"lookup_keys": [period_spec.lookup_key]}).data[0]
            assert price.unit_amount == period_spec.amount and price.currency == period_spec.currency
            assert (price.recurring.interval if price.recurring else None) == period_spec.type.interval
            row = db.exec(select(PlanPeriod).where(PlanPeriod.lookup_key == period_spec.lookup_key)).one()
            assert row.stripe_price_id == price.id
    assert plans["pro"].most_popular and plans["classic"].legacy


def test_second_sync_changes_nothing(stripe_env):
    with session_scope() as s:
        assert sync_catalog(s) == []


def test_new_amount_makes_a_new_price_and_moves_the_lookup_key(stripe_env, db):
    spec = load_catalog()
    period = spec.plans[0].periods[0]
    old = stripe_env.client.v1.prices.list(params={"lookup_keys": [period.lookup_key]}).data[0]
    period.amount += 100
    with session_scope() as s:
        changes = sync_catalog(s, dry_run=True, spec=spec)
    assert any("replace price " + period.lookup_key in c for c in changes)
    assert stripe_env.client.v1.prices.list(params={"lookup_keys": [period.lookup_key]}).data[0].id == old.id

    with session_scope() as s:
        sync_catalog(s, spec=spec)
    new = stripe_env.client.v1.prices.list(params={"lookup_keys": [period.lookup_key]}).data[0]
    assert new.id != old.id and new.unit_amount == period.amount
    old_now = stripe_env.client.v1.prices.retrieve(old.id)
    assert old_now.unit_amount == period.amount - 100 and not old_now.active and old_now.lookup_key is None
    db.expire_all()
    assert db.exec(select(PlanPeriod).where(PlanPeriod.lookup_key == period.lookup_key)).one().stripe_price_id == new.id


def test_a_plan_removed_from_the_file_is_retired_not_deleted(stripe_env, db):
    spec = load_catalog()
    spec.plans = [p for p in spec.plans if p.key != "classic"]
    with session_scope() as s:
        assert "retire plan classic" in sync_catalog(s, spec=spec)
    db.expire_all()
    assert db.exec(select(Plan).where(Plan.key == "classic")).one().active is False


def test_invalid_catalog_is_reported_clearly(tmp_path):
    bad = tmp_path / "plans.toml"
    bad.write_text('generation = 1\n[[plans]]\nkey = "x"\nname = "X"\n[[plans.periods]]\ntype = "WEEKLY"\namount = 1\ncurrency = "usd"\nlookup_key = "x"\n')
    with pytest.raises(CatalogError, match="plans.toml is not a valid catalog"):
        load_catalog(bad)


# --- a price changed under existing subscribers ---------------------------------------------------------


def _reprice(plan_key: str, period_type: str, delta: int) -> None:
    """An operator changes a price in plans.toml and runs sync-catalog: a new price, the old one archived."""
    spec = load_catalog()
    plan = next(p for p in spec.plans if p.key == plan_key)
    period = next(p for p in plan.periods if p.type.value == period_type)
    period.amount += delta
    with session_scope() as s:
        sync_catalog(s, spec=spec)


def _resync(stripe_env, db, org) -> None:
    """Any webhook of the customer (a renewal, a card update) re-reads it."""
    from billing_app.billing.sync import sync_customer
    from tests.billing.helpers import subscription

    sync_customer(stripe_env.client.v1.subscriptions.retrieve(subscription(db, org).stripe_id).customer)


def test_a_subscriber_left_on_the_old_price_keeps_its_plan(org, stripe_env, db):
    """Stripe moves no one to a new price: the org still pays the old one and keeps Business (it fell to
    the free tier, its features off); changing to a cheaper plan still waits for the period end (it
    was taken for an upgrade and switched at once), and asking for Business again is no change."""
    from billing_app.billing.entitlements import grants
    from billing_app.billing.subscriptions import change_plan
    from billing_app.errors import ErrorCode
    from tests.billing.helpers import buy, expect, period_id, subscription

    buy(org, plan="business", sandbox=stripe_env)
    _reprice("business", "MONTHLY", 1000)
    _resync(stripe_env, db, org)
    with session_scope() as s:
        granted = grants(s, org.id)
    assert (granted.plan_key, granted.features.get("sso")) == ("business", True)
    assert subscription(db, org).plan_period_id == period_id("business", "MONTHLY")
    expect(ErrorCode.SAME_PLAN, change_plan, org.admin, period_id("business", "MONTHLY"), preview=True)
    change = change_plan(org.admin, period_id("starter", "MONTHLY"), preview=False)
    at_stripe = stripe_env.client.v1.subscriptions.retrieve(subscription(db, org).stripe_id)
    assert (change.upgrade, at_stripe["items"].data[0].price.unit_amount) == (False, 9900)


def test_a_downgrade_scheduled_to_a_repriced_plan_is_still_shown(org, stripe_env, db):
    from billing_app.billing.subscriptions import change_plan
    from tests.billing.helpers import buy_on_clock, period_id, subscription

    buy_on_clock(org, stripe_env, plan="business")
    change_plan(org.admin, period_id("starter", "MONTHLY"), preview=False)
    _reprice("starter", "MONTHLY", 100)
    _resync(stripe_env, db, org)
    assert subscription(db, org).scheduled_period_id == period_id("starter", "MONTHLY")  # Stripe still switches then


def test_a_price_made_for_a_plan_outside_the_catalog_still_sells_that_plan(org, stripe_env, db):
    """A price retired before history was kept, or made in Stripe's Dashboard on a plan's product for
    one customer: its product and interval name the period."""
    from billing_app.billing.prices import period_for_price
    from tests.billing.helpers import period_id

    with session_scope() as s:
        business = s.get(PlanPeriod, period_id("business", "MONTHLY"))
        product = business.plan.stripe_product_id
    custom = stripe_env.client.v1.prices.create(params={"product": product, "currency": "usd", "unit_amount": 4900,
                                                        "recurring": {"interval": "month"}})
    yearly = stripe_env.client.v1.prices.create(params={"product": product, "currency": "usd", "unit_amount": 4900,
                                                        "recurring": {"interval": "month", "interval_count": 3}})
    with session_scope() as s:
        assert period_for_price(s, custom.to_dict()).id == period_id("business", "MONTHLY")
        assert period_for_price(s, yearly.to_dict()) is None  # quarterly: no period of the catalog
        assert period_for_price(s, custom.id) is None  # an id alone says nothing of its product
