"""A one-off (lifetime) purchase is mirrored from what Stripe says was paid, never from metadata."""

from __future__ import annotations

from sqlmodel import select

from billing_app.billing.customers import ensure_customer
from billing_app.billing.sync import sync_customer
from billing_app.db import session_scope
from billing_app.models import OrgSubscription, PlanPeriod
from tests.billing.helpers import access, period_id


def _pay_behind_the_apps_back(stripe_env, customer, price_id, metadata):
    """A payment-mode session made in the dashboard (anyone there can write its metadata), paid."""
    session = stripe_env.client.v1.checkout.sessions.create(params={
        "mode": "payment", "customer": customer, "line_items": [{"price": price_id, "quantity": 1}],
        "metadata": metadata, "success_url": "http://127.0.0.1:3999/ok", "cancel_url": "http://127.0.0.1:3999/no",
    })
    stripe_env.complete_checkout(session.id)


def test_metadata_naming_a_plan_does_not_grant_it(org, stripe_env):
    client = stripe_env.client
    customer = ensure_customer(org.id, "admin@acme.example")
    product = client.v1.products.create(params={"name": "Sticker"})
    sticker = client.v1.prices.create(params={"product": product.id, "unit_amount": 100, "currency": "usd"})
    _pay_behind_the_apps_back(stripe_env, customer, sticker.id,
                              {"period_id": str(period_id("business", "ALL_TIME")), "description": "Sticker"})
    sync_customer(customer)  # the checkout.session.completed webhook
    assert access(org).plan_key != "business", "a $1 sticker bought Business for life"
    with session_scope() as s:
        assert s.exec(select(OrgSubscription).where(OrgSubscription.org_id == org.id)).all() == []


def test_the_price_paid_decides_the_plan_whatever_metadata_says(org, stripe_env):
    customer = ensure_customer(org.id, "admin@acme.example")
    with session_scope() as s:
        business_price = s.get(PlanPeriod, period_id("business", "ALL_TIME")).stripe_price_id
    _pay_behind_the_apps_back(stripe_env, customer, business_price, {"period_id": str(period_id("starter", "MONTHLY"))})
    sync_customer(customer)
    assert access(org).plan_key == "business"
