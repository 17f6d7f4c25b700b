"""API tokens from the user menu: made, shown once, usable by a script, revoked."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.helpers import PASSWORD, new_admin, screenshot

pytestmark = pytest.mark.browser


def test_make_use_and_revoke_an_api_token(page, app_server):
    new_admin(page, app_server, org="Scripted Inc")
    page.click("#user-menu")
    page.get_by_role("menuitem", name="API tokens").click()
    page.fill("#token-name", "nightly export")
    # A session alone makes no token: the current password is asked, and a wrong one refused.
    page.fill("#token-password", "not-my-password")
    page.locator("#create-token").click()
    expect(page.get_by_role("alert")).to_contain_text("current password is not correct")
    expect(page.locator(".token-row")).to_have_count(0)
    page.fill("#token-name", "nightly export")
    page.fill("#token-password", PASSWORD)
    page.locator("#create-token").click()
    token = page.locator("#new-token").inner_text()
    assert token.startswith("bapi_")
    row = page.locator(".token-row").filter(has_text="nightly export")
    expect(row).to_contain_text(token[:12])
    screenshot(page, "api-tokens")

    api = f"{app_server.url}/api/subscriptions/my"
    answer = httpx.get(api, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text

    row.get_by_role("button", name="Revoke").click()
    expect(page.locator(".token-row")).to_have_count(0)
    refused = httpx.get(api, headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401 and refused.json()["error_code"] == "UNAUTHENTICATED"

    page.reload()
    expect(page.locator("#new-token")).to_have_count(0)  # shown once, never again
