"""Dashboard tests: the real services and views against the sandbox; some with the webhook route and
worker serving on 127.0.0.1 so that only webhooks change the mirror. Factories: helpers.py."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import pytest
import uvicorn
from starlette.applications import Starlette

from tests.dashboard.helpers import new_org
from tests.sandbox_fixture import free_port


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch):
    """Cheap argon2 parameters: these tests test no password rule."""
    from argon2 import PasswordHasher

    from billing_app.auth import passwords

    monkeypatch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def acme(stripe_env):
    return new_org()


@pytest.fixture
def webhooks(stripe_env, monkeypatch):
    """The backend's API routes under uvicorn, with the webhook worker as a lifespan task (as served)."""
    from billing_app.api import build_api
    from billing_app.billing.sync import sync_customer
    from billing_app.settings import get_settings
    from billing_app.webhooks.worker import run_worker

    port = free_port()
    endpoint = stripe_env.register_webhook(f"http://127.0.0.1:{port}/api/stripe/webhook")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", endpoint.secret)
    get_settings.cache_clear()

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        task = asyncio.create_task(run_worker(sync_customer, poll_seconds=0.2, on_change=None))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app = Starlette(routes=build_api().routes, lifespan=lifespan)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=15)
