"""Checkout sessions through the SDK and the sandbox's completion helper."""

from __future__ import annotations

import time

import pytest
import stripe

from .helpers import CANCEL, SUCCESS, catalog, event_types


def test_subscription_checkout_completes_with_paid_invoice(sandbox):
    c = sandbox.client
    _, monthly, _, _ = catalog(c)
    cust = c.v1.customers.create(params={"email": "sub@x.test"})
    cs = c.v1.checkout.sessions.create(params={
        "mode": "subscription", "customer": cust.id, "line_items": [{"price": monthly.id, "quantity": 2}],
        "success_url": SUCCESS, "cancel_url": CANCEL, "client_reference_id": "user-7", "metadata": {"order": "A1"},
        "subscription_data": {"metadata": {"user_id": "7"}}})
    assert cs.status == "open" and cs.payment_status == "unpaid" and cs.amount_total == 2000
    assert cs.url == f"{sandbox.base_url}/checkout/{cs.id}" and cs.id.startswith("cs_test_")
    assert cs.subscription is None and cs.invoice is None
    sandbox.complete_checkout(cs.id, "pm_card_visa")
    cs = c.v1.checkout.sessions.retrieve(cs.id, params={"expand": ["subscription", "invoice", "line_items"]})
    assert (cs.status, cs.payment_status, cs.customer) == ("complete", "paid", cust.id)
    assert cs.client_reference_id == "user-7" and cs.metadata["order"] == "A1"
    assert cs.line_items.data[0].quantity == 2 and cs.line_items.data[0].price.id == monthly.id
    sub = cs.subscription
    assert sub.status == "active" and sub.customer == cust.id and sub.metadata["user_id"] == "7"
    item = sub["items"].data[0]
    assert item.price.id == monthly.id and item.quantity == 2
    assert item.current_period_end > item.current_period_start
    assert 28 * 86400 <= item.current_period_end - item.current_period_start <= 31 * 86400
    inv = cs.invoice
    assert (inv.status, inv.amount_paid, inv.amount_due, inv.currency) == ("paid", 2000, 2000, "usd")
    assert inv.billing_reason == "subscription_create"
    assert inv.parent.subscription_details.subscription == sub.id
    assert inv.lines.data[0].amount == 2000
    assert sub.latest_invoice == inv.id
    pays = c.v1.invoice_payments.list(params={"invoice": inv.id}).data
    assert len(pays) == 1 and pays[0].status == "paid"
    pi = c.v1.payment_intents.retrieve(pays[0].payment.payment_intent)
    assert pi.status == "succeeded" and pi.amount == 2000
    types = event_types(c)
    for t in ["payment_method.attached", "customer.subscription.created", "invoice.created", "invoice.finalized",
              "invoice.paid", "invoice.payment_succeeded", "payment_intent.succeeded", "checkout.session.completed"]:
        assert t in types
    assert types[-1] == "checkout.session.completed"


def test_checkout_without_customer_creates_one(sandbox):
    c = sandbox.client
    _, monthly, _, _ = catalog(c)
    cs = c.v1.checkout.sessions.create(params={"mode": "subscription", "customer_email": "new@x.test",
                                               "line_items": [{"price": monthly.id, "quantity": 1}], "success_url": SUCCESS})
    sandbox.complete_checkout(cs.id)
    cs = c.v1.checkout.sessions.retrieve(cs.id, params={"expand": ["customer"]})
    assert cs.customer.email == "new@x.test"
    assert "customer.created" in event_types(c)


def test_declined_card_leaves_session_open(sandbox):
    c = sandbox.client
    _, monthly, _, _ = catalog(c)
    cs = c.v1.checkout.sessions.create(params={"mode": "subscription", "line_items": [{"price": monthly.id, "quantity": 1}],
                                               "success_url": SUCCESS})
    with pytest.raises(stripe.CardError) as exc:
        sandbox.complete_checkout(cs.id, "pm_card_chargeDeclined")
    assert exc.value.http_status == 402 and exc.value.code == "card_declined"
    cs = c.v1.checkout.sessions.retrieve(cs.id)
    assert cs.status == "open" and cs.subscription is None
    assert c.v1.subscriptions.list(params={"status": "all"}).data == []
    sandbox.complete_checkout(cs.id, "pm_card_mastercard")
    assert c.v1.checkout.sessions.retrieve(cs.id).status == "complete"


