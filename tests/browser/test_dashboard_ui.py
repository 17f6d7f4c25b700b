"""The billing dashboard a finance person reads and the cancellation flow, in a real browser.

The flow's three outcomes (paused, offer accepted, canceled), the billing details form (Stripe's
refusals in words), the promotion code at Checkout on the next invoice, and the CANCELLED entry in
the payment history. Controls are found by their labels, as a person (or a screen reader) finds them.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from tests.browser.helpers import (
    new_admin,
    pay_on_sandbox_checkout,
    register,
    screenshot,
    start_purchase,
    unique_email,
)

pytestmark = pytest.mark.browser


def _buy_with_code(page, app, code: str = "") -> None:
    new_admin(page, app, org="Dashboard Co")
    start_purchase(page, app, "starter")
    page.wait_for_url("**/checkout/cs_*")
    if code:
        page.get_by_label("Promotion code").fill(code)
    pay_on_sandbox_checkout(page)
    expect(page.locator("#confirm-title")).to_have_text("Payment successful")
    page.goto(f"{app.url}/billing")
    expect(page.locator("#status-badge")).to_have_text("Active")


def _open_flow_and_give_a_reason(page) -> None:
    page.locator("#cancel-subscription").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Why are you canceling?").select_option("too_expensive")
    dialog.get_by_label("Anything else you'd like to tell us? (optional)").fill("Budget cuts")
    dialog.get_by_role("button", name="Continue").click()


def test_the_dashboard_shows_what_a_finance_person_asks(page, app_server):
    _buy_with_code(page, app_server, "LAUNCH10")
    expect(page.locator("#card")).to_have_text("Visa •••• 4242")
    expect(page.locator("#payment-method")).to_contain_text("Expires 12/2034")
    # The promotion code at Checkout shows on the next invoice.
    expect(page.locator("#next-amount")).to_have_text("$8.10")
    expect(page.locator("#next-details")).to_contain_text("Discount −$0.90")
    expect(page.locator("#discounts")).to_contain_text(re.compile(r"10% off until [A-Z][a-z]{2} \d{4}"))
    expect(page.locator("#billing-details")).to_contain_text("1 Main Street")
    expect(page.locator("#recent-invoices .invoice-row")).to_have_count(1)
    expect(page.locator("#recent-invoices")).to_contain_text("$8.10")
    for width in (1280, 375):
        page.set_viewport_size({"width": width, "height": 900})
        screenshot(page, "dashboard-admin")
    page.set_viewport_size({"width": 1280, "height": 900})

    # Billing details, edited in the app; Stripe's refusals in words.
    page.locator("#edit-details").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Billing email").fill("finance@dashboard.example")
    dialog.get_by_label("Company name").fill("Dashboard Co GmbH")
    dialog.get_by_label("Country (2-letter code)").fill("DE")
    dialog.get_by_role("button", name="Save").click()
    expect(page.locator("#billing-email")).to_have_text("finance@dashboard.example")
    expect(page.locator("#company-name")).to_have_text("Dashboard Co GmbH")
    page.locator("#edit-details").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Kind of tax ID").select_option("eu_vat")
    dialog.get_by_label("Tax ID", exact=True).fill("DE12")
    dialog.get_by_role("button", name="Add tax ID").click()
    expect(dialog.get_by_role("alert")).to_have_text(re.compile(r"^DE12 is not a valid EU VAT number\."))
    dialog.get_by_label("Tax ID", exact=True).fill("DE123456789")
    dialog.get_by_role("button", name="Add tax ID").click()
    expect(dialog.get_by_role("button", name="Remove tax ID EU VAT DE123456789")).to_be_visible()
    screenshot(page, "dashboard-details-dialog")
    page.keyboard.press("Escape")
    expect(page.locator("#tax-ids")).to_contain_text("EU VAT DE123456789 (verified)")


def test_cancel_flow_pause_then_offer_then_cancel(page, app_server):
    _buy_with_code(page, app_server)

    # 1. Paused instead: until when, and resumed early.
    _open_flow_and_give_a_reason(page)
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name="Pause instead?")).to_be_visible()
    dialog.get_by_label("Pause for").select_option("2")
    screenshot(page, "cancel-flow-pause")
    dialog.get_by_role("button", name="Pause instead").click()
    expect(page.locator("#paused-banner")).to_contain_text(re.compile(r"Paused until [A-Z][a-z]{2} \d{1,2}, \d{4}"))
    expect(page.locator("#status-badge")).to_have_text("Active")
    page.get_by_role("button", name="Resume now").click()
    expect(page.locator("#paused-banner")).to_have_count(0)

    # 2. The offer, accepted: nothing is canceled.
    _open_flow_and_give_a_reason(page)
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="No thanks, continue").click()
    expect(dialog.locator("#retention-offer")).to_contain_text("20% off for 3 months")
    screenshot(page, "cancel-flow-offer")
    dialog.get_by_role("button", name="Accept offer").click()
    expect(page.get_by_role("status")).to_contain_text("20% off for 3 months is applied")
    expect(page.locator("#discounts")).to_contain_text(re.compile(r"20% off until "))
    expect(page.locator("#status-badge")).to_have_text("Active")

    # 3. Canceled: the offer is not made twice; at the period end by default.
    _open_flow_and_give_a_reason(page)
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="No thanks, continue").click()
    expect(dialog.get_by_role("heading", name="Confirm the cancellation")).to_be_visible()
    expect(dialog.get_by_label(re.compile("At the end of the period"))).to_be_checked()
    screenshot(page, "cancel-flow-confirm")
    dialog.get_by_role("button", name="Cancel subscription").click()
    expect(page.locator("#status-badge")).to_have_text(re.compile(r"^Cancels on [A-Z][a-z]{2} \d{1,2}, \d{4}$"))

    page.goto(f"{app_server.url}/billing/payments")
    cancelled = page.locator(".payment-row").filter(has=page.get_by_text("Canceled", exact=True))
    expect(cancelled).to_have_count(1)
    expect(cancelled).to_contain_text(re.compile(r"Starter \(monthly\) — canceled at period end on [A-Z][a-z]{2} \d{1,2}, \d{4}"))


def test_cancel_now(page, app_server):
    _buy_with_code(page, app_server)
    _open_flow_and_give_a_reason(page)
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="No thanks, continue").click()  # no pause
    expect(dialog.locator("#retention-offer")).to_be_visible()
    dialog.get_by_role("button", name="No thanks, continue").click()  # no offer
    dialog.get_by_label(re.compile(r"^\s*Now")).check()
    dialog.get_by_role("button", name="Cancel subscription").click()
    expect(page.locator("#status-badge")).to_have_text("Canceled")
    page.goto(f"{app_server.url}/billing/payments")
    expect(page.locator(".payment-row").filter(has=page.get_by_text("Canceled", exact=True))).to_contain_text("Starter (monthly) — canceled now")


def test_keyboard_focus_leaving_the_cancel_flow_goes_back_to_its_button_or_to_the_outcome(page, app_server):
    _buy_with_code(page, app_server)
    opener = page.locator("#cancel-subscription")
    opener.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("Why are you canceling?")).to_be_visible()
    page.keyboard.press("Escape")  # kept: back on the button that opened the flow
    expect(dialog).to_have_count(0)
    expect(opener).to_be_focused()

    page.keyboard.press("Enter")
    dialog.get_by_label("Why are you canceling?").select_option("too_expensive")
    for button in ("#cancel-continue", "#skip-pause", "#decline-offer", "#confirm-cancel"):
        dialog.locator(button).focus()
        page.keyboard.press("Enter")
    expect(page.locator("#reactivate")).to_be_visible()
    # The button is gone (Reactivate instead): focus is on what happened, not dropped to <body>.
    expect(page.get_by_role("status").filter(has_text="will end at the end of the period")).to_be_focused()


def _closing_returns_focus(page, opener, close_button: str) -> None:
    """Open a dialog from `opener` with the keyboard and close it with Escape, then with its
    `close_button`: each time keyboard focus is back on `opener`, not dropped to <body>."""
    dialog = page.get_by_role("dialog")
    for close in ("Escape", close_button):
        opener.focus()
        page.keyboard.press("Enter")
        expect(dialog).to_be_visible()
        if close != "Escape":
            dialog.get_by_role("button", name=close, exact=True).focus()
        page.keyboard.press("Escape" if close == "Escape" else "Enter")
        expect(dialog).to_have_count(0)
        expect(opener).to_be_focused()


def test_keyboard_focus_leaving_the_other_billing_dialogs_goes_back_to_their_buttons(page, app_server):
    # Opened by plain buttons (no Radix trigger), they dropped focus to <body> as the flow's did.
    # (Leave and Remove on the members page are Radix triggers: Radix refocuses them itself.)
    _buy_with_code(page, app_server)
    _closing_returns_focus(page, page.locator("#change-plan"), "Keep current plan")
    _closing_returns_focus(page, page.locator("#edit-details"), "Close")


def test_a_member_sees_plan_and_status_and_no_payments_link(page, browser, app_server):
    _buy_with_code(page, app_server)
    member_email = unique_email("member")
    other = browser.new_context(viewport={"width": 1280, "height": 900})
    member = other.new_page()
    register(member, app_server, email=member_email, org="Member's own")
    member.wait_for_selector("#whoami")
    with app_server.engine().begin() as db:  # an admin added them; they switched to the paying org
        org_id = db.execute(text("SELECT id FROM organization WHERE name = 'Dashboard Co' ORDER BY id DESC")).first()[0]
        user_id = db.execute(text("SELECT id FROM \"user\" WHERE email = :e"), {"e": member_email}).scalar_one()
        db.execute(text("INSERT INTO membership (user_id, org_id, role, created_at) VALUES (:u, :o, 'member', CURRENT_TIMESTAMP)"),
                   {"u": user_id, "o": org_id})
        db.execute(text("UPDATE authsession SET current_org_id = :o WHERE user_id = :u"), {"o": org_id, "u": user_id})
    member.goto(f"{app_server.url}/billing")
    expect(member.locator("#plan-name")).to_have_text("Starter")
    expect(member.locator("#status-badge")).to_have_text("Active")
    for hidden in ("#payment-method", "#billing-details", "#next-invoice", "#cancel-subscription", "#manage-billing"):
        expect(member.locator(hidden)).to_have_count(0)
    expect(member.get_by_text("Next renewal")).to_have_count(0)
    expect(member.get_by_role("link", name="Payments")).to_have_count(0)
    screenshot(member, "dashboard-member")
    other.close()
