"""Small steps a person takes in the browser, shared by the browser tests."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR", "screenshots"))


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
