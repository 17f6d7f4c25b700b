"""A one-off (lifetime) purchase is mirrored from what Stripe says was paid, never from metadata."""

from __future__ import annotations

import pytest
import stripe
from sqlmodel import select

from billing_app.billing import gateway, sync
from billing_app.billing.checkout import start_checkout
from billing_app.billing.customers import ensure_customer
from billing_app.billing.payments import awaiting_purchase
from billing_app.billing.sync import sync_customer
from billing_app.billing.views import billing_view, pricing_view
from billing_app.db import session_scope
from billing_app.errors import ErrorCode
from billing_app.models import OrgSubscription, Payment, PlanPeriod
from billing_app.ops import reconcile
from tests.billing.helpers import access, expect, period_id
from tests.ops.helpers import mirror_of


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


def _as_between_completed_and_settled(monkeypatch, session_id):
    """Stripe between checkout.session.completed and .async_payment_succeeded: complete, unpaid."""
    original = gateway.list_all

    def list_all(list_method, params):
        objects = original(list_method, params)
        for obj in objects:
            if obj["id"] == session_id:
                obj["payment_status"] = "unpaid"
        return objects

    monkeypatch.setattr(gateway, "list_all", list_all)


def test_a_delayed_payment_still_settling_is_pending_and_held_without_access(org, stripe_env, monkeypatch):
    started = start_checkout(org.admin, period_id("business", "ALL_TIME"))
    customer = stripe_env.complete_checkout(started.session_id, async_payment="succeeded").customer
    _as_between_completed_and_settled(monkeypatch, started.session_id)
    sync.sync_customer(customer)  # the checkout.session.completed webhook

    with session_scope() as s:
        statuses = s.exec(select(Payment.status).where(Payment.org_id == org.id)).all()
        held = awaiting_purchase(s, org.id)
    assert statuses == ["PENDING"], "a payment still settling was mirrored as failed"
    assert held is not None
    assert not access(org).access, "no plan before the money arrives"
    # A second purchase while it settles would charge twice: refused, and no session is made.
    error = expect(ErrorCode.SUBSCRIPTION_ALREADY_ACTIVE, start_checkout, org.admin, period_id("business", "ALL_TIME"))
    assert "waiting for its payment to clear" in error.message
    assert [s.id for s in stripe_env.client.v1.checkout.sessions.list(params={"customer": customer, "status": "open"}).data] == []
    # Nor do the pages offer it: the pricing cards and the billing page say why.
    with session_scope() as s:
        assert pricing_view(s, org.id).awaiting_payment == billing_view(s, org.id).awaiting_payment == error.message

    monkeypatch.undo()  # Stripe: checkout.session.async_payment_succeeded
    sync.sync_customer(customer)
    with session_scope() as s:
        assert s.exec(select(Payment.status).where(Payment.org_id == org.id)).all() == ["COMPLETED"]
        assert awaiting_purchase(s, org.id) is None
        assert pricing_view(s, org.id).awaiting_payment == billing_view(s, org.id).awaiting_payment == ""
    assert access(org).plan_key == "business"


def test_a_delayed_payment_that_failed_is_failed_and_the_org_may_buy_again(org, stripe_env):
    started = start_checkout(org.admin, period_id("business", "ALL_TIME"))
    # The sandbox as Stripe: the debit bounced, the payment intent is back to requires_payment_method.
    customer = stripe_env.complete_checkout(started.session_id, async_payment="failed").customer
    sync.sync_customer(customer)
    with session_scope() as s:
        assert s.exec(select(Payment.status).where(Payment.org_id == org.id)).all() == ["FAILED"]
        assert awaiting_purchase(s, org.id) is None
    assert not access(org).access
    assert start_checkout(org.admin, period_id("business", "ALL_TIME")).session_id != started.session_id


def test_a_failed_delayed_payment_costs_no_stripe_call_in_later_syncs(org, stripe_env, monkeypatch):
    started = start_checkout(org.admin, period_id("business", "ALL_TIME"))
    customer = stripe_env.complete_checkout(started.session_id, async_payment="failed").customer
    sync.sync_customer(customer)  # reads the payment intent once: failed
    real, intents_read = gateway.call, []

    def counting(method, *args, **kwargs):
        if "payment_intent" in repr(method).lower():
            intents_read.append(args)
        return real(method, *args, **kwargs)

    monkeypatch.setattr(gateway, "call", counting)
    for _ in range(3):
        sync.sync_customer(customer)  # e.g. three unrelated webhooks months later
    assert intents_read == [], "a payment mirrored as failed was read from Stripe again at every sync"


def test_a_lifetime_buyer_keeps_the_plan_after_the_catalog_price_changes(org, stripe_env):
    started = start_checkout(org.admin, period_id("business", "ALL_TIME"))
    customer = stripe_env.complete_checkout(started.session_id).customer
    sync.sync_customer(customer)
    assert access(org).plan_key == "business"
    # A new lifetime price (Stripe prices are immutable): the catalog points the period at it.
    client = stripe_env.client
    with session_scope() as s:
        period = s.get(PlanPeriod, period_id("business", "ALL_TIME"))
        old = client.v1.prices.retrieve(period.stripe_price_id)
        period.stripe_price_id = client.v1.prices.create(params={
            "product": old.product, "unit_amount": old.unit_amount + 10000, "currency": old.currency}).id
        s.add(period)
    sync.sync_customer(customer)  # any later webhook of this customer
    assert access(org).plan_key == "business", "a paid lifetime purchase lost its plan after a price change"


