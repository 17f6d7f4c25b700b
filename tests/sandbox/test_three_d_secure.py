"""3-D Secure in the sandbox: the card 4000 0027 6000 3184 (pm_card_authenticationRequired) needs the
customer's approval on a hosted page; charged off-session it ends requires_action."""

from __future__ import annotations

import httpx
import pytest
import stripe

from .helpers import CANCEL, SUCCESS, advance, catalog, clock_customer, event_types

DAY = 86400


def _session(c, price, customer):
    return c.v1.checkout.sessions.create(params={
        "mode": "subscription", "customer": customer.id, "line_items": [{"price": price.id, "quantity": 1}],
        "success_url": SUCCESS, "cancel_url": CANCEL})


def test_checkout_needs_an_answer_and_a_failed_one_leaves_the_session_open(sandbox):
    c = sandbox.client
    _, monthly, _, _ = catalog(c)
    cust = c.v1.customers.create(params={"email": "a@x.test"})
    cs = _session(c, monthly, cust)
    with pytest.raises(stripe.CardError) as info:
        sandbox.complete_checkout(cs.id, "pm_card_authenticationRequired")
    assert info.value.code == "authentication_required"
    with pytest.raises(stripe.CardError) as info:
        sandbox.complete_checkout(cs.id, "pm_card_authenticationRequired", authentication="fail")
    assert info.value.code == "payment_intent_authentication_failure"
    assert c.v1.checkout.sessions.retrieve(cs.id).status == "open"
    assert c.v1.subscriptions.list(params={"customer": cust.id, "status": "all"}).data == []

    sandbox.complete_checkout(cs.id, "4000 0027 6000 3184", authentication="approve")
    done = c.v1.checkout.sessions.retrieve(cs.id)
    assert done.status == "complete" and done.payment_status == "paid"
    assert c.v1.subscriptions.retrieve(done.subscription).status == "active"


def test_hosted_checkout_shows_the_authentication_step(sandbox):
    c = sandbox.client
    _, monthly, _, _ = catalog(c)
    cust = c.v1.customers.create(params={"email": "a@x.test"})
    cs = _session(c, monthly, cust)
    url = f"{sandbox.base_url}/checkout/{cs.id}"
    step = httpx.post(url, data={"card_number": "4000 0027 6000 3184"})
    assert step.status_code == 200 and "Confirm your payment" in step.text and "authenticate-approve" in step.text
    failed = httpx.post(url, data={"card_number": "4000002760003184", "authentication": "fail"})
    assert failed.status_code == 402 and "unable to authenticate" in failed.text
    approved = httpx.post(url, data={"card_number": "4000002760003184", "authentication": "approve"})
    assert approved.status_code == 303 and approved.headers["location"].startswith("http://app.test/success")


def test_off_session_renewal_requires_action_until_approved_on_the_hosted_invoice_page(sandbox):
    c = sandbox.client
    _, monthly, _, _ = catalog(c)
    clock, cust = clock_customer(c)
    cs = _session(c, monthly, cust)
    sandbox.complete_checkout(cs.id, "pm_card_authenticationRequired", authentication="approve")
    sub = c.v1.subscriptions.retrieve(c.v1.checkout.sessions.retrieve(cs.id).subscription)
    end = sub["items"].data[0].current_period_end

    advance(c, clock, end + 3600)
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "past_due"
    invoice = c.v1.invoices.retrieve(sub.latest_invoice)
    assert invoice.status == "open" and invoice.attempt_count == 1
    assert "invoice.payment_action_required" in event_types(c, type="invoice.*")
    payment = c.v1.invoice_payments.list(params={"invoice": invoice.id}).data[0]
    intent = c.v1.payment_intents.retrieve(payment.payment.payment_intent)
    assert intent.status == "requires_action" and intent.next_action.redirect_to_url.url == invoice.hosted_invoice_url

    page = httpx.get(invoice.hosted_invoice_url)
    assert "Your bank needs you to confirm this payment" in page.text
    refused = httpx.post(f"{invoice.hosted_invoice_url}/authenticate", data={"authentication": "fail"})
    assert refused.status_code == 402
    assert c.v1.payment_intents.retrieve(intent.id).status == "requires_payment_method"
    assert c.v1.invoices.retrieve(invoice.id).status == "open"

    # A later retry asks again; this time the customer approves on the hosted page.
    advance(c, clock, end + 3600 + 3 * DAY + 60)
    assert "Your bank needs you" in httpx.get(invoice.hosted_invoice_url).text
    ok = httpx.post(f"{invoice.hosted_invoice_url}/authenticate", data={"authentication": "approve"})
    assert ok.status_code == 303
    assert c.v1.invoices.retrieve(invoice.id).status == "paid"
    assert c.v1.subscriptions.retrieve(sub.id).status == "active"


