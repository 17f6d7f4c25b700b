"""Test clocks drive renewals, failed payments and their retries, trials and scheduled cancellations."""

from __future__ import annotations

import pytest
import stripe

from .helpers import advance, catalog, clock_customer, event_types, monthly_on_a_clock, subscribe

DAY = 86400
T0 = 1_767_225_600  # 2026-01-01 00:00 UTC


def subscribed_with_failing_card(sandbox):
    """A monthly subscription bought on a clock at T0, whose renewals will be charged to a card that fails."""
    c = sandbox.client
    clock, cust, sub = monthly_on_a_clock(sandbox, T0)
    bad = c.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": cust.id})
    c.v1.subscriptions.update(sub.id, params={"default_payment_method": bad.id})
    return clock, cust, sub


def test_clock_crud(sandbox):
    c = sandbox.client
    clock = c.v1.test_helpers.test_clocks.create(params={"frozen_time": T0, "name": "ci"})
    assert (clock.status, clock.frozen_time, clock.name) == ("ready", T0, "ci")
    assert c.v1.test_helpers.test_clocks.retrieve(clock.id).id == clock.id
    with pytest.raises(stripe.InvalidRequestError):
        advance(c, clock, T0 - 1)
    cust = c.v1.customers.create(params={"test_clock": clock.id})
    assert cust.test_clock == clock.id and cust.created == T0
    assert c.v1.test_helpers.test_clocks.delete(clock.id).deleted is True
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.customers.retrieve(cust.id)


def test_monthly_renewals_pay_a_new_invoice_each_period(sandbox):
    c = sandbox.client
    clock, cust, sub = monthly_on_a_clock(sandbox, T0)
    clock = advance(c, clock, T0 + 95 * DAY)  # Jan, Feb, Mar, into April
    assert clock.status == "ready" and clock.frozen_time == T0 + 95 * DAY
    invs = c.v1.invoices.list(params={"subscription": sub.id}).data
    assert [i.billing_reason for i in invs] == ["subscription_cycle"] * 3 + ["subscription_create"]
    assert all(i.status == "paid" and i.amount_paid == 1000 for i in invs)
    sub = c.v1.subscriptions.retrieve(sub.id)
    it = sub["items"].data[0]
    assert it.current_period_start == T0 + (31 + 28 + 31) * DAY  # 1 April
    assert it.current_period_end == T0 + (31 + 28 + 31 + 30) * DAY
    assert sub.status == "active"


def test_failed_renewal_past_due_then_canceled_after_retries(sandbox):
    c = sandbox.client
    clock, cust, sub = subscribed_with_failing_card(sandbox)
    advance(c, clock, T0 + 31 * DAY + 60)
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "past_due"
    inv = c.v1.invoices.retrieve(sub.latest_invoice)
    assert inv.status == "open" and inv.attempt_count == 1 and inv.next_payment_attempt == T0 + 34 * DAY
    assert "invoice.payment_failed" in event_types(c)
    advance(c, clock, T0 + 40 * DAY)  # retries on days 3, 5, 7 all fail
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "canceled" and sub.cancellation_details.reason == "payment_failed"
    assert c.v1.invoices.retrieve(inv.id).attempt_count == 4


def test_after_final_failure_unpaid_setting_and_recovery(sandbox):
    sandbox.configure(after_final_failure="unpaid", payment_retry_days=[1])
    c = sandbox.client
    clock, cust, sub = subscribed_with_failing_card(sandbox)
    advance(c, clock, T0 + 33 * DAY)
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "unpaid"
    good = c.v1.payment_methods.attach("pm_card_visa", params={"customer": cust.id})
    inv = c.v1.invoices.pay(sub.latest_invoice, params={"payment_method": good.id})
    assert inv.status == "paid"
    assert c.v1.subscriptions.retrieve(sub.id).status == "active"


def test_retry_succeeds_after_customer_fixes_card(sandbox):
    c = sandbox.client
    clock, cust, sub = subscribed_with_failing_card(sandbox)
    advance(c, clock, T0 + 32 * DAY)
    good = c.v1.payment_methods.attach("pm_card_visa", params={"customer": cust.id})
    c.v1.subscriptions.update(sub.id, params={"default_payment_method": good.id})
    advance(c, clock, T0 + 35 * DAY)  # first retry on day 3 succeeds
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "active"
    assert c.v1.invoices.retrieve(sub.latest_invoice).status == "paid"


def test_trial_will_end_three_days_before_then_first_charge(sandbox):
    c = sandbox.client
    clock, cust, sub = monthly_on_a_clock(sandbox, T0, subscription_data={"trial_period_days": 10})
    advance(c, clock, T0 + 6 * DAY)
    assert "customer.subscription.trial_will_end" not in event_types(c)
    advance(c, clock, T0 + 7 * DAY)
    assert "customer.subscription.trial_will_end" in event_types(c)
    assert c.v1.subscriptions.retrieve(sub.id).status == "trialing"
    advance(c, clock, T0 + 10 * DAY + 1)
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "active"
    inv = c.v1.invoices.retrieve(sub.latest_invoice)
    assert inv.amount_paid == 1000 and inv.status == "paid"
    assert sub["items"].data[0].current_period_start == T0 + 10 * DAY


def test_cancel_at_period_end_ends_subscription_when_clock_passes(sandbox):
    c = sandbox.client
    clock, cust, sub = monthly_on_a_clock(sandbox, T0)
    c.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    advance(c, clock, T0 + 30 * DAY)
    assert c.v1.subscriptions.retrieve(sub.id).status == "active"
    advance(c, clock, T0 + 31 * DAY + 1)
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "canceled" and sub.ended_at == T0 + 31 * DAY
    assert len(c.v1.invoices.list(params={"subscription": sub.id}).data) == 1  # no renewal invoice
    deleted = c.v1.events.list(params={"type": "customer.subscription.deleted"}).data
    assert [e.data.object.id for e in deleted] == [sub.id]


def test_clock_events_and_customers_off_the_clock_are_untouched(sandbox):
    c = sandbox.client
    _, m, _, _ = catalog(c)
    clock, cust = clock_customer(c, T0)
    other = c.v1.customers.create(params={"email": "real@x.test"})
    _, s_other = subscribe(sandbox, other, m)
    subscribe(sandbox, cust, m)
    advance(c, clock, T0 + 70 * DAY)
    assert len(c.v1.invoices.list(params={"subscription": s_other.id}).data) == 1
    types = event_types(c)
    assert "test_helpers.test_clock.advancing" in types and "test_helpers.test_clock.ready" in types
