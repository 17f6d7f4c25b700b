"""The whole journey a new customer takes, with Stripe's side changing through the portal,
webhooks and a test clock; the dashboard follows through the webhook worker and live push."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from tests.browser.helpers import new_admin, new_org_buys, pay_on_sandbox_checkout, screenshot, start_purchase

pytestmark = pytest.mark.browser
CANCELS_ON = re.compile(r"^Cancels on [A-Z][a-z]{2} \d{1,2}, \d{4}$")


def test_subscribe_cancel_in_the_portal_reactivate_and_read_the_history(page, app_server):
    new_org_buys(page, app_server)
    page.get_by_role("link", name="Go to billing").click()
    expect(page.locator("#status-badge")).to_have_text("Active")
    expect(page.get_by_text("Next renewal")).to_be_visible()

    page.locator("#manage-billing").click()
    page.wait_for_url(re.compile(r"/portal/bps_"))
    screenshot(page, "sandbox-portal")
    page.locator("#cancel-subscription").click()
    expect(page.locator("#renew")).to_be_visible()  # the portal now offers to undo it
    page.locator("#return").click()

    page.wait_for_url(re.compile(r"/billing/?$"))
    # The webhook reaches the worker, which syncs and pushes to this page: no reload.
    expect(page.locator("#status-badge")).to_have_text(CANCELS_ON, timeout=20_000)
    screenshot(page, "billing-cancels-on")
    page.locator("#reactivate").click()
    expect(page.locator("#status-badge")).to_have_text("Active")

    page.goto(f"{app_server.url}/billing/payments")
    row = page.locator(".payment-row").first
    expect(row).to_contain_text("Completed")
    pdf = page.request.get(row.locator(".pdf-link").get_attribute("href"))
    assert pdf.ok and pdf.headers["content-type"].startswith("application/pdf") and pdf.body().startswith(b"%PDF-")


def test_a_webhook_updates_an_open_dashboard_without_a_reload(page, app_server):
    new_org_buys(page, app_server)
    page.goto(f"{app_server.url}/billing")
    expect(page.locator("#status-badge")).to_have_text("Active")
    with app_server.engine().connect() as connection:
        sub_id = connection.execute(text("SELECT stripe_id FROM orgsubscription ORDER BY id DESC LIMIT 1")).scalar_one()
    # Someone cancels at Stripe directly (another tab, the dashboard, support): only a webhook tells us.
    app_server.stripe.v1.subscriptions.update(sub_id, params={"cancel_at_period_end": True})
    expect(page.locator("#status-badge")).to_have_text(CANCELS_ON, timeout=20_000)


def test_past_due_banner_after_a_failed_renewal_on_a_test_clock(page, app_server):
    new_admin(page, app_server, org="Clockwork Ltd")
    stripe = app_server.stripe
    with app_server.engine().begin() as connection:
        org_id = connection.execute(text("SELECT id FROM organization WHERE name = 'Clockwork Ltd' ORDER BY id DESC")).first()[0]
        clock = stripe.v1.test_helpers.test_clocks.create(params={"frozen_time": int(time.time())})
        customer = stripe.v1.customers.create(params={"email": "clock@example.com", "test_clock": clock.id, "metadata": {"org_id": str(org_id)}})
        connection.execute(text("INSERT INTO billingcustomer (org_id, stripe_customer_id, created_at) VALUES (:o, :c, CURRENT_TIMESTAMP)"),
                           {"o": org_id, "c": customer.id})
    start_purchase(page, app_server, "starter")
    pay_on_sandbox_checkout(page)
    expect(page.locator("#confirm-title")).to_have_text("Payment successful")

    subscription = stripe.v1.subscriptions.list(params={"customer": customer.id}).data[0]
    failing = stripe.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": customer.id})
    stripe.v1.subscriptions.update(subscription.id, params={"default_payment_method": failing.id})
    page.goto(f"{app_server.url}/billing")
    expect(page.locator("#status-badge")).to_have_text("Active")
    period_end = subscription["items"].data[0].current_period_end
    stripe.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": period_end + 3600})

    expect(page.locator("#status-badge")).to_have_text("Past due", timeout=20_000)
    expect(page.locator("#payment-problem")).to_contain_text("Your last payment failed.")
    screenshot(page, "billing-past-due")
    page.locator("#update-payment-method").click()
    page.wait_for_url(re.compile(r"/portal/bps_"))
    expect(page.locator("#update-payment-method")).to_be_visible()