def _upgrade_awaiting_3ds(sandbox, at_offset=None):
    """A subscription paid with the 3-D Secure card, then an upgrade with pending_if_incomplete: its
    off-session payment waits for the bank, so the update is pending. `at_offset`: seconds before the
    period end to make the upgrade at (default: right away)."""
    c = sandbox.client
    prod, monthly, _, _ = catalog(c)
    bigger = c.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 3000, "recurring": {"interval": "month"}})
    clock, cust = clock_customer(c)
    cs = _session(c, monthly, cust)
    sandbox.complete_checkout(cs.id, "pm_card_authenticationRequired", authentication="approve")
    sub = c.v1.subscriptions.retrieve(c.v1.checkout.sessions.retrieve(cs.id).subscription)
    if at_offset is not None:
        advance(c, clock, sub["items"].data[0].current_period_end - at_offset)
    pending = c.v1.subscriptions.update(sub.id, params={
        "items": [{"id": sub["items"].data[0].id, "price": bigger.id}], "proration_behavior": "always_invoice",
        "payment_behavior": "pending_if_incomplete"})
    assert pending.pending_update and pending["items"].data[0].price.id == monthly.id
    invoice = c.v1.invoices.retrieve(pending.latest_invoice)
    assert invoice.status == "open" and invoice.billing_reason == "subscription_update"
    return c, clock, pending, invoice, monthly, bigger


def test_a_pending_update_lapses_at_expires_at_and_its_invoice_is_voided(sandbox):
    """Stripe (pending updates reference, "Expiration"): after expires_at, 23 h after the update, the
    invoice is voided and the update discarded; customer.subscription.pending_update_expired is sent."""
    c, clock, pending, invoice, monthly, _ = _upgrade_awaiting_3ds(sandbox)
    expires_at = pending.pending_update.expires_at
    assert expires_at == c.v1.test_helpers.test_clocks.retrieve(clock.id).frozen_time + 23 * 3600
    advance(c, clock, expires_at - 60)
    assert c.v1.subscriptions.retrieve(pending.id).pending_update is not None

    advance(c, clock, expires_at + 3600)
    lapsed = c.v1.subscriptions.retrieve(pending.id)
    assert lapsed.pending_update is None and lapsed["items"].data[0].price.id == monthly.id and lapsed.status == "active"
    assert c.v1.invoices.retrieve(invoice.id).status == "void"
    types = [t for t in event_types(c) if not t.startswith("test_helpers.")]
    assert types[-3:] == ["invoice.voided", "customer.subscription.updated", "customer.subscription.pending_update_expired"]
    assert "customer.subscription.pending_update_applied" not in types
    late = httpx.post(f"{invoice.hosted_invoice_url}/authenticate", data={"authentication": "approve"})
    assert late.status_code == 400 and "no longer needs confirming" in late.text
    assert c.v1.invoices.retrieve(invoice.id).amount_paid == 0


def test_a_pending_update_made_near_the_period_end_lapses_at_the_period_end(sandbox):
    c, clock, pending, invoice, monthly, _ = _upgrade_awaiting_3ds(sandbox, at_offset=2 * 3600)
    end = pending["items"].data[0].current_period_end
    assert pending.pending_update.expires_at == end  # the period end comes before the 23 hours
    advance(c, clock, end + 3600)
    renewed = c.v1.subscriptions.retrieve(pending.id)
    assert renewed.pending_update is None and c.v1.invoices.retrieve(invoice.id).status == "void"
    assert renewed["items"].data[0].price.id == monthly.id and renewed["items"].data[0].current_period_start == end


def test_a_confirmed_pending_update_applies_and_says_so(sandbox):
    c, clock, pending, invoice, _, bigger = _upgrade_awaiting_3ds(sandbox)
    ok = httpx.post(f"{invoice.hosted_invoice_url}/authenticate", data={"authentication": "approve"})
    assert ok.status_code == 303
    applied = c.v1.subscriptions.retrieve(pending.id)
    assert applied.pending_update is None and applied["items"].data[0].price.id == bigger.id
    assert event_types(c)[-1] == "customer.subscription.pending_update_applied"
    advance(c, clock, pending.pending_update.expires_at + 3600)
    assert "customer.subscription.pending_update_expired" not in event_types(c)
