"""Billing portal configurations, sessions, and the hosted portal page in Chromium."""

from __future__ import annotations

import pytest
import stripe

from .helpers import catalog, clock_customer, event_types, subscribe

T0 = 1_767_225_600
RETURN = "http://app.test/account"


def full_config(c, prod, prices, **overrides):
    features = {
        "payment_method_update": {"enabled": True},
        "invoice_history": {"enabled": True},
        "customer_update": {"enabled": True, "allowed_updates": ["email", "name"]},
        "subscription_cancel": {"enabled": True, "mode": "at_period_end",
                                "cancellation_reason": {"enabled": True, "options": ["too_expensive", "unused", "other"]}},
        "subscription_update": {"enabled": True, "default_allowed_updates": ["price"], "proration_behavior": "create_prorations",
                                "products": [{"product": prod.id, "prices": [p.id for p in prices]}]},
        "subscription_pause": {"enabled": True},
    }
    features.update(overrides)
    return c.v1.billing_portal.configurations.create(params={
        "features": features, "business_profile": {"headline": "Acme billing", "privacy_policy_url": "http://app.test/privacy"}})


@pytest.fixture
def setup(sandbox):
    c = sandbox.client
    prod, m, y, one = catalog(c)
    clock, cust = clock_customer(c, T0)
    _, sub = subscribe(sandbox, cust, m)
    return c, prod, m, y, clock, cust, sub


def test_configuration_shape(sandbox):
    c = sandbox.client
    prod, m, y, _ = catalog(c)
    cfg = full_config(c, prod, [m, y], subscription_cancel={"enabled": True, "mode": "immediately", "proration_behavior": "create_prorations"})
    assert cfg.id.startswith("bpc_") and cfg.is_default is True
    f = cfg.features
    assert f.subscription_cancel.mode == "immediately" and f.subscription_cancel.proration_behavior == "create_prorations"
    assert f.subscription_update.products[0].prices == [m.id, y.id]
    assert f.customer_update.allowed_updates == ["email", "name"]
    assert cfg.business_profile.headline == "Acme billing"
    cfg = c.v1.billing_portal.configurations.update(cfg.id, params={"features": {"invoice_history": {"enabled": False}}})
    assert cfg.features.invoice_history.enabled is False and cfg.features.payment_method_update.enabled is True
    assert [x.id for x in c.v1.billing_portal.configurations.list().data] == [cfg.id]
    with pytest.raises(stripe.InvalidRequestError) as exc:
        c.v1.billing_portal.configurations.create(params={})
    assert exc.value.param == "features"


def test_session_validation(setup, sandbox):
    c, prod, m, y, clock, cust, sub = setup
    other = c.v1.customers.create(params={})
    s = c.v1.billing_portal.sessions.create(params={"customer": cust.id, "return_url": RETURN})
    assert s.url == f"{sandbox.base_url}/portal/{s.id}" and s.return_url == RETURN and s.flow is None
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.billing_portal.sessions.create(params={"customer": other.id, "flow_data": {"type": "subscription_cancel",
                                                                                       "subscription_cancel": {"subscription": sub.id}}})
    with pytest.raises(stripe.InvalidRequestError) as exc:
        c.v1.billing_portal.sessions.create(params={"customer": "cus_nope"})
    assert exc.value.http_status == 404


@pytest.mark.browser
def test_portal_page_cancel_at_period_end_and_renew(setup, sandbox, page, webhook_receiver):
    c, prod, m, y, clock, cust, sub = setup
    we = sandbox.register_webhook(webhook_receiver.url, ["customer.subscription.updated"])
    cfg = full_config(c, prod, [m, y])
    s = c.v1.billing_portal.sessions.create(params={"customer": cust.id, "return_url": RETURN, "configuration": cfg.id})
    page.goto(s.url)
    text = page.inner_text("main")
    assert "Pro plan" in text and "$10.00 / month" in text and "Visa •••• 4242" in text
    assert page.locator("#invoices .invoice-row").count() == 1
    pdf = page.locator("#invoices a.pdf").first.get_attribute("href")
    assert pdf.endswith("/pdf") and pdf.startswith(sandbox.base_url)
    assert page.get_attribute("#return", "href") == RETURN
    page.select_option("#reason", "too_expensive")
    page.click("#cancel-subscription")
    assert "will be canceled" in page.inner_text("#notice")
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert sub.cancel_at_period_end is True and sub.cancellation_details.feedback == "too_expensive"
    d = webhook_receiver.wait_for(lambda e: e["data"]["object"].get("cancel_at_period_end") is True)
    stripe.WebhookSignature.verify_header(d["body"], d["signature"], we.secret, tolerance=300)
    assert d["event"]["data"]["previous_attributes"]["cancel_at_period_end"] is False
    page.click("#renew")
    assert c.v1.subscriptions.retrieve(sub.id).cancel_at_period_end is False


