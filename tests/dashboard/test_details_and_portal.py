"""Billing details edited in the app (Stripe's refusals in words), the portal's matching choices, and
expired checkouts dated when they expired."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlmodel import select

from billing_app.billing import billing_details, portal, retention
from billing_app.billing.billing_details import Details
from billing_app.billing.checkout import checkout_status, start_checkout
from billing_app.billing.subscriptions import reactivate
from billing_app.billing.sync import sync_customer
from billing_app.db import session_scope
from billing_app.errors import ErrorCode
from billing_app.models import Payment, RetentionOffer
from tests.billing.helpers import advance, buy_on_clock, expect, period_id, subscription
from tests.dashboard.helpers import dashboard

DAY = 86_400


def _buy(acme, stripe_env):
    started = start_checkout(acme.admin, period_id("starter", "MONTHLY"))
    stripe_env.complete_checkout(started.session_id)
    checkout_status(acme.admin, started.session_id)
    return stripe_env.client.v1.checkout.sessions.retrieve(started.session_id)


def test_billing_details_are_saved_at_stripe_and_refusals_read_as_sentences(acme, stripe_env):
    expect(ErrorCode.NO_BILLING_ACCOUNT, billing_details.update, acme.admin, Details(email="a@b.example"))
    checkout = _buy(acme, stripe_env)
    expect(ErrorCode.FORBIDDEN, billing_details.update, acme.member, Details(email="a@b.example"))
    billing_details.update(acme.admin, Details(email="ap@acme.example", name="Acme GmbH", line1="Hauptstr. 5", city="Berlin",
                                               postal_code="10115", country="de"))
    customer = stripe_env.client.v1.customers.retrieve(checkout.customer)
    assert (customer.email, customer.name, customer.address.country) == ("ap@acme.example", "Acme GmbH", "DE")
    view = dashboard(acme)
    assert (view.billing_email, view.company_name, view.address_lines) == ("ap@acme.example", "Acme GmbH",
                                                                           ["Hauptstr. 5", "10115 Berlin", "DE"])
    error = expect(ErrorCode.BILLING_DETAILS_INVALID, billing_details.update, acme.admin, Details(email="not an email"))
    assert error.message == "That billing email does not look like an email address."
    error = expect(ErrorCode.VALIDATION_ERROR, billing_details.update, acme.admin, Details(email="ap@acme.example", line1="x"))
    assert error.message == "Choose the country of the billing address."
    error = expect(ErrorCode.BILLING_DETAILS_INVALID, billing_details.add_tax_id, acme.admin, "eu_vat", "DE12")
    assert error.message == "DE12 is not a valid EU VAT number. An EU VAT number starts with its country code, e.g. DE123456789."
    expect(ErrorCode.VALIDATION_ERROR, billing_details.add_tax_id, acme.admin, "xx_vat", "1")
    billing_details.add_tax_id(acme.admin, "eu_vat", "DE 123 456 789")
    view = dashboard(acme)
    assert [t.label for t in view.tax_ids] == ["EU VAT DE123456789"]
    billing_details.remove_tax_id(acme.admin, view.tax_ids[0].id)
    assert dashboard(acme).tax_ids == []
    expect(ErrorCode.BILLING_DETAILS_INVALID, billing_details.remove_tax_id, acme.admin, view.tax_ids[0].id)


def test_billing_details_with_a_nul_or_control_character_are_refused_before_stripe(acme, stripe_env):
    """Stripe kept them and the mirror then met PostgreSQL's refusal of a NUL on every sync of the customer."""
    checkout = _buy(acme, stripe_env)
    as_bought = stripe_env.client.v1.customers.retrieve(checkout.customer)
    for field, value in (("name", "Acme\x00GmbH"), ("line1", "Hauptstr.\x005"), ("email", "ap\x00@acme.example"),
                         ("city", "Ber\u202elin")):
        details = Details(**{"email": "ap@acme.example", "line1": "Hauptstr. 5", "country": "DE", field: value})
        error = expect(ErrorCode.VALIDATION_ERROR, billing_details.update, acme.admin, details)
        assert error.message == f"The {field} cannot contain line breaks or control characters."
    error = expect(ErrorCode.VALIDATION_ERROR, billing_details.add_tax_id, acme.admin, "eu_vat", "DE123\x00456789")
    assert error.message == "The tax ID cannot contain line breaks or control characters."
    customer = stripe_env.client.v1.customers.retrieve(checkout.customer)
    assert (customer.email, customer.name, customer.address) == (as_bought.email, as_bought.name, as_bought.address)
    assert dashboard(acme).tax_ids == []


def test_a_country_that_is_no_code_is_refused_in_words(acme, stripe_env):
    _buy(acme, stripe_env)
    # Stripe's own check (the form keeps to 2 letters; the API does not).
    error = expect(ErrorCode.BILLING_DETAILS_INVALID, billing_details.update, acme.admin,
                   Details(email="ap@acme.example", line1="x", country="1X"))
    assert error.message == "Use the 2-letter code of the country, such as US, DE or GB."


