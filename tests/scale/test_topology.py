"""`serve --prod --backends 2 --workers 1` on real PostgreSQL and Redis: live push from the worker
process to the backend holding the page, shared rate limits, a backend killed with -9, Redis taken
away (issue #17)."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from billing_app import serve
from tests.browser.helpers import new_org_buys

pytestmark = pytest.mark.browser
CANCELS_ON = re.compile(r"^Cancels on ")


def _subscription_id(topology) -> str:
    with topology.engine().connect() as connection:
        return connection.execute(text("SELECT stripe_id FROM orgsubscription ORDER BY id DESC LIMIT 1")).scalar_one()


def _deliver_webhooks_to(topology, url: str) -> None:
    """Point the sandbox's webhook endpoint at one backend directly (not through the balancer)."""
    topology.stripe.v1.webhook_endpoints.update("we_cli", params={"url": url + "/api/stripe/webhook"})


def _set_canceling(topology, canceling: bool) -> None:
    topology.stripe.v1.subscriptions.update(_subscription_id(topology), params={"cancel_at_period_end": canceling})


def _wait_mirrored_canceling(topology, canceling: bool) -> None:
    query = text("SELECT cancel_at_period_end FROM orgsubscription WHERE stripe_id = :id")
    stripe_id = _subscription_id(topology)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with topology.engine().connect() as connection:
            if connection.execute(query, {"id": stripe_id}).scalar_one() == canceling:
                return
        time.sleep(0.5)
    raise AssertionError(f"the mirror never showed cancel_at_period_end={canceling}")


def _unprocessed_events(topology) -> int:
    with topology.engine().connect() as connection:
        return connection.execute(text("SELECT count(*) FROM webhookevent WHERE state <> 'processed'")).scalar_one()


@pytest.fixture
def billing_page(page, topology):
    """A new org that bought Starter, its admin's /billing page open through the balancer."""
    new_org_buys(page, topology)
    page.goto(f"{topology.url}/billing")
    expect(page.locator("#status-badge")).to_have_text("Active")
    yield page
    _deliver_webhooks_to(topology, topology.url)


def test_a_webhook_at_either_backend_updates_a_page_held_by_the_other(billing_page, topology):
    # The page's socket is on one of the two backends; each webhook goes to one backend directly, so
    # one of the two changes is received by the backend the page is not on; the worker process syncs
    # both and announces them on Redis, and the backend holding the page refreshes it.
    _deliver_webhooks_to(topology, topology.backend_url(0))
    _set_canceling(topology, True)
    expect(billing_page.locator("#status-badge")).to_have_text(CANCELS_ON, timeout=20_000)

    _deliver_webhooks_to(topology, topology.backend_url(1))
    _set_canceling(topology, False)
    expect(billing_page.locator("#status-badge")).to_have_text("Active", timeout=20_000)


def test_the_login_rate_limit_is_counted_across_backends(topology):
    # RATE_LIMIT_LOGIN_EMAIL is 3/minute here: three failures spread over both backends use it up,
    # so the fourth is refused whichever backend takes it (one process would have counted 1 or 2).
    email = "limit-shared@example.com"
    statuses = []
    for index in (0, 1, 0, 1):
        response = httpx.post(f"{topology.backend_url(index)}/api/session/login", timeout=20,
                              json={"email": email, "password": "wrong-password-123"}, headers={"Origin": topology.url})
        statuses.append(response.status_code)
    assert statuses == [401, 401, 401, 429], statuses
    assert response.json()["error_code"] == "RATE_LIMITED"


def test_ready_checks_the_database_and_redis(topology):
    response = httpx.get(f"{topology.url}/api/ready", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}


def test_kill_9_of_a_backend_mid_flight_loses_nothing(billing_page, topology):
    # Webhooks through the balancer; a burst of changes is on its way when a backend dies. Killing
    # each backend in turn means the page's own backend dies once: its socket reconnects to the other.
    for victim in (0, 1):
        for canceling in (True, False, True):
            _set_canceling(topology, canceling)
        topology.kill_backend(victim)
        expect(billing_page.locator("#status-badge")).to_have_text(CANCELS_ON, timeout=30_000)
        _set_canceling(topology, False)
        expect(billing_page.locator("#status-badge")).to_have_text("Active", timeout=30_000)
        topology.restart_backend(victim)
    # Every delivery the sandbox made was stored and processed (a failed one was retried).
    deliveries = httpx.get(f"{topology.sandbox_url}/_sandbox/deliveries", timeout=10,
                           headers={"Authorization": f"Bearer {serve.SANDBOX_KEY}"}).json()
    assert deliveries["pending"] == 0, deliveries
    assert _unprocessed_events(topology) == 0


def _wait_ready(topology, status: int) -> httpx.Response:
    for _ in range(60):
        response = httpx.get(f"{topology.url}/api/ready", timeout=10)
        if response.status_code == status:
            return response
        time.sleep(0.5)
    raise AssertionError(f"/api/ready stayed {response.status_code}: {response.text}")


def test_with_redis_down_pages_keep_working_and_ready_says_why(billing_page, topology):
    topology.redis.cut()
    try:
        refused = _wait_ready(topology, 503).json()
        assert refused["success"] is False and refused["error_code"] == "NOT_READY"
        assert "Redis does not answer" in refused["message"] and "database" not in refused["message"]

        # The page loads and handles events on the backend it reaches (its state in that process's memory).
        billing_page.reload()
        expect(billing_page.locator("#status-badge")).to_have_text("Active")
        billing_page.locator("#cancel-subscription").click()
        expect(billing_page.get_by_role("dialog").get_by_label("Why are you canceling?")).to_be_visible()
        billing_page.keyboard.press("Escape")

        # A change at Stripe is stored and synced; other processes' pages see it at their next load.
        # (Wait for the mirror itself: "no unprocessed event" also holds before the webhook arrives.)
        _set_canceling(topology, True)
        _wait_mirrored_canceling(topology, True)
        billing_page.reload()
        expect(billing_page.locator("#status-badge")).to_have_text(CANCELS_ON)
    finally:
        topology.redis.restore()
    _wait_ready(topology, 200)
    # Redis is back: pushes reach the page again (the subscribers reconnect by themselves).
    billing_page.reload()
    expect(billing_page.locator("#status-badge")).to_have_text(CANCELS_ON)
    _set_canceling(topology, False)
    expect(billing_page.locator("#status-badge")).to_have_text("Active", timeout=30_000)
