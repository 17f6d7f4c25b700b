"""A renewal that needs 3-D Secure: the email (once, after repeated deliveries), the dashboard's
link to the hosted invoice page, and recovery once the customer approves there."""

from __future__ import annotations

import httpx

from billing_app.billing.sync import sync_customer
from billing_app.billing.views import billing_view
from billing_app.db import session_scope
from tests.billing.helpers import access, buy_on_clock, subscription
from tests.notifications.helpers import deliver


def test_renewal_needing_authentication(org, webhook_client, stripe_env, smtp, db):
    clock, customer = buy_on_clock(org, stripe_env)
    card = stripe_env.client.v1.payment_methods.attach("pm_card_authenticationRequired", params={"customer": customer.id})
    sub = subscription(db, org)
    stripe_env.client.v1.subscriptions.update(sub.stripe_id, params={"default_payment_method": card.id})
    stripe_env.client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": int(sub.current_period_end.timestamp()) + 3600})
    deliver(webhook_client, stripe_env, smtp)

    assert smtp.kinds() == ["payment_action_required", "receipt"]  # not "payment failed" as well
    mail = smtp.of_kind("payment_action_required")[0]
    with session_scope() as s:
        url = billing_view(s, org.id).confirm_payment_url
    assert url.startswith(stripe_env.base_url + "/invoices/in_")
    assert url in mail.part("plain") and "confirm a payment" in mail.subject

    assert httpx.post(f"{url}/authenticate", data={"authentication": "approve"}).status_code == 303
    sync_customer(customer.id)
    with session_scope() as s:
        assert billing_view(s, org.id).confirm_payment_url == ""
    assert subscription(db, org).status == "active" and access(org).access


def test_an_incomplete_first_payment_expires_and_never_grants_access(org, stripe_env, db):
    import time

    from sqlmodel import select

    from billing_app.models import BillingCustomer, PlanPeriod

    c = stripe_env.client
    clock = c.v1.test_helpers.test_clocks.create(params={"frozen_time": int(time.time())})
    customer = c.v1.customers.create(params={"email": "admin@acme.example", "test_clock": clock.id})
    with session_scope() as s:
        s.add(BillingCustomer(org_id=org.id, stripe_customer_id=customer.id))
        price = s.exec(select(PlanPeriod.stripe_price_id).where(PlanPeriod.amount > 0, PlanPeriod.period_type == "MONTHLY")).first()
    card = c.v1.payment_methods.attach("pm_card_authenticationRequired", params={"customer": customer.id})
    sub = c.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": price}], "default_payment_method": card.id})
    assert sub.status == "incomplete"
    sync_customer(customer.id)
    assert subscription(db, org).status == "incomplete" and not access(org).access
    with session_scope() as s:
        assert billing_view(s, org.id).confirm_payment_url  # the first payment can still be confirmed

    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": int(time.time()) + 24 * 3600})
    sync_customer(customer.id)
    assert subscription(db, org).status == "incomplete_expired" and not access(org).access
    with session_scope() as s:
        assert billing_view(s, org.id).confirm_payment_url == ""  # the expired invoice is void: nothing to confirm


def test_an_upgrade_needing_authentication_waits_for_the_hosted_page(org, webhook_client, stripe_env, smtp, db):
    from billing_app.billing.subscriptions import change_plan
    from tests.billing.helpers import period_id

    clock, customer = buy_on_clock(org, stripe_env)
    card = stripe_env.client.v1.payment_methods.attach("pm_card_authenticationRequired", params={"customer": customer.id})
    stripe_env.client.v1.subscriptions.update(subscription(db, org).stripe_id, params={"default_payment_method": card.id})
    starter_price = subscription(db, org).stripe_price_id

    change = change_plan(org.admin, period_id("pro", "MONTHLY"), preview=False)
    assert change.confirm_url and not change.applied
    assert subscription(db, org).stripe_price_id == starter_price  # nothing changes before the bank says yes
    with session_scope() as s:
        assert billing_view(s, org.id).confirm_payment_url == change.confirm_url
    deliver(webhook_client, stripe_env, smtp, rounds=1, times=3)
    assert len(smtp.of_kind("payment_action_required")) == 1

    assert httpx.post(f"{change.confirm_url}/authenticate", data={"authentication": "approve"}).status_code == 303
    sync_customer(customer.id)
    assert subscription(db, org).stripe_price_id != starter_price and subscription(db, org).status == "active"
    with session_scope() as s:
        view = billing_view(s, org.id)
    assert view.confirm_payment_url == "" and view.plan_name == "Pro"


def test_a_declined_upgrade_changes_nothing_and_leaves_nothing_owed(org, stripe_env, db):
    from billing_app.billing.subscriptions import change_plan
    from billing_app.errors import ErrorCode
    from tests.billing.helpers import expect, period_id

    clock, customer = buy_on_clock(org, stripe_env)
    failing = stripe_env.client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": customer.id})
    sub = subscription(db, org)
    stripe_env.client.v1.subscriptions.update(sub.stripe_id, params={"default_payment_method": failing.id})
    expect(ErrorCode.STRIPE_PLAN_CHANGE_FAILED, change_plan, org.admin, period_id("pro", "MONTHLY"), preview=False)
    fresh = stripe_env.client.v1.subscriptions.retrieve(sub.stripe_id)
    assert fresh.pending_update is None and fresh["items"].data[0].price.id == sub.stripe_price_id
    assert stripe_env.client.v1.invoices.retrieve(fresh.latest_invoice).status == "void"
    assert subscription(db, org).status == "active"