def test_trial_checkout(sandbox):
    c = sandbox.client
    _, monthly, _, _ = catalog(c)
    cust = c.v1.customers.create(params={"email": "t@x.test"})
    cs = c.v1.checkout.sessions.create(params={"mode": "subscription", "customer": cust.id, "success_url": SUCCESS,
                                               "line_items": [{"price": monthly.id, "quantity": 1}],
                                               "subscription_data": {"trial_period_days": 14}})
    sandbox.complete_checkout(cs.id)
    cs = c.v1.checkout.sessions.retrieve(cs.id, params={"expand": ["subscription", "invoice"]})
    assert cs.subscription.status == "trialing"
    assert cs.subscription.trial_end - cs.subscription.trial_start == 14 * 86400
    assert cs.invoice.amount_due == 0 and cs.invoice.status == "paid"
    assert cs.payment_status == "no_payment_required"


def test_payment_mode_with_invoice_and_refund(sandbox):
    c = sandbox.client
    _, _, _, one = catalog(c)
    cust = c.v1.customers.create(params={"email": "p@x.test"})
    cs = c.v1.checkout.sessions.create(params={"mode": "payment", "customer": cust.id, "success_url": SUCCESS,
                                               "line_items": [{"price": one.id, "quantity": 3}],
                                               "invoice_creation": {"enabled": True},
                                               "payment_intent_data": {"metadata": {"order": "9"}}})
    sandbox.complete_checkout(cs.id, "pm_card_visa")
    cs = c.v1.checkout.sessions.retrieve(cs.id, params={"expand": ["payment_intent", "invoice"]})
    assert cs.status == "complete" and cs.payment_status == "paid" and cs.subscription is None
    pi = cs.payment_intent
    assert pi.status == "succeeded" and pi.amount == 1500 and pi.metadata["order"] == "9"
    assert cs.invoice.status == "paid" and cs.invoice.amount_paid == 1500
    assert c.v1.invoices.list(params={"customer": cust.id}).data[0].id == cs.invoice.id
    refund = c.v1.refunds.create(params={"payment_intent": pi.id, "amount": 500})
    assert refund.status == "succeeded" and refund.amount == 500
    ch = c.v1.charges.retrieve(pi.latest_charge)
    assert ch.amount_refunded == 500 and ch.refunded is False
    ev = c.v1.events.list(params={"type": "charge.refunded"}).data[0]
    assert ev.data.object.id == ch.id and ev.data.previous_attributes["amount_refunded"] == 0
    c.v1.refunds.create(params={"charge": ch.id})
    assert c.v1.charges.retrieve(ch.id).refunded is True
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.refunds.create(params={"charge": ch.id})


def test_a_refund_to_the_refund_failing_card_succeeds_then_fails(sandbox):
    """4000 0000 0000 5126, as in Stripe's test mode: the refund starts `succeeded` and fails a while
    later; the charge then counts it as refunded no more."""
    c = sandbox.client
    sandbox.configure(refund_failure_seconds=0.3)
    _, _, _, one = catalog(c)
    cust = c.v1.customers.create(params={"email": "rf@x.test"})
    cs = c.v1.checkout.sessions.create(params={"mode": "payment", "customer": cust.id, "success_url": SUCCESS,
                                               "line_items": [{"price": one.id, "quantity": 1}]})
    sandbox.complete_checkout(cs.id, "4000 0000 0000 5126")
    pi = c.v1.checkout.sessions.retrieve(cs.id).payment_intent
    refund = c.v1.refunds.create(params={"payment_intent": pi})
    assert (refund.status, refund.customer) == ("succeeded", cust.id)
    ch = c.v1.charges.retrieve(refund.charge)
    assert (ch.amount_refunded, ch.refunded) == (500, True)

    deadline = time.monotonic() + 10
    while c.v1.refunds.retrieve(refund.id).status != "failed" and time.monotonic() < deadline:
        time.sleep(0.05)
    failed = c.v1.refunds.retrieve(refund.id)
    assert (failed.status, failed.failure_reason) == ("failed", "expired_or_canceled_card")
    ch = c.v1.charges.retrieve(refund.charge)
    assert (ch.amount_refunded, ch.refunded) == (0, False)
    updated = c.v1.events.list(params={"type": "refund.updated"}).data[0]
    assert updated.data.object.id == refund.id and updated.data.previous_attributes["status"] == "succeeded"
    assert c.v1.events.list(params={"type": "refund.failed"}).data[0].data.object.customer == cust.id
    assert c.v1.events.list(params={"type": "charge.refund.updated"}).data[0].data.object.status == "failed"