def _refunded_after_a_declined_card(org, stripe_env):
    """The buyer's first card is declined on Checkout's page and the second pays (one payment
    intent, a failed charge and a paid one); the payment is then refunded in full (Dashboard)."""
    started = start_checkout(org.admin, period_id("business", "ALL_TIME"))
    with pytest.raises(stripe.CardError):
        stripe_env.complete_checkout(started.session_id, payment_method="pm_card_chargeDeclined")
    done = stripe_env.complete_checkout(started.session_id, payment_method="pm_card_visa")
    sync.sync_customer(done.customer)
    assert access(org).plan_key == "business"
    stripe_env.client.v1.refunds.create(params={"payment_intent": done.payment_intent})
    return done


def test_a_full_refund_ends_a_lifetime_paid_after_a_declined_card(org, stripe_env):
    done = _refunded_after_a_declined_card(org, stripe_env)
    sync.sync_customer(done.customer)  # charge.refunded
    assert not access(org).access, "refunded in full, still has lifetime access"
    with session_scope() as s:
        row = s.exec(select(Payment).where(Payment.stripe_id == done.payment_intent)).one()
    assert (row.status, row.amount_refunded) == ("REFUNDED", row.amount)
    assert row.receipt_url, "the receipt is the paid charge's"


def test_the_bulk_reconcile_reads_the_paid_charge_of_an_intent_as_sync_customer_does(org, stripe_env):
    done = _refunded_after_a_declined_card(org, stripe_env)
    reconcile.bulk_reconcile()  # the charge.refunded webhook was missed
    assert not access(org).access
    healed = mirror_of(org.id)
    sync.sync_customer(done.customer)
    assert mirror_of(org.id) == healed


def test_a_lifetime_bought_with_a_100_percent_off_code_is_granted_and_mirrored_as_paid(org, stripe_env):
    """Checkout allows promotion codes: a giveaway code makes the total 0, and Stripe completes the
    session as no_payment_required with no payment intent (the sandbox does the same)."""
    client = stripe_env.client
    coupon = client.v1.coupons.create(params={"percent_off": 100, "duration": "once", "name": "Giveaway"})
    client.v1.promotion_codes.create(params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "FREE100"})
    started = start_checkout(org.admin, period_id("business", "ALL_TIME"))
    done = stripe_env.complete_checkout(started.session_id, promotion_code="FREE100")
    assert (done.payment_status, done.payment_intent) == ("no_payment_required", None)
    sync.sync_customer(done.customer)  # checkout.session.completed

    assert access(org).plan_key == "business"
    with session_scope() as s:
        rows = s.exec(select(Payment.stripe_id, Payment.status, Payment.amount).where(Payment.org_id == org.id)).all()
        assert awaiting_purchase(s, org.id) is None, "a free purchase held as a payment still clearing"
    assert rows == [(started.session_id, "COMPLETED", 0)]
    error = expect(ErrorCode.SUBSCRIPTION_ALREADY_ACTIVE, start_checkout, org.admin, period_id("business", "ALL_TIME"))
    assert "lifetime" in error.message


def _disputed_lifetime(org, stripe_env):
    """A lifetime purchase paid with Stripe's dispute test card: the buyer's bank disputes it at once.
    Returns (customer, payment intent, dispute id)."""
    started = start_checkout(org.admin, period_id("business", "ALL_TIME"))
    done = stripe_env.complete_checkout(started.session_id, payment_method="pm_card_createDispute")
    sync_customer(done.customer)  # checkout.session.completed, charge.dispute.created
    dispute = stripe_env.client.v1.disputes.list(params={"payment_intent": done.payment_intent}).data[0]
    return done.customer, done.payment_intent, dispute.id


def _payment_status(stripe_id: str) -> str:
    with session_scope() as s:
        return s.exec(select(Payment.status).where(Payment.stripe_id == stripe_id)).one()


def test_a_lost_chargeback_ends_a_lifetime_purchase_like_a_full_refund(org, stripe_env):
    """The charge is `disputed` (never `refunded`) and its dispute `lost`: the money went back to the
    buyer, so the lifetime plan ends and the payment reads Disputed. While the dispute is open the
    merchant may still win it: access stays."""
    customer, intent, dispute = _disputed_lifetime(org, stripe_env)
    assert access(org).access and _payment_status(intent) == "COMPLETED", "an open dispute may still be won"
    stripe_env.client.v1.disputes.close(dispute)  # accepted: lost (charge.dispute.closed)
    sync_customer(customer)
    state = access(org)
    assert (state.access, state.reason) == (False, "lifetime_refunded"), "a lost chargeback still grants lifetime access"
    assert _payment_status(intent) == "DISPUTED"
    reconcile.bulk_reconcile()  # the bulk reconcile reads it the same way
    assert not access(org).access and _payment_status(intent) == "DISPUTED"


def test_a_won_chargeback_keeps_the_lifetime_purchase(org, stripe_env):
    customer, intent, dispute = _disputed_lifetime(org, stripe_env)
    stripe_env.client.v1.disputes.update(dispute, params={"evidence": {"uncategorized_text": "winning_evidence"}})
    sync_customer(customer)
    assert access(org).access and _payment_status(intent) == "COMPLETED"
