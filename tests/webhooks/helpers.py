"""Factories for the webhook tests: signed Stripe events, the stored rows, a sync double.

Imported by the tests (and by tests/webhooks/conftest.py's fixtures); never import a
test module or a conftest for these.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from sqlmodel import select

from billing_app.db import session_scope
from billing_app.models import WebhookEvent
from billing_app.webhooks import eventlog

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
    data_object = obj if obj is not None else {"id": f"{kind[:3]}_{next(_ids)}", "object": kind, "customer": customer}
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
    ids: Iterable[int], token: datetime, *, customer_id: str | None = None, synced_from: datetime | None = None,
) -> int:
    """What a worker records for a successful sync of these claimed events; how many rows changed."""
    return eventlog.record(token, [eventlog.Synced(list(ids), customer_id, synced_from)])[0]


def mark_failed(
    events: Iterable[eventlog.Claimed], token: datetime, error: str, *, max_attempts: int, backoff_base: float, backoff_cap: float,
) -> list[tuple[int, str]]:
    """What a worker records for a failed sync of these claimed events; (id, new state) for each row still ours."""
    policy = eventlog.RetryPolicy(max_attempts, backoff_base, backoff_cap)
    return eventlog.record(token, failed=[eventlog.Failed(list(events), error)], policy=policy)[1]


def run_async(coroutine):
    """Run a coroutine to completion on its own event loop in a fresh thread.

    `asyncio.run` refuses to start while another loop runs in this thread, and the
    session's Playwright browser (sync API) keeps one running here once a browser test ran.
    """
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
