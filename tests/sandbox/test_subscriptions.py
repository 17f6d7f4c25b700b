"""Subscription changes: cancel at period end, plan changes with prorations, previews, pause, cancel, resume."""

from __future__ import annotations

import pytest
import stripe

from .helpers import advance, catalog, clock_customer, event_types, monthly_on_a_clock, subscribe

DAY = 86400
T0 = 1_767_225_600  # 2026-01-01 00:00 UTC: fixed, so month lengths are known


def test_cancel_at_period_end_emits_update_with_previous_attributes(sandbox):
    c = sandbox.client
    clock, cust, sub = monthly_on_a_clock(sandbox, T0)
    end = sub["items"].data[0].current_period_end
    sub = c.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    assert sub.cancel_at_period_end is True and sub.cancel_at == end and sub.status == "active"
    ev = c.v1.events.list(params={"type": "customer.subscription.updated"}).data[0]
    assert ev.data.previous_attributes["cancel_at_period_end"] is False
    assert ev.data.object.cancel_at_period_end is True
    sub = c.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": False})
    assert sub.cancel_at is None


def test_cancel_at_a_chosen_time_ends_the_subscription_then(sandbox):
    """SubscriptionUpdateParams.cancel_at is "Literal['']|int|Literal[...]|str": a Unix time is valid."""
    c = sandbox.client
    clock, cust, sub = monthly_on_a_clock(sandbox, T0)
    at = sub["items"].data[0].current_period_end - 10 * DAY
    sub = c.v1.subscriptions.update(sub.id, params={"cancel_at": at})
    assert (sub.cancel_at, sub.cancel_at_period_end, sub.status) == (at, False, "active")
    advance(c, clock, at + 1)
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert (sub.status, sub.ended_at) == ("canceled", at)
    assert "customer.subscription.deleted" in event_types(c)


def test_cancellation_details_reason_says_a_cancellation_was_requested(sandbox):
    """As Stripe: 'cancellation_requested' for a cancel through the API, Dashboard or portal, at once or
    set for later (period end or a chosen date), cleared when the cancel is undone; failed payments
    end it with 'payment_failed' (test_test_clocks.py)."""
    c = sandbox.client
    _, m, _, _ = catalog(c)
    _, cust = clock_customer(c, T0)
    _, sub = subscribe(sandbox, cust, m)
    at = sub["items"].data[0].current_period_end - 10 * DAY
    for set_, unset in (({"cancel_at_period_end": True}, {"cancel_at_period_end": False}), ({"cancel_at": at}, {"cancel_at": ""})):
        assert c.v1.subscriptions.update(sub.id, params=set_).cancellation_details.reason == "cancellation_requested"
        assert c.v1.subscriptions.update(sub.id, params=unset).cancellation_details.reason is None
    assert c.v1.subscriptions.cancel(sub.id).cancellation_details.reason == "cancellation_requested"


def test_list_by_customer_and_status_all(sandbox):
    c = sandbox.client
    _, m, _, _ = catalog(c)
    clock, cust = clock_customer(c, T0)
    _, s1 = subscribe(sandbox, cust, m)
    _, s2 = subscribe(sandbox, cust, m)
    c.v1.subscriptions.cancel(s1.id)
    assert [s.id for s in c.v1.subscriptions.list(params={"customer": cust.id}).data] == [s2.id]
    assert {s.id for s in c.v1.subscriptions.list(params={"customer": cust.id, "status": "all"}).data} == {s1.id, s2.id}
    assert [s.id for s in c.v1.subscriptions.list(params={"status": "canceled"}).data] == [s1.id]


def monthly_with_a_premium_price(sandbox):
    """A monthly subscription (10.00) on a clock at T0, and a 30.00 monthly price of the same product to move it to."""
    c = sandbox.client
    prod, m, _, _ = catalog(c)
    premium = c.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 3000, "recurring": {"interval": "month"}})
    clock, cust = clock_customer(c, T0)
    _, sub = subscribe(sandbox, cust, m)
    return m, premium, clock, cust, sub


