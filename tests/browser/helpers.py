"""Small steps a person takes in the browser, shared by the browser tests."""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR", "screenshots"))
PASSWORD = "a-long-password-1"


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


def register(page, app, *, email: str, password: str = "a-long-password-1", org: str = "Test Org", name: str = "Tess"):
    page.goto(f"{app.url}/register")
    page.fill("#name", name)
    page.fill("#email", email)
    page.fill("#password", password)
    page.fill("#org_name", org)
    page.click("#register-submit")


def login(page, app, *, email: str, password: str = "a-long-password-1"):
    page.goto(f"{app.url}/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("#login-submit")


def screenshot(page, name: str) -> None:
    """Saved for a reviewer to look at (not committed; see .gitignore)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-{page.viewport_size['width']}.png"), full_page=True)


def pay_on_sandbox_checkout(page, card: str = "4242 4242 4242 4242") -> None:
    """Fill the sandbox's hosted Checkout form the way a customer would."""
    page.wait_for_url("**/checkout/cs_*")
    if page.locator("#address_line1").count():  # the app's Checkout asks for the billing address
        page.get_by_label("Address", exact=True).fill("1 Main Street")
        page.get_by_label("City").fill("Springfield")
        page.get_by_label("Postal code").fill("62701")
    page.fill("#card_number", card)
    page.fill("#card_expiry", "12/34")
    page.fill("#card_cvc", "123")
    page.locator("button[type=submit]").click()


def start_purchase(page, app, plan: str, button: str = "Subscribe", yearly: bool = False) -> None:
    page.goto(f"{app.url}/pricing")
    page.wait_for_selector(".plan-card")
    if yearly:
        page.get_by_role("radio", name="Yearly").click()
    page.locator(f".plan-card[data-plan={plan}]").get_by_role("button", name=button).click()


def new_admin(page, app, org: str = "Journey Co") -> str:
    email = unique_email("admin")
    register(page, app, email=email, org=org)
    page.wait_for_selector("#whoami")
    return email


def new_org_buys(page, app, plan: str = "starter", button: str = "Subscribe") -> str:
    """A new admin signs up, buys `plan` with the 4242 card and sees the confirmation."""
    from playwright.sync_api import expect

    email = new_admin(page, app)
    start_purchase(page, app, plan, button=button)
    pay_on_sandbox_checkout(page)
    expect(page.locator("#confirm-title")).to_have_text("Payment successful")
    return email


def invite(page, app, email: str) -> str:
    """As the signed-in admin, invite `email` on the members page; the link shown once."""
    from playwright.sync_api import expect

    page.goto(f"{app.url}/org/members")
    page.fill("#invite-email", email)
    page.click("#invite")
    expect(page.get_by_role("status")).to_contain_text(f"Invitation for {email} created.")
    link = page.locator("#invite-url").inner_text()
    assert re.search(r"/invite/inv_[\w-]+$", link)
    return link


def accept_as_new_user(browser, link: str, email: str, name: str) -> None:
    """The invitee, in a browser of their own: opens the link, signs up with the invited email, accepts."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        page.goto(link)
        expect(page.locator("#invite-org")).to_be_visible()
        page.locator("#invite-register").click()
        page.wait_for_url(re.compile(r"/register\?"))
        expect(page.locator("#email")).to_have_value(email)
        expect(page.locator("#org_name")).to_have_count(0)  # no organization of their own to name
        page.fill("#name", name)
        page.fill("#password", PASSWORD)
        page.click("#register-submit")
        page.wait_for_url(re.compile(r"/invite/inv_"))
        page.locator("#accept-invitation").click()
        page.wait_for_url(re.compile(r"/org/members/?$"))
        expect(page.get_by_role("cell", name=email)).to_be_visible()
    finally:
        context.close()


@contextlib.contextmanager
def signed_in_elsewhere(browser, page, app, email: str) -> Iterator:
    """`email` also signed in in a second browser (its page yielded); `page` shows /account/security
    with both sessions listed."""
    from playwright.sync_api import expect

    other = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        second = other.new_page()
        login(second, app, email=email)
        expect(second.locator("#whoami")).to_be_visible()
        page.goto(f"{app.url}/account/security")
        expect(page.locator(".session-row")).to_have_count(2)
        yield second
    finally:
        other.close()
