"""Security as a browser sees it: no token in any persisted state, the cookie, CORS, sessions."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from billing_app.serve import PROJECT_ROOT
from tests.browser.helpers import login, new_admin, screenshot, signed_in_elsewhere

pytestmark = pytest.mark.browser
PASSWORD = "a-long-password-1"


def session_cookie(page) -> dict:
    [cookie] = [c for c in page.context.cookies() if c["name"] == "billing_session"]
    return cookie


def test_no_session_or_api_token_is_in_any_persisted_state(page, app_server):
    new_admin(page, app_server, org="Persisted Co")
    cookie = session_cookie(page)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie").find(cookie["value"]) == -1  # scripts cannot read it

    page.goto(f"{app_server.url}/account/tokens")
    page.fill("#token-name", "persisted?")
    page.fill("#token-password", PASSWORD)  # minting a token asks for the current password
    page.locator("#create-token").click()
    api_token = page.locator("#new-token").inner_text()
    assert api_token.startswith("bapi_")
    for path in ("/billing", "/billing/payments", "/org/members", "/pricing", "/account/security", "/account/tokens"):
        page.goto(app_server.url + path)
        page.wait_for_selector("#whoami, #nav-org")
    expect(page.locator("#new-token")).to_have_count(0)  # shown once, dropped from the browser too
    page.wait_for_timeout(1500)  # let the state manager write its files

    states = list((PROJECT_ROOT / ".states").glob("*.pkl"))
    assert states, "the app persisted no state: nothing was checked"
    leaks = [p.name for p in states if any(secret.encode() in p.read_bytes() for secret in (cookie["value"], api_token, PASSWORD))]
    assert leaks == []


def test_only_the_apps_own_origin_may_read_api_answers_with_the_cookie(page, app_server):
    new_admin(page, app_server, org="Cors Co")
    jar = {"billing_session": session_cookie(page)["value"]}
    csv_url = f"{app_server.url}/api/billing/payments.csv"
    foreign = httpx.get(csv_url, cookies=jar, headers={"Origin": "http://127.0.0.1:9"})
    assert "access-control-allow-origin" not in foreign.headers
    preflight = httpx.options(csv_url, headers={"Origin": "http://127.0.0.1:9", "Access-Control-Request-Method": "GET"})
    assert preflight.headers.get("access-control-allow-origin") != "http://127.0.0.1:9"
    own = httpx.get(csv_url, cookies=jar, headers={"Origin": app_server.url})
    assert own.status_code == 200 and own.headers["access-control-allow-origin"] == app_server.url


def test_changing_the_password_logs_out_the_other_browser(browser, page, app_server):
    email = new_admin(page, app_server, org="Two Browsers Co")
    with signed_in_elsewhere(browser, page, app_server, email) as second:
        page.fill("#current_password", PASSWORD)
        page.fill("#new_password", "an-even-longer-password-2")
        page.fill("#new_password_again", "an-even-longer-password-2")
        page.click("#change-password")
        expect(page.get_by_role("status")).to_contain_text("Your password was changed. 1 other session ended.")
        expect(page.locator(".session-row")).to_have_count(1)
        screenshot(page, "account-security")

        second.goto(f"{app_server.url}/billing")
        expect(second).to_have_url(re.compile(r"/login\?next="))

        page.click("#logout-everywhere")
        expect(page).to_have_url(re.compile(r"/login\?reason=logged_out$"))
        page.goto(f"{app_server.url}/billing")
        expect(page).to_have_url(re.compile(r"/login\?next="))
        login(page, app_server, email=email, password="an-even-longer-password-2")
        expect(page.locator("#whoami")).to_be_visible()


def test_ending_another_browsers_session_signs_that_browser_out(browser, page, app_server):
    email = new_admin(page, app_server, org="Lost Laptop Co")
    with signed_in_elsewhere(browser, page, app_server, email) as second:
        page.locator(".session-row").get_by_role("button", name="End").click()
        expect(page.locator(".session-row")).to_have_count(1)
        expect(page.locator(".session-row")).to_contain_text("This browser")

        second.goto(f"{app_server.url}/billing")
        expect(second).to_have_url(re.compile(r"/login\?next="))
        page.goto(f"{app_server.url}/billing")  # this browser's own session goes on
        expect(page.locator("#no-subscription")).to_be_visible()
        expect(page).to_have_url(re.compile(r"/billing/?$"))


def test_a_far_future_date_on_the_payments_page_is_a_message_not_a_crash(page, app_server):
    new_admin(page, app_server, org="Far Future Co")
    page.goto(f"{app_server.url}/billing/payments")
    page.fill("#filter-end", "9999-12-31")
    page.click("#apply-filters")
    expect(page.get_by_role("alert")).to_have_text("The to date is out of range.")


def test_a_login_form_posted_from_another_site_is_refused(app_server):
    answer = httpx.post(f"{app_server.url}/api/session/login", data={"email": "admin@acme.test", "password": "demo-password-123"},
                        headers={"Origin": "https://evil.example"}, follow_redirects=False)
    assert answer.status_code == 303 and "error=origin" in answer.headers["location"]
    assert "billing_session" not in answer.headers.get("set-cookie", "")
