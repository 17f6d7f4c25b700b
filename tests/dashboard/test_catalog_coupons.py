"""Coupons and promotion codes as code: plans.toml -> Stripe, created once, never edited."""

from __future__ import annotations

import pytest

from billing_app.billing.catalog import CatalogError, load_catalog, sync_catalog
from billing_app.db import session_scope


def test_sync_catalog_creates_the_coupons_and_codes_of_plans_toml(stripe_env):
    c = stripe_env.client
    spec = load_catalog()
    assert spec.retention.coupon == "stay20_3m"
    for coupon in spec.coupons:
        at_stripe = c.v1.coupons.retrieve(coupon.id)
        assert (at_stripe.name, at_stripe.duration, at_stripe.duration_in_months) == (coupon.name, coupon.duration, coupon.duration_in_months)
        assert at_stripe.percent_off == coupon.percent_off and at_stripe.amount_off == coupon.amount_off
    launch = c.v1.coupons.retrieve("launch10_12m")
    assert launch.max_redemptions == 1000 and launch.redeem_by is not None
    codes = {p.code: p for p in c.v1.promotion_codes.list(params={"limit": 100}).data}
    assert codes["LAUNCH10"].promotion.coupon == "launch10_12m" and codes["WELCOME5"].promotion.coupon == "welcome5"
    with session_scope() as s:
        assert sync_catalog(s) == []  # nothing left to do


def test_a_changed_coupon_is_reported_and_left_alone(stripe_env):
    spec = load_catalog()
    spec.coupons[0].percent_off = 30
    spec.coupons.append(spec.coupons[2].model_copy(update={"id": "welcome7", "amount_off": 700}))
    with session_scope() as s:
        dry = sync_catalog(s, dry_run=True, spec=spec)
    assert "create coupon welcome7: $7.00 off once" in dry
    assert any(line.startswith("warning: coupon stay20_3m differs") and "percent_off 20 at Stripe, 30 here" in line for line in dry)
    client = stripe_env.client
    with pytest.raises(Exception):
        client.v1.coupons.retrieve("welcome7")  # a dry run makes nothing
    with session_scope() as s:
        sync_catalog(s, spec=spec)
    assert client.v1.coupons.retrieve("stay20_3m").percent_off == 20  # never edited
    assert client.v1.coupons.retrieve("welcome7").amount_off == 700


def test_coupon_entries_are_checked(tmp_path):
    base = 'generation = 1\n[[plans]]\nkey = "x"\nname = "X"\n[[plans.periods]]\ntype = "MONTHLY"\namount = 1\ncurrency = "usd"\nlookup_key = "x"\n'
    cases = {
        '[[coupons]]\nid = "a"\nname = "A"\npercent_off = 10\namount_off = 5\ncurrency = "usd"\nduration = "once"\n': "exactly one of",
        '[[coupons]]\nid = "a"\nname = "A"\npercent_off = 10\nduration = "repeating"\n': "duration_in_months",
        '[[coupons]]\nid = "a"\nname = "A"\npercent_off = 10\nduration = "once"\n[[promotion_codes]]\ncode = "X"\ncoupon = "b"\n': "unknown coupon",
        '[retention]\ncoupon = "nope"\n': "unknown coupon",
    }
    for extra, message in cases.items():
        path = tmp_path / "plans.toml"
        path.write_text(base + extra)
        with pytest.raises(CatalogError, match=message):
            load_catalog(path)
