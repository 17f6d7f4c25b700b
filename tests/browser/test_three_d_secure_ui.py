"""3-D Secure in the browser: Checkout's authentication step failed then approved, and a renewal that
needs the customer: the dashboard's banner, approval on the hosted invoice page, recovery."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from tests.browser.helpers import new_admin, pay_on_sandbox_checkout, screenshot, start_purchase

pytestmark = pytest.mark.browser
CARD_3DS = "4000 0027 6000 3184"


def fill_card(page, card: str) -> None:
    pay_on_sandbox_checkout(page, card)  # the billing address too, when Checkout asks for it


def test_checkout_authentication_failed_then_approved(page, app_server):
    new_admin(page, app_server, org="Secure Co")
    start_purchase(page, app_server, "starter")
    page.wait_for_url("**/checkout/cs_*")
    fill_card(page, CARD_3DS)
    expect(page.locator("#authentication")).to_contain_text("Your bank asks you to confirm a payment")
    screenshot(page, "sandbox-3ds-step")
    page.locator("#authenticate-fail").click()
    expect(page.get_by_role("alert")).to_contain_text("unable to authenticate")

    fill_card(page, CARD_3DS)
    page.locator("#authenticate-approve").click()
    expect(page.locator("#confirm-title")).to_have_text("Payment successful")


def _org_of(app_server, email: str) -> int:
    with app_server.engine().connect() as connection:
        return connection.execute(text(
            'SELECT m.org_id FROM membership m JOIN "user" u ON u.id = m.user_id WHERE u.email = :e'), {"e": email}).scalar_one()


def test_renewal_needing_action_shows_the_banner_and_recovers(page, app_server):
    email = new_admin(page, app_server, org="Renewing Co")
    stripe = app_server.stripe
    # The org's Stripe customer lives on a test clock, so the renewal can be brought forward.
    clock = stripe.v1.test_helpers.test_clocks.create(params={"frozen_time": int(time.time())})
    customer = stripe.v1.customers.create(params={"email": email, "test_clock": clock.id})
    with app_server.engine().begin() as connection:
        connection.execute(text("INSERT INTO billingcustomer (org_id, stripe_customer_id, created_at) VALUES (:o, :c, CURRENT_TIMESTAMP)"),
                           {"o": _org_of(app_server, email), "c": customer.id})
    start_purchase(page, app_server, "starter")
    page.wait_for_url("**/checkout/cs_*")
    fill_card(page, CARD_3DS)
    page.locator("#authenticate-approve").click()
    expect(page.locator("#confirm-title")).to_have_text("Payment successful")

    sub = stripe.v1.subscriptions.list(params={"customer": customer.id}).data[0]
    stripe.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": sub["items"].data[0].current_period_end + 3600})

    page.goto(f"{app_server.url}/billing")
    banner = page.locator("#action-required")
    expect(banner).to_contain_text("Your bank needs you to confirm a payment", timeout=30_000)
    expect(page.locator("#payment-problem")).to_have_count(0)
    screenshot(page, "billing-action-required")
    invoice_url = page.locator("#confirm-payment").get_attribute("href")

    page.goto(invoice_url)
    expect(page.locator("#action-required")).to_contain_text("Your bank needs you to confirm this payment")
    page.locator("#authenticate-approve").click()
    expect(page.locator("#invoice-status")).to_have_text("paid")

    page.goto(f"{app_server.url}/billing")
    expect(page.locator("#action-required")).to_have_count(0, timeout=30_000)
    expect(page.get_by_text("Active").first).to_be_visible()
