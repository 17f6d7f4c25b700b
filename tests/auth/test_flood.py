"""A flood of logins from one client cannot stall anyone else (the figure is benchmarks/login_flood.py).

Deterministic, no timing: argon2 is held at a gate so the flood's password checks cannot finish.
If hashing ran on the event loop, or held the threads other work needs, another client's request
could not complete while the gate is closed. It does; the flood past the per-address limit is
refused at once; then the gate opens and the admitted logins finish.
"""

import asyncio
import threading
import uuid

import httpx
import pytest

from billing_app import limits, routes
from billing_app.auth import passwords
from tests.aio import run_async

ORIGIN = "http://127.0.0.1:3000"


@pytest.fixture
def gate(monkeypatch):
    opened = threading.Event()
    real_verify = passwords._verify

    def held_verify(password_hash, password):
        opened.wait(30)
        return real_verify(password_hash, password)

    monkeypatch.setattr(passwords, "_verify", held_verify)
    yield opened
    opened.set()


def test_a_login_flood_from_one_client_does_not_delay_another_clients_requests(db, gate):
    from billing_app.api import build_api
    from billing_app.settings import get_settings

    limits.reset()
    allowed = int(get_settings().rate_limit_login_ip.split("/")[0])
    flood_size = allowed + 15

    async def scenario():
        attacker = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_api(), client=("203.0.113.9", 4444)), base_url="http://b")
        bystander = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_api(), client=("192.0.2.20", 5555)), base_url="http://b")

        async def one_login():
            return await attacker.post(routes.API_SESSION_LOGIN, headers={"Origin": ORIGIN},
                                       json={"email": f"{uuid.uuid4().hex[:8]}@example.com", "password": "guess-guess-guess"})

        flood = [asyncio.create_task(one_login()) for _ in range(flood_size)]
        # Every request past the limit is answered while the gate is still closed.
        for _ in range(400):
            done = [t for t in flood if t.done()]
            if len(done) >= flood_size - allowed:
                break
            await asyncio.sleep(0.025)
        refused = [t.result() for t in flood if t.done()]
        assert len(refused) == flood_size - allowed and all(r.status_code == 429 for r in refused)
        assert all("retry-after" in r.headers for r in refused)

        # Another client, meanwhile: its requests and its threaded work are served at once.
        health = await asyncio.wait_for(bystander.get(routes.API_HEALTH), timeout=20)
        assert health.status_code == 200
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "page work done"), timeout=20) == "page work done"
        assert not gate.is_set() and sum(not t.done() for t in flood) == allowed  # the flood is still waiting

        gate.set()
        answers = await asyncio.wait_for(asyncio.gather(*flood), timeout=120)
        await attacker.aclose()
        await bystander.aclose()
        return answers

    answers = run_async(scenario())
    codes = sorted(a.status_code for a in answers)
    assert codes.count(401) == allowed and codes.count(429) == flood_size - allowed
    limits.reset()


def test_password_hashing_refuses_to_wait_on_the_event_loop():
    async def on_the_loop():
        passwords.hash_password("a-long-password-1")

    with pytest.raises(RuntimeError, match="event loop"):
        run_async(on_the_loop())


def test_the_hashing_pool_is_bounded_and_refuses_when_full(monkeypatch):
    gate = threading.Event()
    pool = passwords._Pool(workers=1, queue=1)
    futures = [pool.submit(gate.wait, 10), pool.submit(gate.wait, 10)]
    with pytest.raises(passwords.RateLimited):
        pool.submit(gate.wait, 10)  # one running, one waiting: the third is refused, not queued
    gate.set()
    assert all(f.result(10) for f in futures)
    assert pool.submit(lambda: "room again").result(10) == "room again"
