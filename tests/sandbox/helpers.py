"""Small builders shared by the sandbox tests (all through the official SDK)."""

from __future__ import annotations

import time

SUCCESS = "http://app.test/success?session_id={CHECKOUT_SESSION_ID}"
CANCEL = "http://app.test/cancel"


def catalog(client, monthly=1000, yearly=10000, one_off=500):
    """A product with monthly, yearly and one-off prices."""
    prod = client.v1.products.create(params={"name": "Pro plan"})
    m = client.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": monthly,
                                        "recurring": {"interval": "month"}, "lookup_key": "pro_monthly"})
    y = client.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": yearly,
                                        "recurring": {"interval": "year"}, "lookup_key": "pro_yearly"})
    one = client.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": one_off})
    return prod, m, y, one


def clock_customer(client, frozen_time=None, **fields):
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": frozen_time or int(time.time())})
    cust = client.v1.customers.create(params={"email": "ada@example.com", "name": "Ada", "test_clock": clock.id, **fields})
    return clock, cust


def subscribe(sandbox, customer, price, payment_method="pm_card_visa", **session_params):
    """A subscription through Checkout, completed with the test helper; returns (session, subscription)."""
    cs = sandbox.client.v1.checkout.sessions.create(params={
        "mode": "subscription", "customer": customer.id, "line_items": [{"price": price.id, "quantity": 1}],
        "success_url": SUCCESS, "cancel_url": CANCEL, **session_params})
    sandbox.complete_checkout(cs.id, payment_method)
    cs = sandbox.client.v1.checkout.sessions.retrieve(cs.id)
    sub = sandbox.client.v1.subscriptions.retrieve(cs.subscription)
    return cs, sub


def monthly_on_a_clock(sandbox, frozen_time, **session_params):
    """A customer on a new test clock with a monthly subscription bought through Checkout: (clock, customer, subscription)."""
    _, monthly, _, _ = catalog(sandbox.client)
    clock, cust = clock_customer(sandbox.client, frozen_time)
    _, sub = subscribe(sandbox, cust, monthly, **session_params)
    return clock, cust, sub


def advance(client, clock, to):
    return client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": to})


def event_types(client, **params):
    return [e.type for e in client.v1.events.list(params={"limit": 100, **params}).auto_paging_iter()][::-1]
