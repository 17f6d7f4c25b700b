"""The whole billing flow against the sandbox with the official SDK, a real browser and signed webhooks."""

from __future__ import annotations

import httpx
import pytest
import stripe

from .helpers import CANCEL, SUCCESS

pytestmark = pytest.mark.browser
T0 = 1_767_225_600  # 2026-01-01


def test_full_billing_flow(sandbox, page, webhook_receiver):
    c = sandbox.client
    page.route("http://app.test/**", lambda route: route.fulfill(status=200, content_type="text/html", body="ok"))
    endpoint = sandbox.register_webhook(webhook_receiver.url)

    def delivered(type_, **match):
        d = webhook_receiver.wait_for_type(type_, **match)
        stripe.WebhookSignature.verify_header(d["body"], d["signature"], endpoint.secret, tolerance=300)
        return stripe.Webhook.construct_event(d["body"], d["signature"], endpoint.secret)

    # Catalogue.
    prod = c.v1.products.create(params={"name": "Team plan"})
    monthly = c.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 1500, "recurring": {"interval": "month"}, "lookup_key": "team_m"})
    yearly = c.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 15000, "recurring": {"interval": "year"}, "lookup_key": "team_y"})
    one_off = c.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 4900, "lookup_key": "setup_fee"})
    delivered("product.created", id=prod.id)
    for p in (monthly, yearly, one_off):
        delivered("price.created", id=p.id)

    # Customers on a test clock.
    clock = c.v1.test_helpers.test_clocks.create(params={"frozen_time": T0})
    alice = c.v1.customers.create(params={"email": "alice@x.test", "name": "Alice", "test_clock": clock.id, "metadata": {"user_id": "1"}})
    bob = c.v1.customers.create(params={"email": "bob@x.test", "test_clock": clock.id})
    delivered("customer.created", id=alice.id)

    # Alice subscribes through the hosted form: a declined card first, then a good one.
    cs = c.v1.checkout.sessions.create(params={"mode": "subscription", "customer": alice.id, "client_reference_id": "1",
                                               "line_items": [{"price": monthly.id, "quantity": 1}],
                                               "success_url": SUCCESS, "cancel_url": CANCEL})
    page.goto(cs.url)
    page.fill("#card_number", "4000 0000 0000 0002")
    page.click("#submit")
    assert page.inner_text("#error") == "Your card was declined."
    assert c.v1.checkout.sessions.retrieve(cs.id).status == "open"
    page.fill("#card_number", "4242 4242 4242 4242")
    page.click("#submit")
    page.wait_for_url(f"http://app.test/success?session_id={cs.id}")
    cs = c.v1.checkout.sessions.retrieve(cs.id, params={"expand": ["subscription", "invoice"]})
    assert (cs.status, cs.payment_status) == ("complete", "paid")
    sub = cs.subscription
    assert sub.status == "active"
    assert cs.invoice.status == "paid" and cs.invoice.amount_paid == 1500
    ev = delivered("checkout.session.completed", id=cs.id)
    assert ev.data.object.subscription == sub.id and ev.data.object.client_reference_id == "1"
    delivered("customer.subscription.created", id=sub.id)
    delivered("invoice.paid", id=cs.invoice.id)
    delivered("invoice.payment_succeeded", id=cs.invoice.id)
    delivered("payment_intent.succeeded")

    # Bob subscribes through the test helper.
    cs_b = c.v1.checkout.sessions.create(params={"mode": "subscription", "customer": bob.id,
                                                 "line_items": [{"price": yearly.id, "quantity": 1}], "success_url": SUCCESS})
    sandbox.complete_checkout(cs_b.id, "pm_card_mastercard")
    cs_b = c.v1.checkout.sessions.retrieve(cs_b.id)
    assert cs_b.status == "complete" and cs_b.payment_status == "paid"
    delivered("checkout.session.completed", id=cs_b.id)

    # The invoice PDF downloads.
    pdf = httpx.get(cs.invoice.invoice_pdf)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf" and pdf.content.startswith(b"%PDF-")

    # Alice cancels at period end in the portal.
    portal = c.v1.billing_portal.sessions.create(params={"customer": alice.id, "return_url": "http://app.test/account"})
    page.goto(portal.url)
    assert "Team plan" in page.inner_text("main")
    page.click("#cancel-subscription")
    assert "will be canceled" in page.inner_text("#notice")
    ev = delivered("customer.subscription.updated", id=sub.id, cancel_at_period_end=True)
    assert ev.data.previous_attributes["cancel_at_period_end"] is False
    page.click("#return")
    page.wait_for_url("http://app.test/account")

    # Time passes beyond the period end: Alice's subscription ends, Bob's yearly one carries on.
    end = sub["items"].data[0].current_period_end
    clock = c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": end + 86400})
    assert clock.status == "ready"
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "canceled" and sub.ended_at == end
    ev = delivered("customer.subscription.deleted", id=sub.id)
    assert ev.data.object.status == "canceled"
    assert c.v1.subscriptions.retrieve(cs_b.subscription).status == "active"
    delivered("test_helpers.test_clock.ready", id=clock.id)

    # Every delivery was signed with the endpoint's secret.
    for d in webhook_receiver.deliveries:
        stripe.WebhookSignature.verify_header(d["body"], d["signature"], endpoint.secret, tolerance=300)
