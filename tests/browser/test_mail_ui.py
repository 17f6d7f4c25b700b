"""Email in the browser: /dev/mail shows what the flows produced, and a password reset end to end."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import login, new_admin, new_org_buys, screenshot

pytestmark = pytest.mark.browser


def open_mail(page, app, subject_part: str):
    """/dev/mail until the message arrives (the mail worker passes every 2 s), then open it."""
    for _ in range(20):
        page.goto(f"{app.url}/dev/mail")
        page.wait_for_selector("#mail-list, [role=status]")
        row = page.locator(".mail-subject").filter(has_text=subject_part)
        if row.count():
            row.first.click()
            expect(page.locator("#mail-subject")).to_contain_text(subject_part)
            return
        page.wait_for_timeout(1000)
    raise AssertionError(f"no email with {subject_part!r} at /dev/mail")


def test_dev_mail_shows_the_receipt_of_a_purchase(page, app_server):
    email = new_org_buys(page, app_server)
    open_mail(page, app_server, "Receipt")
    expect(page.locator("#mail-subject")).to_contain_text("paid")
    frame = page.frame_locator("#mail-html")
    expect(frame.get_by_role("link", name="Download the invoice (PDF)")).to_be_visible()
    page.get_by_role("tab", name="Plain text").click()
    expect(page.locator("#mail-text")).to_contain_text("/pdf")
    expect(page.get_by_text(email).first).to_be_visible()
    screenshot(page, "dev-mail")


def test_password_reset_end_to_end(page, app_server, browser):
    email = new_admin(page, app_server, org="Forgetful Inc")
    # A second device stays signed in until the reset ends every session.
    other = browser.new_context()
    other_page = other.new_page()
    login(other_page, app_server, email=email)
    other_page.wait_for_selector("#whoami")

    page.click("#user-menu")
    page.get_by_role("menuitem", name="Log out").click()
    page.goto(f"{app_server.url}/login")
    page.get_by_role("link", name="Forgot your password?").click()
    page.wait_for_url("**/forgot")
    page.fill("#email", email)
    page.click("#forgot-submit")
    expect(page.get_by_role("status")).to_contain_text("on its way")

    open_mail(page, app_server, "Reset your password")
    page.get_by_role("tab", name="Plain text").click()
    text = page.locator("#mail-text").inner_text()
    link = re.search(r"(https?://\S+/reset\?token=\S+)", text).group(1)
    path = link.split("/reset", 1)[1]
    page.goto(f"{app_server.url}/reset{path}")
    page.fill("#new_password", "a-brand-new-password-9")
    page.fill("#new_password_again", "a-brand-new-password-9")
    page.click("#reset-submit")
    page.wait_for_url("**/login**")
    expect(page.get_by_role("status")).to_contain_text("password was changed")

    login(page, app_server, email=email, password="a-brand-new-password-9")
    page.wait_for_selector("#whoami")

    # The link works once.
    page.goto(f"{app_server.url}/reset{path}")
    page.fill("#new_password", "another-password-123")
    page.fill("#new_password_again", "another-password-123")
    page.click("#reset-submit")
    expect(page.get_by_role("alert")).to_contain_text("invalid or has expired")

    # The other device was signed out.
    other_page.goto(f"{app_server.url}/billing")
    other_page.wait_for_url("**/login**")
    other.close()


def test_an_admin_turns_receipts_off(page, app_server):
    new_admin(page, app_server, org="Quiet Inc")
    page.click("#user-menu")
    page.get_by_role("menuitem", name="Email notifications").click()
    page.wait_for_url("**/account/notifications")
    receipts = page.locator("#notify-receipt")
    expect(receipts).to_have_attribute("data-state", "checked")
    receipts.click()
    expect(page.get_by_role("status")).to_contain_text("Saved")
    page.reload()
    expect(page.locator("#notify-receipt")).to_have_attribute("data-state", "unchecked")
    expect(page.locator("#notify-plan_changed")).to_have_attribute("data-state", "checked")
    expect(page.get_by_text("Payment failed, Payment needs confirmation")).to_be_visible()
