"""axe-core (axe-playwright-python) on every page of the app, at 1280 and 375 px: no serious or
critical violation. Dialogs are checked open too (change plan, the cancellation flow's steps, billing details)."""

from __future__ import annotations

import re

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.browser.helpers import invite, new_admin, pay_on_sandbox_checkout, screenshot, start_purchase, unique_email

pytestmark = pytest.mark.browser
WIDTHS = (1280, 375)
BLOCKING = ("serious", "critical")
_axe = Axe()


def _violations(page) -> list[str]:
    results = _axe.run(page)
    found = []
    for v in results.response["violations"]:
        if v.get("impact") in BLOCKING:
            targets = ", ".join(" ".join(map(str, n["target"])) for n in v["nodes"][:3])
            found.append(f"{v['id']} ({v['impact']}): {v['help']} — {targets}")
    return found


def audit(page, name: str, problems: list[str], ready=None) -> None:
    """Check the page as it is, at each width (each width rendered and settled first)."""
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(200)
        if ready is not None:
            expect(ready).to_be_visible()
        problems += [f"{name} @{width}px: {p}" for p in _violations(page)]
        screenshot(page, f"a11y-{name}")
    page.set_viewport_size({"width": 1280, "height": 900})


def test_every_page_has_no_serious_or_critical_violation(page, app_server):
    problems: list[str] = []
    url = app_server.url
    for path, ready in (("/login", "#login-submit"), ("/register", "#register-submit"), ("/pricing", ".plan-card")):
        page.goto(url + path)
        audit(page, f"signed-out{path.replace('/', '-')}", problems, page.locator(ready).first)

    new_admin(page, app_server, org="Accessible Co")
    audit(page, "home", problems, page.locator("#whoami"))
    page.goto(url + "/billing")
    audit(page, "billing-empty", problems, page.locator("#no-subscription"))
    start_purchase(page, app_server, "starter")
    page.wait_for_url("**/checkout/cs_*")
    pay_on_sandbox_checkout(page)
    expect(page.locator("#confirm-title")).to_have_text("Payment successful")
    audit(page, "confirm", problems, page.locator("#confirm-title"))

    page.goto(url + "/billing")
    audit(page, "billing", problems, page.locator("#payment-method"))
    page.locator("#change-plan").click()
    audit(page, "change-plan-dialog", problems, page.get_by_role("dialog").get_by_role("combobox", name="New plan"))
    page.keyboard.press("Escape")
    page.locator("#edit-details").click()
    audit(page, "billing-details-dialog", problems, page.get_by_role("dialog"))
    page.keyboard.press("Escape")
    page.locator("#cancel-subscription").click()
    dialog = page.get_by_role("dialog")
    audit(page, "cancel-reason", problems, dialog.get_by_label("Why are you canceling?"))
    dialog.get_by_label("Why are you canceling?").select_option("unused")
    dialog.get_by_role("button", name="Continue").click()
    audit(page, "cancel-pause", problems, dialog.get_by_label("Pause for"))
    dialog.locator("#skip-pause").click()
    audit(page, "cancel-offer", problems, dialog.locator("#retention-offer"))
    dialog.locator("#decline-offer").click()
    audit(page, "cancel-confirm", problems, dialog.get_by_role("button", name="Cancel subscription"))
    page.keyboard.press("Escape")

    for path, ready in (("/pricing", ".plan-card"), ("/billing/payments", ".payment-row"), ("/account/tokens", "h1, h2"),
                        ("/account/security", "h1, h2"), ("/org/members", "h1, h2")):
        page.goto(url + path)
        audit(page, path.strip("/").replace("/", "-"), problems, page.locator(ready).first)

    assert not problems, "axe found serious or critical violations:\n" + "\n".join(problems)


def test_focus_is_visible_on_the_dashboard(page, app_server):
    """Tabbing to a control draws an outline a sighted keyboard user can follow."""
    new_admin(page, app_server, org="Focus Co")
    page.goto(app_server.url + "/billing")
    expect(page.locator("#no-subscription")).to_be_visible()
    link = page.get_by_role("link", name="See plans")
    outline = ""
    # Up to three tries: when the page's state arrives Reflex may render the link anew, and a
    # fresh element has no focus; a missing focus style still fails all three.
    for _ in range(3):
        link.focus()
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Tab")
        outline = link.evaluate(
            "e => document.activeElement === e"
            " ? getComputedStyle(e).outlineStyle + ' ' + getComputedStyle(e).outlineWidth : 'not focused'"
        )
        if outline != "not focused":
            break
        page.wait_for_timeout(300)
    assert re.match(r"^(solid|auto) [1-9]", outline), outline


def test_each_page_has_one_main_landmark_and_its_title_is_the_one_h1(page, app_server):
    """A screen reader jumps to <main>, past the navbar, and lists the headings: the navbar's app
    name is not one, each page's title is its one h1 (its sections' and cards' titles sit under it),
    and on /billing the plan's name sits under the page's title."""
    not_one_h1: list[str] = []

    def check(path: str, ready: str) -> None:
        """The page once its load has shown its content (sections shown only then have headings too)."""
        page.goto(app_server.url + path)
        expect(page.locator(ready).first).to_be_visible()
        expect(page.locator("main")).to_have_count(1)
        expect(page.locator(":is(h1, h2, h3, h4, h5, h6):not(main *)")).to_have_count(0)
        if page.locator("main h1").count() != 1:
            not_one_h1.append(f"{path}: {page.locator('h1').all_inner_texts()}")

    new_admin(page, app_server)
    check("/billing", "#no-subscription")  # nothing bought yet
    start_purchase(page, app_server, "starter")
    pay_on_sandbox_checkout(page)
    expect(page.locator("#confirm-title")).to_have_text("Payment successful")
    for path, ready in (("/", "#whoami"), ("/billing", "#plan-name"), ("/org/members", ".member-row"),
                        ("/billing/payments", ".payment-row"), ("/pricing", ".plan-card"), ("/account/security", ".session-row"),
                        ("/account/notifications", "[role=switch]"), ("/account/tokens", "#create-token")):
        check(path, ready)
    assert not not_one_h1, "pages without exactly one h1:\n" + "\n".join(not_one_h1)
    page.goto(app_server.url + "/billing")
    expect(page.get_by_role("heading", level=2, name="Starter")).to_be_visible()
    assert page.locator("h1").all_inner_texts() == ["Billing"]


def test_a_secret_shown_once_has_no_serious_or_critical_violation(page, app_server):
    """The new invitation's link (the API token's box is the same `shown_once`): its text, the link
    and the Copy button readable on the callout's tint."""
    new_admin(page, app_server, org="Contrast Co")
    invite(page, app_server, unique_email("contrast"))
    problems: list[str] = []
    audit(page, "members-invitation-link", problems, page.locator("#invite-url"))
    assert not problems, "axe found serious or critical violations:\n" + "\n".join(problems)