def test_upgrade_with_create_prorations_then_renewal_collects_them(sandbox):
    c = sandbox.client
    m, premium, clock, cust, sub = monthly_with_a_premium_price(sandbox)
    item = sub["items"].data[0]
    start, end = item.current_period_start, item.current_period_end
    assert end - start == 31 * DAY  # January
    half = start + (end - start) // 2
    advance(c, clock, half)
    preview = c.v1.invoices.create_preview(params={"customer": cust.id, "subscription": sub.id, "subscription_details": {
        "items": [{"id": item.id, "price": premium.id}], "proration_behavior": "create_prorations", "proration_date": half}})
    prorations = [l for l in preview.lines.data if l.parent.subscription_item_details.proration]
    assert sorted(l.amount for l in prorations) == [-500, 1500]
    assert preview.amount_due == 1000 + 3000  # prorations + next month at the new price
    sub = c.v1.subscriptions.update(sub.id, params={"items": [{"id": item.id, "price": premium.id}], "proration_behavior": "create_prorations"})
    assert sub["items"].data[0].price.id == premium.id
    ev = c.v1.events.list(params={"type": "customer.subscription.updated"}).data[0]
    assert ev.data.previous_attributes["items"]["data"][0]["price"]["id"] == m.id
    pending = c.v1.invoice_items.list(params={"customer": cust.id, "pending": True}).data
    assert sorted(ii.amount for ii in pending) == [-500, 1500]
    advance(c, clock, end + 3600)
    inv = c.v1.invoices.list(params={"subscription": sub.id}).data[0]
    assert inv.billing_reason == "subscription_cycle" and inv.status == "paid"
    assert inv.amount_paid == 1000 + 3000 == preview.amount_due


def test_always_invoice_charges_now_and_none_does_nothing(sandbox):
    c = sandbox.client
    m, premium, clock, cust, sub = monthly_with_a_premium_price(sandbox)
    item = sub["items"].data[0]
    advance(c, clock, T0 + 31 * DAY // 2)
    c.v1.subscriptions.update(sub.id, params={"items": [{"id": item.id, "price": premium.id}], "proration_behavior": "always_invoice"})
    inv = c.v1.invoices.list(params={"subscription": sub.id}).data[0]
    assert inv.billing_reason == "subscription_update" and inv.status == "paid" and inv.amount_paid == 1000
    n = len(c.v1.invoices.list(params={"subscription": sub.id}).data)
    c.v1.subscriptions.update(sub.id, params={"items": [{"id": item.id, "price": m.id}], "proration_behavior": "none"})
    assert len(c.v1.invoices.list(params={"subscription": sub.id}).data) == n
    assert c.v1.invoice_items.list(params={"customer": cust.id, "pending": True}).data == []


def test_switch_to_yearly_restarts_the_period_and_invoices(sandbox):
    c = sandbox.client
    _, m, y, _ = catalog(c)
    clock, cust = clock_customer(c, T0)
    _, sub = subscribe(sandbox, cust, m)
    advance(c, clock, T0 + 10 * DAY)
    item = sub["items"].data[0]
    sub = c.v1.subscriptions.update(sub.id, params={"items": [{"id": item.id, "price": y.id}]})
    it = sub["items"].data[0]
    assert it.current_period_start == T0 + 10 * DAY and it.current_period_end == it.current_period_start + 365 * DAY
    inv = c.v1.invoices.retrieve(sub.latest_invoice)
    credit = round(1000 * 21 / 31)
    assert inv.amount_paid == 10000 - credit


def test_pause_collection_voids_renewal_invoices(sandbox):
    c = sandbox.client
    clock, cust, sub = monthly_on_a_clock(sandbox, T0)
    sub = c.v1.subscriptions.update(sub.id, params={"pause_collection": {"behavior": "void"}})
    assert sub.pause_collection.behavior == "void" and sub.status == "active"
    advance(c, clock, T0 + 32 * DAY)
    inv = c.v1.invoices.list(params={"subscription": sub.id}).data[0]
    assert inv.status == "void" and inv.amount_paid == 0
    sub = c.v1.subscriptions.update(sub.id, params={"pause_collection": ""})
    assert sub.pause_collection is None


def test_cancel_immediately_with_prorated_credit(sandbox):
    c = sandbox.client
    clock, cust, sub = monthly_on_a_clock(sandbox, T0)
    advance(c, clock, T0 + 31 * DAY // 2)
    sub = c.v1.subscriptions.cancel(sub.id, params={"invoice_now": True, "prorate": True})
    assert sub.status == "canceled" and sub.ended_at == T0 + 31 * DAY // 2 and sub.canceled_at == sub.ended_at
    final = c.v1.invoices.list(params={"subscription": sub.id}).data[0]
    assert final.total == -500 and final.amount_due == 0
    assert c.v1.customers.retrieve(cust.id).balance == -500  # credit for next time
    assert "customer.subscription.deleted" in event_types(c)
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})


