"""Quantities (seats): Checkout line items (adjustable too), subscription item updates with
prorations, previews, and the portal's quantity change, with the events Stripe sends for each."""

from __future__ import annotations

import pytest
import stripe

from .helpers import CANCEL, SUCCESS, advance, catalog, clock_customer, event_types

T0 = 1_767_225_600  # 2026-01-01
DAY = 86400


def seat_checkout(c, cust, price, quantity=3, **aq):
    return c.v1.checkout.sessions.create(params={
        "mode": "subscription", "customer": cust.id, "success_url": SUCCESS, "cancel_url": CANCEL,
        "line_items": [{"price": price.id, "quantity": quantity,
                        "adjustable_quantity": {"enabled": True, "minimum": 2, "maximum": 10, **aq}}],
    })


def test_checkout_charges_the_quantity_the_buyer_settles_on(sandbox):
    c = sandbox.client
    _, monthly, _, _ = catalog(c, monthly=800)
    _, cust = clock_customer(c, T0)
    cs = seat_checkout(c, cust, monthly)
    assert cs.amount_total == 2400
    item = c.v1.checkout.sessions.line_items.list(cs.id).data[0]
    assert (item.quantity, item.adjustable_quantity.minimum, item.adjustable_quantity.maximum) == (3, 2, 10)

    sandbox.complete_checkout(cs.id, quantity="5")  # the buyer raised it on the page
    cs = c.v1.checkout.sessions.retrieve(cs.id, params={"expand": ["line_items"]})
    assert (cs.status, cs.amount_total, cs.line_items.data[0].quantity) == ("complete", 4000, 5)
    sub = c.v1.subscriptions.retrieve(cs.subscription)
    assert sub.items.data[0].quantity == 5
    invoice = c.v1.invoices.retrieve(sub.latest_invoice)
    assert (invoice.amount_paid, invoice.lines.data[0].quantity) == (4000, 5)


def test_adjustable_quantity_bounds_are_enforced(sandbox):
    c = sandbox.client
    _, monthly, _, _ = catalog(c)
    _, cust = clock_customer(c, T0)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        seat_checkout(c, cust, monthly, quantity=1)  # below the minimum
    assert exc.value.param == "line_items[0][quantity]"
    with pytest.raises(stripe.InvalidRequestError):
        seat_checkout(c, cust, monthly, minimum=5, maximum=4)
    cs = seat_checkout(c, cust, monthly)
    with pytest.raises(stripe.InvalidRequestError):
        sandbox.complete_checkout(cs.id, quantity="11")
    assert c.v1.checkout.sessions.retrieve(cs.id).status == "open"
    fixed = c.v1.checkout.sessions.create(params={
        "mode": "subscription", "customer": cust.id, "success_url": SUCCESS,
        "line_items": [{"price": monthly.id, "quantity": 2}]})
    assert c.v1.checkout.sessions.line_items.list(fixed.id).data[0].adjustable_quantity is None
    with pytest.raises(stripe.InvalidRequestError):
        sandbox.complete_checkout(fixed.id, quantity="3")  # nothing to adjust


def test_the_hosted_checkout_page_lets_the_buyer_pick_the_quantity(sandbox):
    c = sandbox.client
    _, monthly, _, _ = catalog(c, monthly=800)
    _, cust = clock_customer(c, T0)
    cs = seat_checkout(c, cust, monthly)
    page = sandbox.http.get(f"/checkout/{cs.id}")
    assert 'name=quantity' in page.text and "min=2" in page.text and "max=10" in page.text
    paid = sandbox.http.post(f"/checkout/{cs.id}", data={"card_number": "4242 4242 4242 4242", "quantity": "4"})
    assert paid.status_code == 303
    sub = c.v1.subscriptions.retrieve(c.v1.checkout.sessions.retrieve(cs.id).subscription)
    assert sub.items.data[0].quantity == 4


