"""The operator console in a real browser, at 1280 and 375 px: hidden from everyone else, and
replay, reconcile and read-only viewing working from the UI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid

import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from tests.browser.helpers import new_org_buys, register, screenshot, unique_email

pytestmark = pytest.mark.browser
PAGES = ["/ops", "/ops/orgs", "/ops/orgs/1", "/ops/orgs/1/view", "/ops/events", "/ops/orphans", "/ops/audit"]


def grant_operator(app, email: str) -> None:
    """The one way in: the command line, against the app's database."""
    result = subprocess.run([sys.executable, "-m", "billing_app", "grant-operator", email], capture_output=True, text=True,
                            env={**os.environ, "DATABASE_URL": app.database_url}, check=False)
    assert result.returncode == 0, result.stderr


def no_horizontal_scroll(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"] + 1, f"{page.url} is {width}px wide"


def one_h1(page) -> None:
    """As on the billing pages (test_accessibility): the title is the page's one h1, every heading inside <main>."""
    expect(page.locator(":is(h1, h2, h3, h4, h5, h6):not(main *)")).to_have_count(0)
    h1s = page.locator("main h1").all_inner_texts()
    assert len(h1s) == 1, f"{page.url}: {h1s}"


def check_page(page, name: str) -> None:
    """One h1; no horizontal scroll at 1280 and 375 px (a screenshot of each)."""
    one_h1(page)
    for width in (1280, 375):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(200)
        no_horizontal_scroll(page)
        screenshot(page, name)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_the_console_is_a_404_for_visitors_members_and_admins(page, app_server):
    for path in PAGES:  # a visitor
        page.goto(f"{app_server.url}{path}")
        expect(page.get_by_text("404: Page not found")).to_be_visible()
        expect(page.locator("#ops-nav")).to_have_count(0)
    admin = new_org_buys(page, app_server)  # an org admin with a paid plan
    for path in PAGES:
        page.goto(f"{app_server.url}{path}")
        expect(page.get_by_text("404: Page not found")).to_be_visible()
        expect(page.locator("#ops-nav")).to_have_count(0)
    assert page.locator("text=Operator console").count() == 0
    screenshot(page, f"ops-404-for-{admin.split('@')[0][:5]}")


def test_an_operator_runs_the_console(page, app_server):
    customer_email = new_org_buys(page, app_server)
    page.click("#user-menu")
    page.click("#logout")
    email = unique_email("ops")
    register(page, app_server, email=email, org="Ops Team")
    page.wait_for_selector("#whoami")
    grant_operator(app_server, email)

    # Overview: figures and the three charts.
    page.goto(f"{app_server.url}/ops")
    expect(page.locator("#ops-nav")).to_be_visible()
    expect(page.locator(".mrr-value").first).to_have_text(re.compile(r"^\$[\d,]+\.\d\d$"))
    expect(page.locator("#chart-mrr svg.recharts-surface[role=application]")).to_be_visible()
    expect(page.locator("#chart-status svg.recharts-surface[role=application]")).to_be_visible()
    expect(page.locator("#chart-churn svg.recharts-surface[role=application]")).to_be_visible()
    check_page(page, "ops-overview")

    # Reconcile every customer from the UI; the run shows its progress, then done.
    page.locator("#reconcile-all").click()
    expect(page.locator(".reconcile-run").first).to_contain_text("done", timeout=60_000)
    expect(page.get_by_text("Reconciled ")).to_be_visible()

    # Organizations: search by the admin's email, open it.
    page.goto(f"{app_server.url}/ops/orgs")
    page.fill("#org-search", customer_email)
    page.locator("#apply-org-filters").click()
    expect(page.locator(".org-row")).to_have_count(1)
    expect(page.locator(".org-row")).to_contain_text("Starter")
    check_page(page, "ops-orgs")
    page.locator(".org-row a").click()
    expect(page.locator("#org-name")).to_be_visible()
    expect(page.locator("#stripe-customer")).to_contain_text("cus_")
    expect(page.locator("#org-members")).to_contain_text(customer_email)
    # The org's payments read as its admin's payment history shows them.
    expect(page.locator("#org-payments .payment-row").first).to_contain_text("Completed")
    page.locator("#reconcile-now").click()
    expect(page.get_by_text("Reconciled with Stripe")).to_be_visible(timeout=30_000)
    check_page(page, "ops-org")

    # Open as read-only: the billing as the admin sees it, and nothing that acts.
    page.locator("#open-read-only").click()
    expect(page.locator("#read-only-banner")).to_be_visible()
    expect(page.locator("#plan-name")).to_have_text("Starter")
    expect(page.locator("#read-only-payments .payment-row").first).to_contain_text("Completed")
    expect(page.locator("#read-only button")).to_have_count(0)
    expect(page.locator("#read-only a")).to_have_count(0)
    check_page(page, "ops-read-only")

    # Events: a failed event with its error; replay it from the UI.
    event_id = f"evt_ops_{uuid.uuid4().hex[:10]}"
    with app_server.engine().begin() as connection:
        connection.execute(text(
            "INSERT INTO webhookevent (stripe_event_id, type, customer_id, received_at, state, attempts, last_error, payload) "
            "VALUES (:id, 'invoice.paid', NULL, CURRENT_TIMESTAMP, 'failed', 8, 'Stripe could not be reached', '{}')"), {"id": event_id})
    page.goto(f"{app_server.url}/ops/events")
    page.locator("#show-failed").click()
    row = page.locator(".event-row").filter(has_text=event_id)
    expect(row).to_contain_text("Stripe could not be reached")
    expect(page.locator("#count-failed")).not_to_have_text("Failed: 0")
    check_page(page, "ops-events")
    row.get_by_role("button", name=f"Replay {event_id}").click()
    expect(page.get_by_text("Queued again")).to_be_visible()
    with app_server.engine().connect() as connection:
        state = connection.execute(text("SELECT state FROM webhookevent WHERE stripe_event_id = :id"), {"id": event_id}).scalar_one()
    assert state in ("pending", "processed")

    # Orphans and the audit log.
    page.goto(f"{app_server.url}/ops/orphans")
    expect(page.get_by_role("heading", name="Orphan customers")).to_be_visible()
    check_page(page, "ops-orphans")
    page.goto(f"{app_server.url}/ops/audit")
    audit = page.locator(".audit-row")
    for action in ("replay", "impersonate read", "reconcile", "bulk reconcile", "grant operator"):
        expect(audit.filter(has_text=action).first).to_be_visible()
    check_page(page, "ops-audit")


def test_a_revoked_operator_is_shown_the_404_again(page, app_server):
    email = unique_email("exops")
    register(page, app_server, email=email, org="Ex Ops")
    page.wait_for_selector("#whoami")
    grant_operator(app_server, email)
    page.goto(f"{app_server.url}/ops/audit")
    expect(page.locator("#ops-nav")).to_be_visible()
    subprocess.run([sys.executable, "-m", "billing_app", "revoke-operator", email], check=True,
                   env={**os.environ, "DATABASE_URL": app_server.database_url}, capture_output=True)
    page.goto(f"{app_server.url}/ops/audit")
    expect(page.get_by_text("404: Page not found")).to_be_visible()