def test_a_free_payment_mode_checkout_charges_nothing(sandbox):
    """A 100%-off code brings the total to 0: Stripe completes the session as no_payment_required
    with no PaymentIntent (a charge is at least $0.50), asks for no card and leaves a paid $0 invoice."""
    c = sandbox.client
    _, _, _, one = catalog(c)
    coupon = c.v1.coupons.create(params={"percent_off": 100, "duration": "once"})
    c.v1.promotion_codes.create(params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "FREE100"})
    cust = c.v1.customers.create(params={"email": "free@x.test"})
    cs = c.v1.checkout.sessions.create(params={"mode": "payment", "customer": cust.id, "success_url": SUCCESS,
                                               "line_items": [{"price": one.id, "quantity": 1}],
                                               "allow_promotion_codes": True, "invoice_creation": {"enabled": True}})
    sandbox.complete_checkout(cs.id, "pm_card_chargeDeclined", promotion_code="FREE100")
    cs = c.v1.checkout.sessions.retrieve(cs.id, params={"expand": ["invoice"]})
    assert (cs.status, cs.amount_total, cs.payment_status, cs.payment_intent) == ("complete", 0, "no_payment_required", None)
    assert (cs.invoice.status, cs.invoice.amount_paid) == ("paid", 0)
    assert c.v1.charges.list(params={"customer": cust.id}).data == []
    assert c.v1.payment_intents.list(params={"customer": cust.id}).data == []


def test_payment_mode_rejects_recurring_price_and_unknown_price(sandbox):
    c = sandbox.client
    _, monthly, _, _ = catalog(c)
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.checkout.sessions.create(params={"mode": "payment", "success_url": SUCCESS, "line_items": [{"price": monthly.id, "quantity": 1}]})
    with pytest.raises(stripe.InvalidRequestError) as exc:
        c.v1.checkout.sessions.create(params={"mode": "payment", "success_url": SUCCESS, "line_items": [{"price": "price_nope", "quantity": 1}]})
    assert exc.value.http_status == 404 and exc.value.param == "line_items[0][price]"


def test_expire_and_expires_at(sandbox):
    c = sandbox.client
    _, _, _, one = catalog(c)
    exp = int(time.time()) + 3600
    cs = c.v1.checkout.sessions.create(params={"mode": "payment", "success_url": SUCCESS, "expires_at": exp,
                                               "line_items": [{"price": one.id, "quantity": 1}]})
    assert cs.expires_at == exp
    cs = c.v1.checkout.sessions.expire(cs.id)
    assert cs.status == "expired" and cs.url is None
    assert "checkout.session.expired" in event_types(c)
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.checkout.sessions.expire(cs.id)
    with pytest.raises(stripe.InvalidRequestError):
        sandbox.complete_checkout(cs.id)
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.checkout.sessions.create(params={"mode": "payment", "success_url": SUCCESS, "expires_at": int(time.time()) + 60,
                                              "line_items": [{"price": one.id, "quantity": 1}]})


def test_async_payment_events(sandbox):
    c = sandbox.client
    _, _, _, one = catalog(c)
    for outcome in ("succeeded", "failed"):
        cs = c.v1.checkout.sessions.create(params={"mode": "payment", "success_url": SUCCESS, "line_items": [{"price": one.id, "quantity": 1}]})
        sandbox.complete_checkout(cs.id, "pm_card_visa", async_payment=outcome)
        ev = c.v1.events.list(params={"type": f"checkout.session.async_payment_{outcome}"}).data[0]
        assert ev.data.object.id == cs.id


def test_list_sessions_by_customer_and_line_items_endpoint(sandbox):
    c = sandbox.client
    _, _, _, one = catalog(c)
    cust = c.v1.customers.create(params={})
    cs = c.v1.checkout.sessions.create(params={"mode": "payment", "customer": cust.id, "success_url": SUCCESS,
                                               "line_items": [{"price": one.id, "quantity": 2}]})
    assert [x.id for x in c.v1.checkout.sessions.list(params={"customer": cust.id}).data] == [cs.id]
    items = c.v1.checkout.sessions.line_items.list(cs.id)
    assert items.data[0].amount_total == 1000 and items.data[0].description == "Pro plan"


def _disputed_purchase(sandbox, card="pm_card_createDispute", one=None):
    """A one-off checkout paid with Stripe's dispute test card: (customer, payment intent id, charge)."""
    c = sandbox.client
    one = one or catalog(c)[3]
    cust = c.v1.customers.create(params={"email": "dp@x.test"})
    cs = c.v1.checkout.sessions.create(params={"mode": "payment", "customer": cust.id, "success_url": SUCCESS,
                                               "line_items": [{"price": one.id, "quantity": 1}]})
    sandbox.complete_checkout(cs.id, card)
    pi = c.v1.checkout.sessions.retrieve(cs.id).payment_intent
    return cust, pi, c.v1.charges.list(params={"payment_intent": pi}).data[0]