@pytest.mark.browser
def test_portal_page_change_plan_payment_method_and_details(setup, sandbox, page):
    c, prod, m, y, clock, cust, sub = setup
    cfg = full_config(c, prod, [m, y])
    s = c.v1.billing_portal.sessions.create(params={"customer": cust.id, "return_url": RETURN, "configuration": cfg.id})
    page.goto(s.url)
    page.select_option("#price", y.id)
    page.click("#update-plan")
    assert "updated" in page.inner_text("#notice")
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert sub["items"].data[0].price.id == y.id
    assert c.v1.invoices.retrieve(sub.latest_invoice).amount_paid == 10000 - 1000  # year minus unused month
    page.fill("#card_number", "5555 5555 5555 4444")
    page.click("#update-payment-method")
    assert "Mastercard •••• 4444" in page.inner_text("#payment-method")
    cust2 = c.v1.customers.retrieve(cust.id, params={"expand": ["invoice_settings.default_payment_method"]})
    assert cust2.invoice_settings.default_payment_method.card.last4 == "4444"
    assert c.v1.subscriptions.retrieve(sub.id).default_payment_method == cust2.invoice_settings.default_payment_method.id
    page.fill("#cu_name", "Ada Lovelace")
    page.click("#update-customer")
    assert c.v1.customers.retrieve(cust.id).name == "Ada Lovelace"
    page.click("#pause")
    assert c.v1.subscriptions.retrieve(sub.id).pause_collection.behavior == "void"
    page.click("#unpause")
    assert c.v1.subscriptions.retrieve(sub.id).pause_collection is None
    types = event_types(c)
    assert "payment_method.attached" in types and "customer.updated" in types


@pytest.mark.browser
def test_flow_subscription_cancel_immediately_redirects(setup, sandbox, page):
    c, prod, m, y, clock, cust, sub = setup
    page.route("http://app.test/**", lambda route: route.fulfill(status=200, body="ok"))
    cfg = full_config(c, prod, [m], subscription_cancel={"enabled": True, "mode": "immediately"})
    s = c.v1.billing_portal.sessions.create(params={
        "customer": cust.id, "configuration": cfg.id, "return_url": RETURN,
        "flow_data": {"type": "subscription_cancel", "subscription_cancel": {"subscription": sub.id},
                      "after_completion": {"type": "redirect", "redirect": {"return_url": RETURN + "?done=1"}}}})
    assert s.flow.type == "subscription_cancel" and s.flow.subscription_cancel.subscription == sub.id
    page.goto(s.url)
    assert page.locator("#update-payment-method").count() == 0 and page.locator("#invoices").count() == 0
    page.click("#cancel-subscription")
    page.wait_for_url(RETURN + "?done=1")
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "canceled"
    assert "customer.subscription.deleted" in event_types(c)


@pytest.mark.browser
def test_flow_subscription_update_confirm(setup, sandbox, page):
    c, prod, m, y, clock, cust, sub = setup
    cfg = full_config(c, prod, [m, y])
    s = c.v1.billing_portal.sessions.create(params={
        "customer": cust.id, "configuration": cfg.id, "return_url": RETURN,
        "flow_data": {"type": "subscription_update_confirm", "subscription_update_confirm": {
            "subscription": sub.id, "items": [{"id": sub["items"].data[0].id, "price": y.id}]},
            "after_completion": {"type": "hosted_confirmation", "hosted_confirmation": {"custom_message": "Welcome to yearly!"}}}})
    page.goto(s.url)
    page.click("#confirm-update")
    assert page.inner_text("#notice") == "Welcome to yearly!"
    assert c.v1.subscriptions.retrieve(sub.id)["items"].data[0].price.id == y.id


@pytest.mark.browser
def test_flow_payment_method_update_only_and_disabled_features(setup, sandbox, page):
    c, prod, m, y, clock, cust, sub = setup
    cfg = c.v1.billing_portal.configurations.create(params={"features": {"payment_method_update": {"enabled": True}}})
    s = c.v1.billing_portal.sessions.create(params={"customer": cust.id, "configuration": cfg.id,
                                                    "flow_data": {"type": "payment_method_update"}})
    page.goto(s.url)
    assert page.locator("#cancel-subscription").count() == 0 and page.locator("#update-plan").count() == 0
    page.fill("#card_number", "4000 0000 0000 0002")
    page.click("#update-payment-method")
    assert "declined" in page.inner_text("#error")
    # A disabled action posted anyway is refused.
    resp = page.request.post(f"{sandbox.base_url}/portal/{s.id}/cancel", form={"subscription": sub.id}, max_redirects=0)
    assert resp.status == 303 and "error=" in resp.headers["location"]
    assert c.v1.subscriptions.retrieve(sub.id).cancel_at_period_end is False