@pytest.fixture
def seats(sandbox):
    """A customer on a test clock with 3 seats at $8.00 a month, half-way through its first month."""
    c = sandbox.client
    prod, monthly, yearly, _ = catalog(c, monthly=800)
    clock, cust = clock_customer(c, T0)
    cs = seat_checkout(c, cust, monthly)
    sandbox.complete_checkout(cs.id)
    sub = c.v1.subscriptions.retrieve(c.v1.checkout.sessions.retrieve(cs.id).subscription)
    period_end = sub.items.data[0].current_period_end
    advance(c, clock, T0 + (period_end - T0) // 2)
    return c, prod, monthly, clock, cust, sub


def test_a_quantity_change_prorates_onto_the_next_invoice(seats):
    c, _, _, clock, cust, sub = seats
    item = sub.items.data[0]
    preview = c.v1.invoices.create_preview(params={
        "customer": cust.id, "subscription": sub.id,
        "subscription_details": {"items": [{"id": item.id, "quantity": 4}], "proration_behavior": "always_invoice"}})
    assert 390 <= preview.amount_due <= 410  # half a month of one more $8.00 seat
    assert sorted(line.quantity for line in preview.lines.data) == [3, 4]

    since = c.v1.events.list(params={"limit": 1}).data[0].created
    updated = c.v1.subscriptions.update(sub.id, params={
        "items": [{"id": item.id, "quantity": 4}], "proration_behavior": "create_prorations"})
    assert updated.items.data[0].quantity == 4 and updated.latest_invoice == sub.latest_invoice  # no invoice now
    pending = c.v1.invoice_items.list(params={"customer": cust.id, "pending": True}).data
    assert sum(ii.amount for ii in pending) == preview.amount_due
    events = c.v1.events.list(params={"type": "customer.subscription.updated", "created": {"gte": since}}).data
    assert events[0].data.previous_attributes["items"]["data"][0]["quantity"] == 3
    assert "invoiceitem.created" in event_types(c, created={"gte": since})

    # The renewal bills 4 seats and the pending proration, in one invoice.
    advance(c, clock, item.current_period_end + 60)
    renewal = c.v1.invoices.retrieve(c.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert renewal.amount_paid == 4 * 800 + preview.amount_due


def test_always_invoice_bills_a_quantity_change_at_once(seats):
    c, _, _, _, _, sub = seats
    item = sub.items.data[0]
    updated = c.v1.subscriptions.update(sub.id, params={
        "items": [{"id": item.id, "quantity": 5}], "proration_behavior": "always_invoice"})
    invoice = c.v1.invoices.retrieve(updated.latest_invoice)
    assert invoice.billing_reason == "subscription_update" and invoice.status == "paid"
    assert 790 <= invoice.amount_paid <= 810  # two more seats for half a month
    lowered = c.v1.subscriptions.update(sub.id, params={"items": [{"id": item.id, "quantity": 3}], "proration_behavior": "none"})
    assert lowered.items.data[0].quantity == 3 and lowered.latest_invoice == updated.latest_invoice


def _portal(c, prod, prices, cust, minimum=2):
    cfg = c.v1.billing_portal.configurations.create(params={"features": {
        "subscription_update": {
            "enabled": True, "default_allowed_updates": ["price", "quantity"], "proration_behavior": "create_prorations",
            "products": [{"product": prod.id, "prices": [p.id for p in prices],
                          "adjustable_quantity": {"enabled": True, "minimum": minimum, "maximum": 50}}]},
    }})
    return cfg, c.v1.billing_portal.sessions.create(params={"customer": cust.id, "configuration": cfg.id})


def test_the_portal_changes_the_quantity_within_its_bounds(seats, sandbox):
    c, prod, monthly, _, cust, sub = seats
    cfg, session = _portal(c, prod, [monthly], cust)
    aq = cfg.features.subscription_update.products[0].adjustable_quantity
    assert (aq.enabled, aq.minimum, aq.maximum) == (True, 2, 50)
    page = sandbox.http.get(f"/portal/{session.id}")
    assert "id=update-quantity" in page.text and "value=3" in page.text
    since = c.v1.events.list(params={"limit": 1}).data[0].created

    too_few = sandbox.http.post(f"/portal/{session.id}/quantity", data={"subscription": sub.id, "quantity": "1"})
    assert too_few.status_code == 303 and "error=" in too_few.headers["location"]
    assert c.v1.subscriptions.retrieve(sub.id).items.data[0].quantity == 3

    done = sandbox.http.post(f"/portal/{session.id}/quantity", data={"subscription": sub.id, "quantity": "2"})
    assert done.status_code == 303 and "msg=" in done.headers["location"]
    assert c.v1.subscriptions.retrieve(sub.id).items.data[0].quantity == 2
    events = c.v1.events.list(params={"type": "customer.subscription.updated", "created": {"gte": since}}).data
    assert events[0].data.object["items"]["data"][0]["quantity"] == 2
    # A credit for the seat given back waits for the next invoice.
    assert sum(ii.amount for ii in c.v1.invoice_items.list(params={"customer": cust.id, "pending": True}).data) < 0


def test_the_portal_offers_no_quantity_unless_configured(seats, sandbox):
    c, prod, monthly, _, cust, sub = seats
    cfg = c.v1.billing_portal.configurations.create(params={"features": {"subscription_update": {
        "enabled": True, "default_allowed_updates": ["price"], "products": [{"product": prod.id, "prices": [monthly.id]}]}}})
    session = c.v1.billing_portal.sessions.create(params={"customer": cust.id, "configuration": cfg.id})
    assert cfg.features.subscription_update.products[0].adjustable_quantity.enabled is False
    assert "update-quantity" not in sandbox.http.get(f"/portal/{session.id}").text
    refused = sandbox.http.post(f"/portal/{session.id}/quantity", data={"subscription": sub.id, "quantity": "5"})
    assert "error=" in refused.headers["location"]
    assert c.v1.subscriptions.retrieve(sub.id).items.data[0].quantity == 3