def test_the_dispute_card_pays_and_then_is_disputed(sandbox):
    """4000 0000 0000 0259, as in Stripe's test mode: the charge succeeds, then the buyer disputes it
    as fraudulent: the charge reads `disputed`, the dispute waits for our response."""
    c = sandbox.client
    one = catalog(c)[3]
    _, pi, ch = _disputed_purchase(sandbox, "4000 0000 0000 0259", one=one)
    assert (ch.status, ch.paid, ch.disputed, ch.refunded) == ("succeeded", True, True, False)
    by_charge = c.v1.disputes.list(params={"charge": ch.id}).data
    assert [d.id for d in c.v1.disputes.list(params={"payment_intent": pi}).data] == [d.id for d in by_charge]
    dispute = c.v1.disputes.retrieve(by_charge[0].id)
    assert (dispute.status, dispute.reason, dispute.amount, dispute.charge, dispute.payment_intent) == \
        ("needs_response", "fraudulent", 500, ch.id, pi)
    created = c.v1.events.list(params={"type": "charge.dispute.created"}).data[0]
    assert created.data.object.id == dispute.id and created.data.object.status == "needs_response"
    assert c.v1.events.list(params={"type": "charge.dispute.funds_withdrawn"}).data[0].data.object.id == dispute.id
    _, _, plain = _disputed_purchase(sandbox, "pm_card_visa", one=one)
    assert plain.disputed is False and c.v1.disputes.list(params={"charge": plain.id}).data == []


def test_closing_a_dispute_accepts_it_as_lost(sandbox):
    c = sandbox.client
    _, _, ch = _disputed_purchase(sandbox)
    dispute = c.v1.disputes.list(params={"charge": ch.id}).data[0]
    closed = c.v1.disputes.close(dispute.id)
    assert (closed.status, closed.is_charge_refundable) == ("lost", False)
    assert c.v1.disputes.retrieve(dispute.id).status == "lost"
    ev = c.v1.events.list(params={"type": "charge.dispute.closed"}).data[0]
    assert ev.data.object.id == dispute.id and ev.data.object.status == "lost"
    assert c.v1.charges.retrieve(ch.id).refunded is False  # a lost dispute is not a refund
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.disputes.close(dispute.id)


@pytest.mark.parametrize("evidence, outcome", [("winning_evidence", "won"), ("losing_evidence", "lost")])
def test_the_evidence_submitted_decides_a_dispute(sandbox, evidence, outcome):
    """Stripe's test mode: evidence whose uncategorized_text is `winning_evidence` wins the dispute,
    `losing_evidence` loses it (the sandbox decides at once; Stripe within minutes)."""
    c = sandbox.client
    _, _, ch = _disputed_purchase(sandbox)
    dispute = c.v1.disputes.list(params={"charge": ch.id}).data[0]
    c.v1.disputes.update(dispute.id, params={"evidence": {"uncategorized_text": evidence}, "submit": True})
    dispute = c.v1.disputes.retrieve(dispute.id)
    assert (dispute.status, dispute.evidence.uncategorized_text) == (outcome, evidence)
    assert dispute.evidence_details.submission_count == 1
    assert c.v1.events.list(params={"type": "charge.dispute.closed"}).data[0].data.object.status == outcome
    reinstated = c.v1.events.list(params={"type": "charge.dispute.funds_reinstated"}).data
    assert bool(reinstated) == (outcome == "won")
    assert c.v1.charges.retrieve(ch.id).disputed is True


def test_a_charge_whose_dispute_was_lost_cannot_be_refunded(sandbox):
    """As at Stripe (`charge_disputed`): the chargeback took the money back already, a refund would pay it twice."""
    c = sandbox.client
    _, _, _, one = catalog(c)
    cust = c.v1.customers.create(params={"email": "ada@example.com"})
    cs = c.v1.checkout.sessions.create(params={"mode": "payment", "customer": cust.id, "line_items": [{"price": one.id, "quantity": 1}],
                                               "success_url": SUCCESS, "cancel_url": CANCEL})
    sandbox.complete_checkout(cs.id, "pm_card_createDispute")
    dispute = c.v1.disputes.list().data[0]
    c.v1.disputes.close(dispute.id)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        c.v1.refunds.create(params={"charge": dispute.charge})
    assert refused.value.code == "charge_disputed"