def test_trial_without_payment_method_pauses_then_resume(sandbox):
    c = sandbox.client
    _, m, _, _ = catalog(c)
    clock, cust = clock_customer(c, T0)
    sub = c.v1.subscriptions.create(params={"customer": cust.id, "items": [{"price": m.id}], "trial_period_days": 7,
                                            "trial_settings": {"end_behavior": {"missing_payment_method": "pause"}}})
    assert sub.status == "trialing"
    advance(c, clock, T0 + 8 * DAY)
    assert c.v1.subscriptions.retrieve(sub.id).status == "paused"
    types = event_types(c)
    assert "customer.subscription.trial_will_end" in types and "customer.subscription.paused" in types
    c.v1.payment_methods.attach("pm_card_visa", params={"customer": cust.id})
    pm = c.v1.payment_methods.list(params={"customer": cust.id}).data[0]
    c.v1.customers.update(cust.id, params={"invoice_settings": {"default_payment_method": pm.id}})
    sub = c.v1.subscriptions.resume(sub.id)
    assert sub.status == "active"
    assert "customer.subscription.resumed" in event_types(c)
    assert c.v1.invoices.retrieve(sub.latest_invoice).status == "paid"
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.subscriptions.resume(sub.id)


def test_api_created_subscription_incomplete_then_expired(sandbox):
    c = sandbox.client
    _, m, _, _ = catalog(c)
    clock, cust = clock_customer(c, T0)
    pm = c.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": cust.id})
    with pytest.raises(stripe.CardError):
        c.v1.subscriptions.create(params={"customer": cust.id, "items": [{"price": m.id}], "default_payment_method": pm.id,
                                          "payment_behavior": "error_if_incomplete"})
    sub = c.v1.subscriptions.create(params={"customer": cust.id, "items": [{"price": m.id}], "default_payment_method": pm.id})
    assert sub.status == "incomplete"
    advance(c, clock, T0 + DAY)
    assert c.v1.subscriptions.retrieve(sub.id).status == "incomplete_expired"


def test_metadata_update_and_subscription_items(sandbox):
    c = sandbox.client
    _, m, _, _ = catalog(c)
    clock, cust = clock_customer(c, T0)
    _, sub = subscribe(sandbox, cust, m)
    sub = c.v1.subscriptions.update(sub.id, params={"metadata": {"team": "blue"}})
    assert sub.metadata["team"] == "blue"
    items = c.v1.subscription_items.list(params={"subscription": sub.id})
    assert items.data[0].id == sub["items"].data[0].id and items.data[0].price.id == m.id


def test_interval_change_during_trial_keeps_trial_end(sandbox):
    c = sandbox.client
    _, m, y, _ = catalog(c)
    clock, cust = clock_customer(c, T0)
    _, sub = subscribe(sandbox, cust, m, subscription_data={"trial_period_days": 14})
    sub = c.v1.subscriptions.update(sub.id, params={"items": [{"id": sub["items"].data[0].id, "price": y.id}]})
    assert sub.status == "trialing" and sub["items"].data[0].current_period_end == sub.trial_end == T0 + 14 * DAY
    advance(c, clock, T0 + 15 * DAY)
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "active" and c.v1.invoices.retrieve(sub.latest_invoice).amount_paid == 10000
