"""The sandbox speaks exactly the pinned API version, checked against the SDK's own definitions.

The session's sandbox records every request, answer and event (``--record``, see
tests/sandbox_fixture.py). The last test of the run drives a tour of every endpoint
family (so it has something to check when run alone), then checks the whole recording
with ``check.Checker``: every object type, key, type, nullability and enum value, every
parameter name and enum value, and Stripe's refusal of unknown parameters.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from billing_app.sandbox import resources  # noqa: F401  (registers the routes)
from billing_app.sandbox.api import ROUTES
from tests.sandbox.helpers import CANCEL, SUCCESS, advance, catalog, clock_customer

from . import allowlist, sdk
from .check import Checker, Problem

# The object types the recording must hold (the tour alone produces them), so the check can't pass on nothing.
EXPECTED = {
    "product": 2, "price": 3, "plan": 1, "customer": 2, "payment_method": 1, "checkout.session": 2, "item": 1,
    "subscription": 2, "subscription_item": 1, "invoice": 2, "line_item": 2, "invoiceitem": 1, "invoice_payment": 1,
    "payment_intent": 1, "charge": 1, "refund": 1, "billing_portal.configuration": 1, "billing_portal.session": 1,
    "test_helpers.test_clock": 1, "event": 20, "webhook_endpoint": 1, "subscription_schedule": 1, "error": 1,
    "deleted customer": 1, "deleted product": 1, "deleted webhook_endpoint": 1, "deleted test_helpers.test_clock": 1,
    "coupon": 1, "promotion_code": 1, "discount": 1, "tax_id": 1, "deleted coupon": 1, "deleted tax_id": 1,
}


def test_the_sdk_reader_sees_the_pinned_version():
    """The reader finds the SDK's endpoints and types (a broken reader would make every check pass)."""
    assert sdk.API_VERSION == "2026-10-28.endive"
    assert sum(len(v) for v in sdk.endpoints().values()) > 400
    create = sdk.endpoint_for("post", "/v1/checkout/sessions")
    assert create.params.__name__ == "SessionCreateParams" and create.returns[1].OBJECT_NAME == "checkout.session"
    assert sdk.endpoint_for("get", "/v1/customers/search").path == "/v1/customers/search"
    invoice = sdk.fields(sdk.object_class("invoice"))
    assert "parent" in invoice and "subscription" not in invoice  # moved under parent in 2025-03-31.basil
    session = sdk.fields(sdk.object_class("checkout.session"))
    nullable, (union, alternatives) = session["ui_mode"]
    assert {v for alt in alternatives if alt[0] == sdk.Kind.ENUM for v in alt[1]} == {"hosted_page", "embedded_page", "elements", "form"}


def test_the_checker_catches_drift():
    """Each rule fires on a known difference (the ones this check was written for)."""
    c = Checker()
    inv = sdk.object_class("invoice")
    c.value({"object": "invoice", "id": "in_1", "subscription": "sub_1"}, (sdk.Kind.OBJECT, inv), "invoice")
    c.value({"object": "checkout.session", "ui_mode": "hosted"}, (sdk.Kind.OBJECT, sdk.object_class("checkout.session")), "x")
    c.error({"error": {"type": "invalid_request_error", "message": "m", "param": None}}, "POST /v1/x")
    c.exchange("post", "/v1/checkout/sessions", "mode=subscription&prise=1", 200, {})
    c.exchange("post", "/v1/checkout/sessions", "ui_mode=hosted", 200, {})
    c.exchange("post", "/v1/subscriptions/sub_1", "trial_end=soon", 200, {})
    c.exchange("post", "/v1/customers", "prise=1", 400, {"error": {"type": "invalid_request_error", "message": "m"}})
    found = {(p.rule, p.where) for p in c.problems}
    assert ("extra key", "invoice.subscription") in found
    assert ("missing key", "invoice.lines") in found
    assert ("enum", "checkout.session.ui_mode") in found
    assert ("error field sent as null", "error.param") in found
    assert ("param unknown", "POST /v1/checkout/sessions") in found
    assert ("param enum", "POST /v1/checkout/sessions") in found
    assert ("param enum", "POST /v1/subscriptions/{subscription_exposed_id}") in found  # trial_end is 'now' or an int
    assert ("unknown param answered unlike Stripe", "POST /v1/customers") in found


def _route_path(pattern, id_="x_123") -> str:
    return re.sub(r"\(\?P<\w+>\[\^/\]\+\)", id_, pattern.pattern.strip("^$"))