def test_the_portal_cancel_flow_offers_the_same_coupon_once(acme, stripe_env):
    checkout = _buy(acme, stripe_env)
    url = portal.portal_url(acme.admin, "subscription_cancel")
    session_id = urlsplit(url).path.rsplit("/", 1)[1]
    html = httpx.get(url).text
    assert "20% off for 3 months" in html and "id=accept-offer" in html and "Pause for" in html
    with session_scope() as s:
        assert s.get(RetentionOffer, acme.id).offered_at is not None
    # Accepted in the portal: the sync notes it, and the offer is used up.
    r = httpx.post(f"{stripe_env.base_url}/portal/{session_id}/accept_retention", data={"subscription": checkout.subscription})
    assert r.status_code == 303
    sync_customer(checkout.customer)
    with session_scope() as s:
        assert s.get(RetentionOffer, acme.id).accepted_at is not None
        assert retention.offer_for(s, acme.id) is None
    html = httpx.get(portal.portal_url(acme.admin, "subscription_cancel")).text
    assert "id=accept-offer" not in html and "Why are you canceling?" in html


def test_canceling_in_the_portal_after_seeing_the_offer_declines_it(acme, stripe_env):
    checkout = _buy(acme, stripe_env)
    url = portal.portal_url(acme.admin, "subscription_cancel")
    session_id = urlsplit(url).path.rsplit("/", 1)[1]
    r = httpx.post(f"{stripe_env.base_url}/portal/{session_id}/cancel",
                   data={"subscription": checkout.subscription, "reason": "too_expensive", "comment": "Too much"})
    assert parse_qs(urlsplit(r.headers["location"]).query)["msg"][0].startswith("Your plan will be canceled on")
    details = stripe_env.client.v1.subscriptions.retrieve(checkout.subscription).cancellation_details
    assert (details.feedback, details.comment) == ("too_expensive", "Too much")
    sync_customer(checkout.customer)
    with session_scope() as s:
        assert retention.offer_for(s, acme.id) is None


def test_an_offer_declined_in_the_portal_stays_declined_after_reactivating(acme, stripe_env):
    """Once per organization: Reactivate clears Stripe's canceled_at, not the decline."""
    checkout = _buy(acme, stripe_env)
    url = portal.portal_url(acme.admin, "subscription_cancel")
    session_id = urlsplit(url).path.rsplit("/", 1)[1]
    httpx.post(f"{stripe_env.base_url}/portal/{session_id}/cancel",
               data={"subscription": checkout.subscription, "reason": "too_expensive"})
    sync_customer(checkout.customer)  # customer.subscription.updated
    reactivate(acme.admin)
    with session_scope() as s:
        assert retention.offer_for(s, acme.id) is None
        assert s.get(RetentionOffer, acme.id).declined_at is not None
    assert not dashboard(acme).offer_name
    expect(ErrorCode.RETENTION_OFFER_USED, retention.accept, acme.admin)


def test_a_subscription_ended_by_failed_payments_does_not_decline_the_offer(acme, stripe_env, db):
    """Only a cancellation someone asked for declines it (Stripe's cancellation_details.reason)."""
    client = stripe_env.client
    clock, customer = buy_on_clock(acme, stripe_env)
    portal.portal_url(acme.admin, "subscription_cancel")  # the admin opens the portal's cancel flow, then backs out
    sub = subscription(db, acme)
    bad = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": customer.id})
    client.v1.subscriptions.update(sub.stripe_id, params={"default_payment_method": bad.id})
    renewal = int(sub.current_period_end.timestamp())
    advance(stripe_env, clock, renewal + 60, customer)
    advance(stripe_env, clock, renewal + 10 * DAY, customer)  # the retries fail: Stripe cancels it
    assert client.v1.subscriptions.retrieve(sub.stripe_id).cancellation_details.reason == "payment_failed"
    with session_scope() as s:
        assert subscription(s, acme).status == "canceled"
        assert s.get(RetentionOffer, acme.id).declined_at is None
        assert retention.offer_for(s, acme.id) is not None  # still there for the org's next subscription


def test_the_portal_pause_and_customer_update_flows(acme, stripe_env):
    checkout = _buy(acme, stripe_env)
    pause = portal.portal_url(acme.admin, "subscription_pause")
    html = httpx.get(pause).text
    assert "<option value='3 month'>3 months</option>" in html and "Cancel plan" not in html
    session_id = urlsplit(pause).path.rsplit("/", 1)[1]
    httpx.post(f"{stripe_env.base_url}/portal/{session_id}/pause", data={"subscription": checkout.subscription, "pause_for": "3 month"})
    sync_customer(checkout.customer)
    view = dashboard(acme)
    assert view.paused and view.paused_until == retention.add_months(datetime.now(timezone.utc), 3).strftime("%b %-d, %Y")
    details = httpx.get(portal.portal_url(acme.admin, "customer_update")).text
    assert "cu_address_line1" in details and "tax_id_value" in details


def test_an_expired_checkout_is_dated_when_it_expired_never_later(acme, stripe_env):
    first = start_checkout(acme.admin, period_id("starter", "MONTHLY"))
    start_checkout(acme.admin, period_id("pro", "MONTHLY"))  # expires the first one now, 24 h before its expires_at
    customer = stripe_env.client.v1.checkout.sessions.retrieve(first.session_id).customer
    before = datetime.now(timezone.utc)
    sync_customer(customer)
    sync_customer(customer)  # a later sync does not move the date
    with session_scope() as s:
        row = s.exec(select(Payment).where(Payment.stripe_id == first.session_id)).one()
    assert row.status == "EXPIRED" and row.created <= datetime.now(timezone.utc)
    assert abs((row.created - before).total_seconds()) < 60
