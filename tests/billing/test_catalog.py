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