def test_every_sandbox_route_is_an_sdk_endpoint_with_the_same_params():
    """The sandbox declares for each route the params class the SDK's service sends for that path."""
    problems = []
    for method, pattern, _fn, spec, _extra in ROUTES:
        path = _route_path(pattern)
        endpoint = sdk.endpoint_for(method, path)
        if endpoint is None:
            if not allowlist.allowed(Problem("endpoint unknown to the SDK", f"{method} {_route_path(pattern, '{id}')}")):
                problems.append(f"{method} {path}: no such SDK endpoint")
            continue
        declared = spec and spec.split(":")[1]
        sdk_params = endpoint.params and endpoint.params.__name__
        if declared != sdk_params:
            problems.append(f"{method} {endpoint.path}: sandbox checks {declared}, the SDK sends {sdk_params}")
    assert not problems, "\n".join(problems)


def test_unknown_parameters_are_refused_on_every_route(sandbox):
    """As Stripe: 400 parameter_unknown naming the parameter, before anything else happens."""
    http = httpx.Client(base_url=sandbox.base_url, headers={"Authorization": f"Bearer {sandbox.api_key}"})
    wrong = []
    for method, pattern, _fn, spec, _extra in ROUTES:
        path = _route_path(pattern)
        if method == "GET":
            r = http.get(path, params={"bogus_param": "1"})
        elif method == "DELETE":
            r = http.request("DELETE", path, params={"bogus_param": "1"})
        else:
            r = http.post(path, data={"bogus_param": "1"})
        err = r.json().get("error", {})
        if (r.status_code, err.get("code"), err.get("param")) != (400, "parameter_unknown", "bogus_param"):
            wrong.append(f"{method} {path}: {r.status_code} {err}")
    assert not wrong, "\n".join(wrong)


