"""No double charge through the REST API: concurrent buys over real HTTP, and keep-current-plan."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import anyio
import httpx
import pytest
import uvicorn

from billing_app.auth import invitations
from billing_app.billing import checkout, portal, turns
from billing_app.billing.customers import customer_id_for
from tests.api.helpers import backend_app, buy, err, ok
from tests.billing.helpers import period_id
from tests.sandbox_fixture import free_port


@pytest.fixture
def live_api(stripe_env):
    """The backend's API served by uvicorn on a loopback port, so requests really run at once."""
    yield from _served(backend_app())


@pytest.fixture
def three_thread_api(stripe_env):
    """The same, with a server thread pool of 3 (the real one has 40): what a burst takes shows."""
    app = backend_app()

    async def with_three_threads(scope, receive, send):
        anyio.to_thread.current_default_thread_limiter().total_tokens = 3
        await app(scope, receive, send)

    yield from _served(with_three_threads)


def _served(app):
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_twenty_concurrent_buys_make_one_live_subscription(live_api, tokens, stripe_env):
    body = {"subscriptionPeriodId": period_id("starter", "MONTHLY")}

    def post(_):
        return httpx.post(f"{live_api}/api/subscriptions/buy", headers=tokens.admin, json=body, timeout=60)

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(post, range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    session_ids = {r.json()["sessionId"] for r in responses}
    assert len(session_ids) == 1  # a double click, or twenty, is one checkout

    for session_id in session_ids:
        stripe_env.complete_checkout(session_id)
    customer = customer_id_for(tokens.org.id)
    subs = stripe_env.client.v1.subscriptions.list(params={"customer": customer, "status": "all"}).data
    assert [s.status for s in subs] == ["active"]
    response = httpx.post(f"{live_api}/api/subscriptions/buy", headers=tokens.admin,
                          json={"subscriptionPeriodId": period_id("business", "ALL_TIME")}, timeout=60)
    err(response, 409, "SUBSCRIPTION_ALREADY_ACTIVE")
    mine = ok(httpx.get(f"{live_api}/api/subscriptions/my", headers=tokens.admin))["subscription"]
    assert mine["status"] == "active" and mine["planKey"] == "starter"


BURSTS = {
    # What the first request of the burst is slow at, inside the org's claim; the request's body.
    "buy": (checkout, "ensure_customer", lambda n: {"subscriptionPeriodId": period_id("starter", "MONTHLY")}),
    "org/invitations": (invitations, "refuse_invitation", lambda n: {"email": f"new{n}@acme.example"}),
}


@pytest.mark.parametrize("route", ["buy", "org/invitations"])
def test_a_burst_for_one_org_leaves_threads_for_other_orgs(three_thread_api, tokens, stripe_env, monkeypatch, route):
    # The burst's first request is slow inside the org's claim; the others wait for their turn on
    # the event loop. Were each to wait for the claim in a server thread, the burst would take all
    # three threads and another org's request would wait for the slow one.
    module, name, body = BURSTS[route]
    slow, release = threading.Event(), threading.Event()
    original = getattr(module, name)

    def slow_first(*args, **kwargs):
        slow.set()
        release.wait(30)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, slow_first)
    path = f"{three_thread_api}/api/{'subscriptions/buy' if route == 'buy' else route}"

    def post(n):
        return httpx.post(path, headers=tokens.admin, json=body(n), timeout=60)

    with ThreadPoolExecutor(6) as pool:
        burst = [pool.submit(post, n) for n in range(6)]
        try:
            assert slow.wait(30)
            time.sleep(0.5)  # the rest of the burst arrives and waits
            other = httpx.get(f"{three_thread_api}/api/subscriptions/my", headers=tokens.other_admin, timeout=5)
            assert other.status_code == 200
        finally:
            release.set()
        responses = [f.result() for f in burst]
    assert all(r.status_code < 500 for r in responses), [r.text for r in responses]
    if route == "buy":
        assert [r.status_code for r in responses] == [200] * 6
        assert len({r.json()["sessionId"] for r in responses}) == 1


def test_one_slow_action_does_not_hold_up_the_orgs_next_one(three_thread_api, tokens, stripe_env, monkeypatch):
    # An org has ACTIONS_AT_ONCE turns: while one admin's portal call hangs at Stripe, another
    # admin's cancel is answered (nothing to cancel) instead of waiting out the turn.
    monkeypatch.setattr(turns, "WAIT_SECONDS", 1.0)
    hanging, release = threading.Event(), threading.Event()

    def hung_portal(actor, flow=None):
        hanging.set()
        release.wait(30)
        return "https://portal.example"

    monkeypatch.setattr(portal, "portal_url", hung_portal)
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(httpx.post, f"{three_thread_api}/api/billing/portal", headers=tokens.admin, timeout=60)
        try:
            assert hanging.wait(30)
            err(httpx.post(f"{three_thread_api}/api/subscriptions/cancel", headers=tokens.super_admin, timeout=10),
                404, "SUBSCRIPTION_NOT_FOUND")
        finally:
            release.set()
        assert slow.result().status_code == 200


def test_lifetime_then_yearly_in_quick_succession_is_refused(client, tokens, stripe_env):
    started = ok(client.post("/api/subscriptions/buy", headers=tokens.admin, json={"subscriptionPeriodId": period_id("business", "ALL_TIME")}))
    stripe_env.complete_checkout(started["sessionId"])  # paid; the webhook has not landed
    err(client.post("/api/subscriptions/buy", headers=tokens.admin, json={"subscriptionPeriodId": period_id("business", "YEARLY")}),
        409, "SUBSCRIPTION_ALREADY_ACTIVE")


def test_keep_current_plan_drops_a_scheduled_downgrade(client, tokens, stripe_env):
    buy(client, tokens, stripe_env, plan="business")
    err(client.post("/api/subscriptions/keep-current-plan", headers=tokens.admin), 409, "NO_SCHEDULED_CHANGE")
    changed = ok(client.post("/api/subscriptions/change", headers=tokens.admin, json={"subscriptionPeriodId": period_id("starter", "MONTHLY")}))
    assert changed["subscription"]["scheduledChange"]["planKey"] == "starter"
    err(client.post("/api/subscriptions/keep-current-plan", headers=tokens.member), 403, "FORBIDDEN")
    kept = ok(client.post("/api/subscriptions/keep-current-plan", headers=tokens.admin))["subscription"]
    assert kept["scheduledChange"] is None and kept["planKey"] == "business"
    assert stripe_env.client.v1.subscriptions.retrieve(kept["id"]).schedule is None


def test_a_downgrade_on_a_subscription_set_to_cancel_is_a_409(client, tokens, stripe_env):
    buy(client, tokens, stripe_env, plan="business")
    ok(client.post("/api/subscriptions/cancel", headers=tokens.admin))
    err(client.post("/api/subscriptions/change", headers=tokens.admin, json={"subscriptionPeriodId": period_id("starter", "MONTHLY")}),
        409, "SUBSCRIPTION_CANCELING")
    ok(client.post("/api/subscriptions/reactivate", headers=tokens.admin))
