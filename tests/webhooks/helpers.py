"""Factories for the webhook tests: signed Stripe events, the stored rows, a sync double.

Imported by the tests (and by tests/webhooks/conftest.py's fixtures); never import a
test module or a conftest for these.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlmodel import select

from billing_app.db import session_scope
from billing_app.models import WebhookEvent
from billing_app.webhooks import eventlog

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_test_current"
OLD_SECRET = "whsec_test_previous"
_ids = itertools.count(1)


def sign(payload: str, secret: str = SECRET, timestamp: int | None = None) -> str:
    """A Stripe-Signature header, computed exactly as Stripe does: HMAC-SHA256 of "t.payload"."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def event(type_: str = "invoice.paid", customer: str | None = "cus_A", *, id: str | None = None, obj: dict | None = None) -> dict:
    """A Stripe event envelope with a data.object of the kind the type carries."""
    kind = type_.split(".")[0] if not type_.startswith("customer.subscription") else "subscription"
    kind = {"checkout": "checkout.session", "invoice": "invoice", "charge": "charge"}.get(kind, kind)
    kind = {"customer.tax_id": "tax_id", "customer.discount": "discount"}.get(type_.rsplit(".", 1)[0], kind)
    data_object = obj if obj is not None else {"id": f"{kind[:3]}_{next(_ids)}", "object": kind, "customer": customer}
    if obj is None and kind == "customer":
        data_object = {"id": customer, "object": "customer"}
    return {
        "id": id or f"evt_test_{next(_ids)}",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "type": type_,
        "data": {"object": data_object},
    }


class Poster:
    """post(event, secret=..., timestamp=..., signature=...) -> the route's response."""

    def __init__(self, client):
        self.client = client

    def __call__(self, ev: dict, secret: str = SECRET, *, timestamp: int | None = None, signature: str | None = "sign"):
        body = json.dumps(ev, indent=2)
        headers = {"Content-Type": "application/json"}
        if signature == "sign":
            headers["Stripe-Signature"] = sign(body, secret, timestamp)
        elif signature is not None:
            headers["Stripe-Signature"] = signature
        return self.client.post("/api/stripe/webhook", content=body.encode(), headers=headers)


def rows():
    with session_scope() as session:
        return list(session.exec(select(WebhookEvent).order_by(WebhookEvent.id)).all())


def row(stripe_event_id: str):
    with session_scope() as session:
        return session.exec(select(WebhookEvent).where(WebhookEvent.stripe_event_id == stripe_event_id)).one()


class CountingSync:
    """A stand-in for sync_customer that records its calls and can be told to fail."""

    def __init__(self, fail_with: Exception | None = None, delay: float = 0.0):
        self.calls: list[str] = []
        self.fail_with = fail_with
        self.delay = delay

    def __call__(self, customer_id: str):
        self.calls.append(customer_id)
        if self.delay:
            time.sleep(self.delay)
        if self.fail_with is not None:
            raise self.fail_with
        return None


def mark_processed(
    ids: Iterable[int], token: str, *, customer_id: str | None = None, covers_upto: int | None = None,
) -> int:
    """What a worker records for a successful sync of these claimed events; how many rows changed."""
    return eventlog.record(token, [eventlog.Synced(list(ids), customer_id, covers_upto)])[0]


def mark_failed(
    events: Iterable[eventlog.Claimed], token: str, error: str, *, max_attempts: int, backoff_base: float, backoff_cap: float,
) -> list[tuple[int, str]]:
    """What a worker records for a failed sync of these claimed events; (id, new state) for each row still ours."""
    policy = eventlog.RetryPolicy(max_attempts, backoff_base, backoff_cap)
    return eventlog.record(token, failed=[eventlog.Failed(list(events), error)], policy=policy)[1]


def die_in_a_sync(limit: int = 10) -> list[eventlog.Claimed]:
    """What a worker that died in its syncs leaves: a claim whose syncs had started together (`eventlog.start`),
    its lease run out long ago (another host's process: no restart frees it); the events it claimed."""
    token, claimed = eventlog.claim(limit, timedelta(minutes=-5))
    eventlog.start([c.id for c in claimed], token, alone=len({c.customer_id for c in claimed}) == 1)
    return claimed


CRASHING_WORKER = """
import os
from billing_app.webhooks.worker import Worker

def crash(customer_id):
    os._exit(17)  # the process dies mid-sync: no rollback, no mark, nothing

Worker(crash, **({"lease_seconds": float(os.environ["LEASE"])} if os.environ.get("LEASE") else {})).run_once()
"""


def run_crashing_worker(database_url: str, lease_seconds: float | None = None) -> int:
    """A worker in a process of its own that dies in its first sync; its exit code.

    Its claim stays on the rows, held by a pid that no longer runs, with a lease nobody
    renews (the worker's default unless `lease_seconds` is given).
    """
    env = {**os.environ, "DATABASE_URL": database_url, "LEASE": "" if lease_seconds is None else str(lease_seconds)}
    return subprocess.run([sys.executable, "-c", CRASHING_WORKER], cwd=ROOT, env=env, timeout=60, check=False).returncode


def aware(value: datetime | None) -> datetime | None:
    """A time read back from the database, in UTC (SQLite returns it without its zone)."""
    return value if value is None or value.tzinfo else value.replace(tzinfo=timezone.utc)


async def cancel_when(task: asyncio.Task, done: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (bounded) until `done()`, then cancel the running worker `task` and let it end."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@contextlib.contextmanager
def served_backend(stripe_env, monkeypatch, sync: Callable = None, poll_seconds: float = 0.3) -> Iterator[str]:
    """The backend's API routes under uvicorn on a loopback port, with the webhook worker as a
    lifespan task (as served), registered as the sandbox's webhook endpoint; yields its base URL."""
    import threading

    import uvicorn
    from starlette.applications import Starlette

    from billing_app.api import build_api
    from billing_app.billing.sync import sync_customer
    from billing_app.settings import get_settings
    from billing_app.webhooks.worker import run_worker
    from tests.sandbox_fixture import free_port

    port = free_port()
    endpoint = stripe_env.register_webhook(f"http://127.0.0.1:{port}/api/stripe/webhook")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", endpoint.secret)
    get_settings.cache_clear()

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        task = asyncio.create_task(run_worker(sync or sync_customer, poll_seconds=poll_seconds, on_change=None))
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
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
