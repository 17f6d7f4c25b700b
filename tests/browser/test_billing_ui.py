"""The billing pages in a real browser, against the app and sandbox started as `make run` starts them."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import login, new_admin, new_org_buys, pay_on_sandbox_checkout, screenshot, start_purchase

pytestmark = pytest.mark.browser
SEED_PASSWORD = "demo-password-123"


def both_widths(page, name: str) -> None:
    for width in (1280, 375):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(150)
        screenshot(page, name)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_subscribe_monthly_then_dashboard_is_active(page, app_server):
    new_admin(page, app_server)
    page.goto(f"{app_server.url}/pricing")
    expect(page.locator(".plan-card[data-plan=pro]")).to_contain_text("Most popular")
    expect(page.locator(".plan-card[data-plan=starter]")).to_contain_text("$9.00/ month")
    expect(page.locator(".plan-card[data-plan=business]")).to_contain_text("one-time · lifetime")
    page.get_by_role("radio", name="Yearly").click()
    expect(page.locator(".plan-card[data-plan=starter]")).to_contain_text("$90.00/ year")
    page.get_by_role("radio", name="Monthly").click()
    both_widths(page, "pricing")

    start_purchase(page, app_server, "starter")
    page.wait_for_url("**/checkout/cs_*")
    expect(page.get_by_text("$9.00").first).to_be_visible()
    both_widths(page, "sandbox-checkout")
    pay_on_sandbox_checkout(page)
    expect(page.locator("#confirm-title")).to_have_text("Payment successful")
    expect(page.get_by_text("Next renewal:")).to_be_visible()
    both_widths(page, "confirm-success")

    page.get_by_role("link", name="Go to billing").click()
    expect(page.locator("#status-badge")).to_have_text("Active")
    expect(page.locator("#plan-name")).to_have_text("Starter")
    expect(page.get_by_text("Next renewal")).to_be_visible()
    both_widths(page, "billing-active")

    page.goto(f"{app_server.url}/pricing")
    starter = page.locator(".plan-card[data-plan=starter]")
    expect(starter.get_by_role("button", name="Current plan")).to_be_disabled()
    expect(page.locator(".plan-card[data-plan=pro]").get_by_role("link", name="Switch plan")).to_be_visible()


def test_declined_card_shows_an_error_and_nothing_is_bought(page, app_server):
    new_admin(page, app_server)
    start_purchase(page, app_server, "starter")
    pay_on_sandbox_checkout(page, card="4000 0000 0000 0002")
    expect(page.get_by_text("Your card was declined.")).to_be_visible()
    screenshot(page, "sandbox-declined")
    page.get_by_text("Cancel and go back").click()
    expect(page).to_have_url(re.compile(r"/pricing/?$"))
    page.goto(f"{app_server.url}/billing")
    expect(page.locator("#no-subscription")).to_be_visible()


def test_expired_and_unknown_checkouts(page, app_server):
    new_admin(page, app_server)
    start_purchase(page, app_server, "starter")
    page.wait_for_url("**/checkout/cs_*")
    session_id = re.search(r"(cs_[A-Za-z0-9_]+)", page.url).group(1)
    app_server.stripe.v1.checkout.sessions.expire(session_id)
    page.goto(f"{app_server.url}/billing/confirm?session_id={session_id}")
    expect(page.locator("#confirm-title")).to_have_text("Checkout expired")
    expect(page.get_by_role("link", name="Back to pricing")).to_be_visible()
    for bad in ("cs_test_nope", "<script>", ""):
        page.goto(f"{app_server.url}/billing/confirm?session_id={bad}")
        expect(page.locator("#confirm-title")).to_have_text("We could not find this checkout")
    screenshot(page, "confirm-not-found")


def test_lifetime_purchase_has_no_cancel_or_change(page, app_server):
    new_org_buys(page, app_server, "business", button="Buy lifetime")
    page.goto(f"{app_server.url}/billing")
    expect(page.locator("#status-badge")).to_have_text("Lifetime")
    expect(page.locator("#lifetime-note")).to_be_visible()
    expect(page.locator("#cancel-subscription")).to_have_count(0)
    expect(page.locator("#change-plan")).to_have_count(0)
    both_widths(page, "billing-lifetime")


def test_plan_change_shows_the_proration_preview_then_applies(page, app_server):
    new_org_buys(page, app_server)
    page.goto(f"{app_server.url}/billing")
    page.locator("#change-plan").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("combobox").click()
    page.get_by_role("option", name="Business — $99.00 / month", exact=True).click()
    expect(dialog.get_by_role("status")).to_contain_text("Starter → Business. Due now: $")
    screenshot(page, "billing-change-preview")
    dialog.get_by_role("button", name="Confirm change").click()
    expect(page.get_by_role("status")).to_have_text("Your plan is now Business.")
    expect(page.locator("#plan-name")).to_have_text("Business")


def test_cancel_then_reactivate_from_the_dashboard(page, app_server):
    new_org_buys(page, app_server)
    page.goto(f"{app_server.url}/billing")
    page.locator("#cancel-subscription").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Why are you canceling?").select_option("other")
    dialog.get_by_label("Anything else you'd like to tell us? (optional)").fill("Just testing")
    screenshot(page, "billing-cancel-dialog")
    dialog.get_by_role("button", name="Continue").click()
    dialog.locator("#skip-pause").click()
    dialog.locator("#decline-offer").click()
    page.locator("#confirm-cancel").click()
    expect(page.locator("#status-badge")).to_have_text(re.compile(r"^Cancels on [A-Z][a-z]{2} \d{1,2}, \d{4}$"))
    page.locator("#reactivate").click()
    expect(page.locator("#status-badge")).to_have_text("Active")


def test_a_cancellation_in_one_tab_reaches_the_billing_page_open_in_another(page, app_server):
    # The action syncs the mirror itself, so the webhook's sync found nothing new and pushed nothing:
    # the first tab kept "Active", the next invoice and a Cancel button.
    new_org_buys(page, app_server)
    page.goto(f"{app_server.url}/billing")
    expect(page.locator("#status-badge")).to_have_text("Active")
    other = page.context.new_page()
    other.set_default_timeout(20_000)
    other.goto(f"{app_server.url}/billing")
    other.locator("#cancel-subscription").click()
    other.get_by_label("Why are you canceling?").select_option("unused")
    other.locator("#cancel-continue").click()
    other.locator("#skip-pause").click()
    other.locator("#decline-offer").click()
    other.locator("#confirm-cancel").click()
    cancels_on = re.compile(r"^Cancels on [A-Z][a-z]{2} \d{1,2}, \d{4}$")
    expect(other.locator("#status-badge")).to_have_text(cancels_on)
    expect(page.locator("#status-badge")).to_have_text(cancels_on)
    expect(page.locator("#reactivate")).to_be_visible()


def test_member_sees_billing_read_only(page, app_server):
    login(page, app_server, email="member@acme.test", password=SEED_PASSWORD)
    page.wait_for_selector("#whoami")
    page.goto(f"{app_server.url}/pricing")
    expect(page.get_by_text("Ask an admin to upgrade").first).to_be_visible()
    expect(page.get_by_role("button", name="Subscribe")).to_have_count(0)
    page.goto(f"{app_server.url}/billing")
    expect(page.locator("#manage-billing")).to_have_count(0)
    page.goto(f"{app_server.url}/billing/payments")
    expect(page.locator("#payments-admin-only")).to_be_visible()
    both_widths(page, "payments-member")


def test_signed_out_visitor_sees_prices_and_sign_up(page, app_server):
    page.goto(f"{app_server.url}/pricing")
    expect(page.locator(".plan-card")).to_have_count(4)
    expect(page.get_by_role("link", name="Sign up").first).to_be_visible()
    page.goto(f"{app_server.url}/billing")
    expect(page).to_have_url(re.compile(r"/login\?next="))


def test_payment_history_and_its_date_filter(page, app_server):
    new_org_buys(page, app_server)
    page.goto(f"{app_server.url}/billing/payments")
    row = page.locator(".payment-row").first
    expect(row).to_contain_text("$9.00")
    expect(row).to_contain_text("Completed")
    pdf = row.locator(".pdf-link").get_attribute("href")
    response = page.request.get(pdf)
    assert response.ok and response.body().startswith(b"%PDF")
    both_widths(page, "payments")

    export = page.request.get(page.locator("#export-csv").get_attribute("href"))
    assert export.ok and export.headers["content-type"].startswith("text/csv")
    assert "Completed" not in export.text() and "COMPLETED" in export.text() and "9.00" in export.text()

    page.fill("#filter-start", "2099-01-01")
    page.locator("#apply-filters").click()
    expect(page.locator("#no-payments")).to_be_visible()
    page.fill("#filter-start", "2030-02-01")
    page.fill("#filter-end", "2030-01-01")
    page.locator("#apply-filters").click()
    expect(page.get_by_role("alert")).to_have_text("The from date must be on or before the to date.")
    page.fill("#filter-start", "")
    page.fill("#filter-end", "")
    page.locator("#apply-filters").click()
    expect(page.locator(".payment-row")).to_have_count(1)
