"""Each dashboard fact appears once the Stripe change that causes it arrives by webhook.

Nothing here syncs by hand after the purchase: changes are made at Stripe (the sandbox) the way a
dashboard user or the portal makes them, and the mirror only hears of them through the webhook
route and its worker. Rendering the dashboard makes no Stripe call.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import select

from billing_app.billing import gateway, profile
from billing_app.billing.checkout import checkout_status, start_checkout
from billing_app.billing.dashboard import DashboardView, dashboard_view, discount_label, member_billing_view
from billing_app.billing.sync import sync_customer
from billing_app.billing.views import billing_view
from billing_app.db import session_scope
from billing_app.models import BillingProfile, OrgSubscription, utcnow
from billing_app.webhooks import eventlog
from billing_app.webhooks.worker import Worker
from tests.billing.helpers import period_id
from tests.dashboard.helpers import billing, dashboard, wait_for
from tests.webhooks.helpers import event, row


def _buy(acme, stripe_env, plan="starter", confirm=True, **complete):
    """Checkout paid on the sandbox; `confirm` syncs as the confirmation page does (else only webhooks will)."""
    started = start_checkout(acme.admin, period_id(plan, "MONTHLY"))
    stripe_env.complete_checkout(started.session_id, **complete)
    if confirm:
        checkout_status(acme.admin, started.session_id)
    return stripe_env.client.v1.checkout.sessions.retrieve(started.session_id)


def _subscription_id(acme) -> str:
    with session_scope() as s:
        return s.exec(select(OrgSubscription.stripe_id).where(OrgSubscription.org_id == acme.id)).one()


def test_every_fact_follows_stripe_by_webhook(acme, stripe_env, webhooks):
    c = stripe_env.client
    checkout = _buy(acme, stripe_env, confirm=False, promotion_code="LAUNCH10",
                    billing_address={"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "state": "IL", "country": "US"})
    customer = checkout.customer
    # The purchase: card, billing details from Checkout, the next invoice with the code's discount.
    view = wait_for(lambda: (v := dashboard(acme)).card and v.next_amount and v, "the purchase")
    assert (view.card, view.card_expiry, view.card_warning) == ("Visa •••• 4242", "Expires 12/2034", "")
    assert view.billing_email == "admin@acme.example" and view.address_lines == ["1 Main St", "12345 Springfield", "IL", "US"]
    assert view.discounts == [f"10% off until {datetime.fromtimestamp(c.v1.subscriptions.retrieve(checkout.subscription, params={'expand': ['discounts']}).discounts[0].end, timezone.utc).strftime('%b %Y')}"]
    assert view.next_amount == "$8.10" and "Discount −$0.90" in view.next_details  # a promotion code at Checkout shows on the next invoice
    sub = c.v1.subscriptions.retrieve(checkout.subscription)
    assert view.next_date == datetime.fromtimestamp(sub["items"].data[0].current_period_end, timezone.utc).strftime("%b %-d, %Y")
    assert [(i.amount, i.status) for i in view.invoices] == [("$8.10", "Paid")] and view.invoices[0].pdf_url.endswith("/pdf")

    # Billing details changed at Stripe (the dashboard, the portal).
    c.v1.customers.update(customer, params={"email": "ap@acme.example", "name": "Acme Inc",
                                            "address": {"line1": "2 Elm St", "city": "Shelbyville", "country": "US"}})
    view = wait_for(lambda: (v := dashboard(acme)).billing_email == "ap@acme.example" and v, "the new billing email")
    assert view.company_name == "Acme Inc" and view.address_lines == ["2 Elm St", "Shelbyville", "US"]

    c.v1.customers.tax_ids.create(customer, params={"type": "eu_vat", "value": "DE123456789"})
    view = wait_for(lambda: (v := dashboard(acme)).tax_ids and v, "the tax ID")
    assert [(t.label, t.status) for t in view.tax_ids] == [("EU VAT DE123456789", "verified")]

    # A new card as the default.
    pm = c.v1.payment_methods.create(params={"payment_method": "pm_card_mastercard"})
    c.v1.payment_methods.attach(pm.id, params={"customer": customer})
    c.v1.subscriptions.update(sub.id, params={"default_payment_method": pm.id})
    c.v1.customers.update(customer, params={"invoice_settings": {"default_payment_method": pm.id}})
    wait_for(lambda: dashboard(acme).card == "Mastercard •••• 4444", "the new card")

    # Another discount, and an upgrade's prorations, on the next invoice.
    kept = [{"discount": d} for d in c.v1.subscriptions.retrieve(sub.id).discounts]
    c.v1.subscriptions.update(sub.id, params={"discounts": [*kept, {"coupon": "welcome5"}]})
    view = wait_for(lambda: len((v := dashboard(acme)).discounts) == 2 and v, "the second discount")
    assert "$5.00 off the next invoice" in view.discounts
    pro = c.v1.prices.list(params={"lookup_keys": ["pro_monthly_v1"]}).data[0]
    c.v1.subscriptions.update(sub.id, params={"items": [{"id": sub["items"].data[0].id, "price": pro.id}],
                                              "proration_behavior": "create_prorations"})
    def prorated():
        v = dashboard(acme)
        return v if any(d.startswith("Prorations") for d in v.next_details) else None

    view = wait_for(prorated, "the prorations")
    assert view.next_details[0].startswith("Subtotal $")

    # Paused at Stripe: the dashboard says until when; access stops.
    resumes = int(datetime.now(timezone.utc).timestamp()) + 40 * 86400
    c.v1.subscriptions.update(sub.id, params={"pause_collection": {"behavior": "void", "resumes_at": resumes}})
    view = wait_for(lambda: (v := dashboard(acme)).paused and v, "the pause")
    assert view.paused_until == datetime.fromtimestamp(resumes, timezone.utc).strftime("%b %-d, %Y") and view.can_resume
    assert view.next_amount == ""  # nothing is charged while paused
    assert billing(acme).access is False

    # Rendering all of it asks Stripe nothing.
    before = gateway.call_counter["count"]
    with session_scope() as s:
        dashboard_view(s, acme.id, admin=True)
        billing_view(s, acme.id)
    assert gateway.call_counter["count"] == before


def test_a_member_sees_plan_and_status_only(acme, stripe_env):
    _buy(acme, stripe_env)
    with session_scope() as s:
        assert s.get(BillingProfile, acme.id) is not None  # there is something to hide
    assert dashboard(acme, admin=False) == DashboardView()
    view = member_billing_view(billing(acme))
    assert view.plan_name == "Starter" and view.status == "Active"
    assert (view.price, view.renewal_date, view.can_cancel, view.can_change) == ("", "", False, False)


def test_card_expiry_warnings(acme, stripe_env):
    _buy(acme, stripe_env)
    soon = dashboard(acme, now=datetime(2034, 12, 10, tzinfo=timezone.utc))
    assert soon.card_warning.startswith("Expires soon: the card works until Dec 31, 2034")
    assert dashboard(acme, now=datetime(2034, 11, 30, tzinfo=timezone.utc)).card_warning == ""
    assert dashboard(acme, now=datetime(2035, 1, 2, tzinfo=timezone.utc)).card_warning.startswith("Expired at the end of 12/2034")


def test_discount_labels():
    assert discount_label({"percent_off": 20.0, "end": int(datetime(2027, 3, 1, tzinfo=timezone.utc).timestamp())}) == "20% off until Mar 2027"
    assert discount_label({"percent_off": 10.0, "end": None, "duration": "forever"}) == "10% off forever"
    assert discount_label({"percent_off": None, "amount_off": 500, "currency": "usd", "end": None, "duration": "once"}) == "$5.00 off the next invoice"


def test_the_profile_mirror_is_stable(acme, stripe_env):
    """A second sync of an unchanged customer changes nothing (reconcile prints nothing)."""
    from billing_app.billing.sync import sync_customer

    checkout = _buy(acme, stripe_env, promotion_code="WELCOME5")
    assert sync_customer(checkout.customer).changes == []
    with session_scope() as s:
        profile = s.get(BillingProfile, acme.id)
    assert json.loads(profile.next_invoice_json)["discount"] == 0  # the $5 was for the first invoice only
    assert json.loads(profile.discounts_json) == []


def _forecast(org_id) -> str | None:
    with session_scope() as s:
        return s.get(BillingProfile, org_id).next_invoice_json


def test_a_rate_limited_preview_keeps_the_next_invoice_and_the_event_is_retried(acme, stripe_env, monkeypatch):
    """A 429 on the invoice preview (a burst of webhooks) is not "no upcoming invoice": the sync fails
    and is retried, and the dashboard keeps its next-invoice figure meanwhile."""
    checkout = _buy(acme, stripe_env)
    before = _forecast(acme.id)
    assert json.loads(before)["amount_due"] > 0
    real_call = gateway.call

    def rate_limited(fn, *args, **kwargs):
        if fn.__name__ == "create_preview":
            raise gateway.StripeFailure("Too many requests", status=429, code="rate_limit")
        return real_call(fn, *args, **kwargs)

    monkeypatch.setattr(gateway, "call", rate_limited)
    ev = event("customer.updated", checkout.customer)
    eventlog.store_events([(ev, json.dumps(ev))])
    Worker(sync_customer, ingest_busy=None, concurrency=1).run_once()
    assert _forecast(acme.id) == before
    assert (row(ev["id"]).state, row(ev["id"]).last_error) == ("pending", "StripeFailure: Too many requests")

    monkeypatch.setattr(gateway, "call", real_call)
    Worker(sync_customer, ingest_busy=None, concurrency=1, clock=lambda: utcnow() + timedelta(hours=1)).run_once()
    assert row(ev["id"]).state == "processed" and _forecast(acme.id) == before


def test_a_preview_refused_for_good_leaves_no_figure_and_the_rest_of_the_sync_goes_on(acme, stripe_env, monkeypatch):
    """A refusal that retrying does not change (a 400 about the customer's data: Stripe Tax's
    `customer_tax_location_invalid`, which the sandbox does not imitate, so it is put in place of
    Stripe's answer) must not fail every sync of the customer: a plan change made at Stripe is
    mirrored, and the dashboard shows no next-invoice figure rather than a wrong one."""
    checkout = _buy(acme, stripe_env)
    real_call = gateway.call

    def tax_location_refused(fn, *args, **kwargs):
        if fn.__name__ == "create_preview":
            raise gateway.StripeFailure("Unable to calculate tax: the customer's location is not recognized.",
                                        status=400, code="customer_tax_location_invalid")
        return real_call(fn, *args, **kwargs)

    monkeypatch.setattr(gateway, "call", tax_location_refused)
    sub = stripe_env.client.v1.subscriptions.retrieve(checkout.subscription)
    pro = stripe_env.client.v1.prices.list(params={"lookup_keys": [sub["items"].data[0].price.lookup_key.replace("starter", "pro")]}).data[0]
    stripe_env.client.v1.subscriptions.update(checkout.subscription, params={  # in Stripe's Dashboard
        "items": [{"id": sub["items"].data[0].id, "price": pro.id}], "proration_behavior": "none"})

    sync_customer(checkout.customer)

    with session_scope() as s:
        assert s.exec(select(OrgSubscription).where(OrgSubscription.stripe_id == checkout.subscription)).one().stripe_price_id == pro.id
    assert not _forecast(acme.id)  # no figure


def test_a_preview_refused_for_our_key_fails_the_sync(acme, stripe_env, monkeypatch):
    """A 403 (a restricted key without the permission) is ours to fix, not "no figure": the sync fails, loudly."""
    checkout = _buy(acme, stripe_env)
    real_call = gateway.call

    def forbidden(fn, *args, **kwargs):
        if fn.__name__ == "create_preview":
            raise gateway.StripeFailure("The provided key does not have the required permissions.", status=403)
        return real_call(fn, *args, **kwargs)

    monkeypatch.setattr(gateway, "call", forbidden)
    with pytest.raises(gateway.StripeFailure):
        sync_customer(checkout.customer)


def test_a_subscription_ended_since_it_was_listed_has_no_next_invoice(acme, stripe_env):
    """Stripe's own "no upcoming invoice" (invoice_upcoming_none, as the sandbox answers it too) is the
    one refusal that means no next invoice."""
    checkout = _buy(acme, stripe_env)
    client = gateway.stripe_client()
    listed = gateway.list_all(client.v1.subscriptions.list, {"customer": checkout.customer})
    assert profile.read_preview(client, checkout.customer, listed) is not None
    stripe_env.client.v1.subscriptions.cancel(checkout.subscription)  # between the list and the preview
    assert profile.read_preview(client, checkout.customer, listed) is None
