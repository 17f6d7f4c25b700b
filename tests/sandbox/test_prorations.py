"""Prorations priced as Stripe prices them: net of the subscription's discounts, taxed line by line,
and previewed with the pending items the change will invoice.

Each case: a test clock, $10 a month (or $10 a seat), a change at exactly half the period.
"""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.usefixtures("sandbox")

T0 = int(time.time()) - 3600


def _halfway(client, *, quantity=1, coupon=None, address=None, tax=False):
    """A $10/month subscription (and a $20 price to move to), its clock moved to half the period."""
    prod = client.v1.products.create(params={"name": "Team"})
    basic, pro = (client.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": unit,
                                                  "recurring": {"interval": "month"}}) for unit in (1000, 2000))
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": T0})
    cust = client.v1.customers.create(params={"email": "ada@example.com", "test_clock": clock.id,
                                              **({"address": address} if address else {})})
    params = {"customer": cust.id, "items": [{"price": basic.id, "quantity": quantity}], "default_payment_method": "pm_card_visa"}
    if coupon:
        params["discounts"] = [{"coupon": coupon.id}]
    if tax:
        params["automatic_tax"] = {"enabled": True}
    sub = client.v1.subscriptions.create(params=params)
    item = sub["items"]["data"][0]
    start, end = item["current_period_start"], item["current_period_end"]
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": start + (end - start) // 2})
    return pro, cust, sub, item


def _half_off(client):
    return client.v1.coupons.create(params={"percent_off": 50, "duration": "forever"})


def _update_invoice(client, sub_id):
    inv = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub_id)["latest_invoice"])
    assert inv["billing_reason"] == "subscription_update"
    return inv


def _included(line, discount_id):
    """Stripe's default proration_discounts=included: net amount, the discount named with amount 0."""
    assert line["discountable"] is False
    assert line["discount_amounts"] == [{"amount": 0, "discount": discount_id}]


def test_an_upgrade_under_a_percent_coupon_is_prorated_net_of_it(sandbox):
    c = sandbox.client
    pro, cust, sub, item = _halfway(c, coupon=_half_off(c))
    change = {"items": [{"id": item.id, "price": pro.id}], "proration_behavior": "always_invoice"}
    preview = c.v1.invoices.create_preview(params={"customer": cust.id, "subscription": sub.id, "subscription_details": change})
    # Half of the $5 paid for the period is credited (-$2.50), half of $10 charged (+$5.00).
    assert sorted(line["amount"] for line in preview["lines"]["data"]) == [-250, 500]
    assert preview["amount_due"] == 250
    assert preview["total_discount_amounts"] == []  # not discounted a second time
    c.v1.subscriptions.update(sub.id, params=change)
    inv = _update_invoice(c, sub.id)
    assert inv["amount_paid"] == 250
    for line in inv["lines"]["data"]:
        _included(line.to_dict(), sub["discounts"][0])


def test_seats_given_back_under_a_coupon_credit_what_was_paid(sandbox):
    c = sandbox.client
    _, cust, sub, item = _halfway(c, quantity=4, coupon=_half_off(c))
    c.v1.subscriptions.update(sub.id, params={"items": [{"id": item.id, "quantity": 2}], "proration_behavior": "always_invoice"})
    # 4 seats paid $20 for the period: -$10 for their unused half, +$5 for 2 seats' half.
    assert _update_invoice(c, sub.id)["total"] == -500
    assert c.v1.customers.retrieve(cust.id)["balance"] == -500


def test_a_seat_added_under_a_coupon_waits_net_of_it(sandbox):
    c = sandbox.client
    _, cust, sub, item = _halfway(c, quantity=2, coupon=_half_off(c))
    c.v1.subscriptions.update(sub.id, params={"items": [{"id": item.id, "quantity": 3}], "proration_behavior": "create_prorations"})
    pending = c.v1.invoice_items.list(params={"customer": cust.id, "pending": True}).data
    assert sorted(ii["amount"] for ii in pending) == [-500, 750]
    for ii in pending:
        assert ii.to_dict()["proration_details"]["discount_amounts"] == [{"amount": 0, "discount": sub["discounts"][0]}]
    # The renewal: 3 seats at $5 each, plus the pending $2.50 (not halved again).
    assert c.v1.invoices.create_preview(params={"subscription": sub.id})["amount_due"] == 1500 + 250


def test_canceling_with_proration_under_a_coupon_credits_what_was_paid(sandbox):
    c = sandbox.client
    _, cust, sub, _ = _halfway(c, quantity=2, coupon=_half_off(c))
    c.v1.subscriptions.cancel(sub.id, params={"prorate": True, "invoice_now": True})
    assert c.v1.customers.retrieve(cust.id)["balance"] == -500


def test_the_credit_for_unused_time_carries_its_tax_back(sandbox):
    c = sandbox.client
    pro, _, sub, item = _halfway(c, address={"country": "US", "postal_code": "10001"}, tax=True)
    c.v1.subscriptions.update(sub.id, params={"items": [{"id": item.id, "price": pro.id}], "proration_behavior": "always_invoice"})
    inv = _update_invoice(c, sub.id)
    # 8%: -$0.40 on the -$5.00 credit, +$0.80 on the +$10.00 charge.
    assert sorted(line["taxes"][0]["amount"] for line in inv["lines"]["data"]) == [-40, 80]
    assert sum(t["amount"] for t in inv["total_taxes"]) == 40
    assert inv["total"] == 540


def test_an_always_invoice_preview_shows_the_pending_items_it_will_bill(sandbox):
    c = sandbox.client
    pro, cust, sub, item = _halfway(c)
    c.v1.subscriptions.update(sub.id, params={"items": [{"id": item.id, "quantity": 2}], "proration_behavior": "create_prorations"})
    change = {"items": [{"id": item.id, "price": pro.id, "quantity": 2}], "proration_behavior": "always_invoice"}
    preview = c.v1.invoices.create_preview(params={"customer": cust.id, "subscription": sub.id, "subscription_details": change})
    c.v1.subscriptions.update(sub.id, params=change)
    inv = _update_invoice(c, sub.id)
    assert preview["amount_due"] == inv["amount_due"] == 1500  # the pending +$5.00 seat, then -$10 + $20
