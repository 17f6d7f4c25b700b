"""Every object the sandbox returns has the top-level keys of Stripe's own fixture for its type.

Stripe's fixtures (stripe/openapi fixtures3.json, shipped in ../shared/stripe/) describe
the objects at the SDK's pinned API version.  The test walks every JSON response of a
flow that touches every endpoint family, finds every embedded object too, and compares.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from .helpers import CANCEL, SUCCESS, advance, catalog, clock_customer

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT.parent / "shared" / "stripe" / "fixtures3.json"

# Keys the sandbox returns on top of the fixture, each with its reason.
EXTRA_OK = {
    # Stripe returns the signing secret only in the response to the create call; the fixture is the retrieve shape.
    ("webhook_endpoint", "secret"),
    # An "includable" property: present only when asked for with expand[]=line_items, as on Stripe.
    ("checkout.session", "line_items"),
}
# Object types with no fixture of their own.
NO_FIXTURE = {
    "list": "list envelope (object/data/has_more/url), not a resource",
    "search_result": "search envelope, not a resource",
}
# Every type the flow below must have produced, so the test can't pass by seeing nothing.
EXPECTED_TYPES = {
    "product", "price", "plan", "customer", "payment_method", "checkout.session", "item", "subscription",
    "subscription_item", "invoice", "line_item", "invoiceitem", "invoice_payment", "payment_intent", "charge", "refund",
    "billing_portal.configuration", "billing_portal.session", "test_helpers.test_clock", "event", "webhook_endpoint",
    "deleted_customer", "deleted_product", "deleted_webhook_endpoint", "deleted_test_helpers.test_clock",
    "subscription_schedule",
}


def walk(value, found):
    if isinstance(value, dict):
        kind = value.get("object")
        if isinstance(kind, str) and ("id" in value or kind in NO_FIXTURE):
            key = f"deleted_{kind}" if value.get("deleted") is True else kind
            found.setdefault(key, []).append(value)
        for v in value.values():
            walk(v, found)
    elif isinstance(value, list):
        for v in value:
            walk(v, found)


@pytest.fixture(scope="module")
def fixtures():
    if not FIXTURES.exists():
        pytest.fail(f"{FIXTURES} is missing (Stripe's fixtures ship in shared/stripe beside the project)")
    return json.loads(FIXTURES.read_text())["resources"]


def test_every_returned_object_matches_its_fixture_keys(sandbox, fixtures, webhook_receiver):
    seen: list = []

    def record(response):
        response.read()
        if response.headers.get("content-type", "").startswith("application/json"):
            seen.append(response.json())

    http = httpx.Client(base_url=sandbox.base_url, headers={"Authorization": f"Bearer {sandbox.api_key}"},
                        event_hooks={"response": [record]})
    c = sandbox.client
    # Drive everything through the SDK, and fetch each object raw as well so embedded shapes are seen.
    prod, m, y, one = catalog(c)
    we = sandbox.register_webhook(webhook_receiver.url)
    clock, cust = clock_customer(c, 1_767_225_600)
    cs = c.v1.checkout.sessions.create(params={"mode": "subscription", "customer": cust.id, "success_url": SUCCESS,
                                               "cancel_url": CANCEL, "line_items": [{"price": m.id, "quantity": 1}]})
    sandbox.complete_checkout(cs.id)
    cs = c.v1.checkout.sessions.retrieve(cs.id)
    pay = c.v1.checkout.sessions.create(params={"mode": "payment", "customer": cust.id, "success_url": SUCCESS,
                                                "invoice_creation": {"enabled": True}, "line_items": [{"price": one.id, "quantity": 1}]})
    sandbox.complete_checkout(pay.id)
    pay = c.v1.checkout.sessions.retrieve(pay.id)
    refund = c.v1.refunds.create(params={"payment_intent": pay.payment_intent, "amount": 100})
    sub = c.v1.subscriptions.retrieve(cs.subscription)
    premium = c.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 3000, "recurring": {"interval": "month"}})
    advance(c, clock, 1_767_225_600 + 10 * 86400)
    c.v1.subscriptions.update(sub.id, params={"items": [{"id": sub["items"].data[0].id, "price": premium.id}],
                                              "proration_behavior": "create_prorations"})
    schedule = c.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    seen.append(c.v1.subscription_schedules.retrieve(schedule.id).to_dict())
    c.v1.subscription_schedules.release(schedule.id)
    cfg = c.v1.billing_portal.configurations.create(params={"features": {"invoice_history": {"enabled": True}}})
    bps = c.v1.billing_portal.sessions.create(params={"customer": cust.id, "configuration": cfg.id, "return_url": "http://app.test/"})
    temp = c.v1.products.create(params={"name": "temp"})
    other = c.v1.customers.create(params={})

    gets = [
        f"/v1/products/{prod.id}", f"/v1/prices/{m.id}", f"/v1/customers/{cust.id}",
        f"/v1/payment_methods?customer={cust.id}", f"/v1/checkout/sessions/{cs.id}?expand[]=line_items",
        f"/v1/checkout/sessions/{cs.id}/line_items", f"/v1/subscriptions/{sub.id}", f"/v1/subscription_items?subscription={sub.id}",
        f"/v1/invoices?customer={cust.id}", f"/v1/invoices/{cs.invoice}/lines", f"/v1/invoiceitems?customer={cust.id}",
        f"/v1/prices/{y.id}?expand[]=product",
        f"/v1/invoice_payments?invoice={cs.invoice}", f"/v1/payment_intents/{pay.payment_intent}", f"/v1/charges?customer={cust.id}",
        f"/v1/refunds/{refund.id}", f"/v1/billing_portal/configurations/{cfg.id}", f"/v1/test_helpers/test_clocks/{clock.id}",
        "/v1/events?limit=100", f"/v1/webhook_endpoints/{we.id}", f"/v1/customers/search?query=email:'ada@example.com'",
    ]
    for path in gets:
        assert http.get(path).status_code == 200, path
    assert http.get(f"/v1/invoiceitems?customer={cust.id}&pending=true").json()["data"]
    assert http.post("/v1/invoices/create_preview", data={"subscription": sub.id}).status_code == 200
    assert http.post("/v1/billing_portal/sessions", data={"customer": cust.id}).status_code == 200
    assert http.post("/v1/webhook_endpoints", data={"url": webhook_receiver.url, "enabled_events[]": "*"}).status_code == 200
    advance(c, clock, 1_767_225_600 + 40 * 86400)
    for path in (f"/v1/products/{temp.id}", f"/v1/customers/{other.id}", f"/v1/webhook_endpoints/{we.id}",
                 f"/v1/test_helpers/test_clocks/{clock.id}"):
        assert http.delete(path).status_code == 200, path
    webhook_receiver.wait_for_type("customer.created")
    seen.extend(d["event"] for d in webhook_receiver.deliveries)
    assert bps.url

    found: dict = {}
    walk(seen, found)
    missing_types = EXPECTED_TYPES - set(found)
    assert not missing_types, f"the flow did not produce {missing_types}"
    problems = []
    for kind, objs in sorted(found.items()):
        if kind in NO_FIXTURE:
            continue
        assert kind in fixtures, f"no fixture for object type {kind!r}"
        want = set(fixtures[kind])
        for obj in objs:
            got = set(obj)
            missing = want - got
            extra = {k for k in got - want if (kind, k) not in EXTRA_OK}
            if missing or extra:
                problems.append(f"{kind} {obj.get('id')}: missing {sorted(missing)} extra {sorted(extra)}")
    assert not problems, "\n".join(sorted(set(problems)))