def tour(sandbox, webhook_receiver) -> None:
    """Every endpoint family, through the SDK and raw (so embedded shapes and errors are seen too)."""
    http = httpx.Client(base_url=sandbox.base_url, headers={"Authorization": f"Bearer {sandbox.api_key}"})
    c = sandbox.client
    prod, m, y, one = catalog(c)
    we = sandbox.register_webhook(webhook_receiver.url)
    clock, cust = clock_customer(c, 1_767_225_600)
    other_clock_cust = c.v1.customers.create(params={"email": "tour@example.com", "test_clock": clock.id})
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
    c.v1.subscription_schedules.release(schedule.id)
    cfg = c.v1.billing_portal.configurations.create(params={"features": {
        "invoice_history": {"enabled": True}, "subscription_pause": {"enabled": True}}})
    c.v1.billing_portal.sessions.create(params={"customer": cust.id, "configuration": cfg.id, "return_url": "http://app.test/"})
    # Coupons, promotion codes, discounts (a promotion code at Checkout, with address and tax ID collection and tax), tax IDs.
    c.v1.coupons.create(params={"id": "tour25", "percent_off": 25, "duration": "repeating", "duration_in_months": 2, "name": "Tour"})
    promo = c.v1.promotion_codes.create(params={"promotion": {"type": "coupon", "coupon": "tour25"}, "code": "TOUR25"})
    taxed = c.v1.checkout.sessions.create(params={
        "mode": "subscription", "customer": other_clock_cust.id, "success_url": SUCCESS, "line_items": [{"price": m.id, "quantity": 1}],
        "allow_promotion_codes": True, "billing_address_collection": "required", "tax_id_collection": {"enabled": True},
        "automatic_tax": {"enabled": True}, "customer_update": {"address": "auto", "name": "auto"}})
    sandbox.complete_checkout(taxed.id, promotion_code="TOUR25", billing_address={"line1": "1 Rue", "city": "Paris", "country": "FR"},
                              business_name="Tour SARL", tax_id={"type": "eu_vat", "value": "FRAB123456789"})
    taxed = c.v1.checkout.sessions.retrieve(taxed.id)
    c.v1.promotion_codes.update(promo.id, params={"active": False})
    gone = c.v1.coupons.create(params={"amount_off": 100, "currency": "usd", "duration": "once"})
    c.v1.subscriptions.update(taxed.subscription, params={"pause_collection": {"behavior": "void", "resumes_at": 1_767_225_600 + 50 * 86400}})
    tax_id = c.v1.customers.tax_ids.create(cust.id, params={"type": "us_ein", "value": "12-3456789"})
    temp = c.v1.products.create(params={"name": "temp"})
    other = c.v1.customers.create(params={})
    gets = [
        f"/v1/products/{prod.id}", f"/v1/prices/{m.id}", f"/v1/customers/{cust.id}",
        f"/v1/payment_methods?customer={cust.id}", f"/v1/checkout/sessions/{cs.id}?expand[]=line_items",
        f"/v1/checkout/sessions/{cs.id}/line_items", f"/v1/subscriptions/{sub.id}", f"/v1/subscription_items?subscription={sub.id}",
        f"/v1/invoices?customer={cust.id}", f"/v1/invoices/{cs.invoice}/lines", f"/v1/invoiceitems?customer={cust.id}",
        f"/v1/prices/{y.id}?expand[]=product", f"/v1/invoices/{cs.invoice}?expand[]=payments",
        f"/v1/invoice_payments?invoice={cs.invoice}", f"/v1/payment_intents/{pay.payment_intent}", f"/v1/charges?customer={cust.id}",
        f"/v1/refunds/{refund.id}", f"/v1/billing_portal/configurations/{cfg.id}", f"/v1/test_helpers/test_clocks/{clock.id}",
        f"/v1/subscription_schedules/{schedule.id}", "/v1/events?limit=100", f"/v1/webhook_endpoints/{we.id}",
        "/v1/customers/search?query=email:'ada@example.com'",
        "/v1/coupons/tour25", "/v1/coupons", f"/v1/promotion_codes/{promo.id}", "/v1/promotion_codes?code=TOUR25",
        f"/v1/customers/{cust.id}/tax_ids", f"/v1/customers/{cust.id}/tax_ids/{tax_id.id}",
        f"/v1/customers/{other_clock_cust.id}?expand[]=tax_ids",
        f"/v1/subscriptions/{taxed.subscription}?expand[]=discounts.source.coupon&expand[]=discounts.promotion_code",
        f"/v1/invoices/{taxed.invoice}",
    ]
    for path in gets:
        assert http.get(path).status_code == 200, path
    assert http.post("/v1/invoices/create_preview", data={"subscription": sub.id}).status_code == 200
    assert http.post("/v1/billing_portal/sessions", data={"customer": cust.id}).status_code == 200
    assert http.post("/v1/invoices/create_preview", data={"subscription": taxed.subscription}).status_code == 200
    assert http.post("/v1/billing_portal/sessions", data={
        "customer": other_clock_cust.id, "flow_data[type]": "subscription_cancel",
        "flow_data[subscription_cancel][subscription]": taxed.subscription,
        "flow_data[subscription_cancel][retention][type]": "coupon_offer",
        "flow_data[subscription_cancel][retention][coupon_offer][coupon]": "tour25"}).status_code == 200
    assert http.post("/v1/billing_portal/sessions", data={"customer": other_clock_cust.id,
                                                          "flow_data[type]": "customer_update"}).status_code == 200
    assert http.post(f"/v1/customers/{cust.id}/tax_ids", data={"type": "eu_vat", "value": "DE1"}).status_code == 400
    assert http.post("/v1/webhook_endpoints", data={"url": webhook_receiver.url, "enabled_events[]": "*"}).status_code == 200
    assert http.get("/v1/customers/cus_missing").status_code == 404
    assert http.post("/v1/customers", data={"bogus": "1"}).status_code == 400
    advance(c, clock, 1_767_225_600 + 40 * 86400)
    for path in (f"/v1/coupons/{gone.id}", f"/v1/customers/{cust.id}/tax_ids/{tax_id.id}", f"/v1/products/{temp.id}", f"/v1/customers/{other.id}", f"/v1/webhook_endpoints/{we.id}",
                 f"/v1/test_helpers/test_clocks/{clock.id}"):
        assert http.delete(path).status_code == 200, path


@pytest.mark.conformance_last
def test_everything_the_sandbox_said_conforms(sandbox, sandbox_server, webhook_receiver):
    tour(sandbox, webhook_receiver)
    checker = Checker()
    with open(sandbox_server.recording, encoding="utf-8") as f:
        for line in f:
            checker.text(line)
    thin = {k: (checker.objects[k], n) for k, n in EXPECTED.items() if checker.objects[k] < n}
    assert not thin, f"the recording holds too few of these (seen, wanted): {thin}"
    assert len(checker.requests) >= 40, sorted(checker.requests)
    assert not checker.problems, "differences from the SDK's definitions:\n" + checker.report()


def test_recorded_lines_are_json(sandbox, sandbox_server):
    """The recorder writes one JSON object a line: a request with its answer, and each event."""
    sandbox.client.v1.customers.create(params={"email": "rec@example.com"})
    lines = [json.loads(x) for x in sandbox_server.recording.read_text().splitlines()[-3:]]
    request = next(x for x in lines if x["kind"] == "request" and x["path"] == "/v1/customers")
    assert request["method"] == "POST" and "email=rec%40example.com" in request["raw"] and request["status"] == 200
    assert request["body"]["email"] == "rec@example.com"
    assert any(x["kind"] == "event" and x["body"]["type"] == "customer.created" for x in lines)
