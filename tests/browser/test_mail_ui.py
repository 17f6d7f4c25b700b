"""Email in the browser: what the flows produced, and a password reset end to end.

The browser tests run the production build, which has no /dev/mail (development only: it asks
nobody who they are), so a test reads the outbox table the mail worker keeps the messages in.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from tests.browser.helpers import login, new_admin, new_org_buys, screenshot

pytestmark = pytest.mark.browser


def read_mail(app, to: str, subject_part: str) -> dict:
    """The newest message to `to` whose subject has `subject_part`, from the outbox (the mail worker passes every 2 s)."""
    deadline = time.monotonic() + 20
    with app.engine().connect() as connection:
        while time.monotonic() < deadline:
            row = connection.execute(
                text("SELECT subject, recipients, text_body, html_body FROM notification"
                     " WHERE subject LIKE :subject AND recipients LIKE :to ORDER BY id DESC"),
                {"subject": f"%{subject_part}%", "to": f"%{to}%"},
            ).mappings().first()
            if row is not None:
                return dict(row)
            connection.rollback()
            time.sleep(0.5)
    raise AssertionError(f"no email to {to} with {subject_part!r} in the outbox")


def test_a_production_build_has_no_dev_mailbox(page, app_server):
    page.goto(f"{app_server.url}/dev/mail")
    expect(page.locator("#not-found")).to_contain_text("404: Page not found")
    expect(page.locator("#mail-list")).to_have_count(0)


def test_the_receipt_of_a_purchase_is_mailed(page, app_server):
    email = new_org_buys(page, app_server)
    mail = read_mail(app_server, email, "Receipt")
    assert "paid" in mail["subject"]
    page.set_content(mail["html_body"])  # the HTML part, as a mail client shows it
    expect(page.get_by_role("link", name="Download the invoice (PDF)")).to_be_visible()
    assert "/pdf" in mail["text_body"]
    screenshot(page, "receipt-mail")


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

    body = read_mail(app_server, email, "Reset your password")["text_body"]
    link = re.search(r"(https?://\S+/reset\?token=\S+)", body).group(1)
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
