"""Fixtures for the webhook tests: signed Stripe events and the real route on a real database."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time

import pytest
from sqlmodel import select

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


@pytest.fixture
def webhook_secrets(database_url, monkeypatch):
    """Two webhook secrets configured (a rotation in progress) on a fresh database."""
    from billing_app.settings import get_settings

    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", f"{OLD_SECRET},{SECRET}")
    get_settings.cache_clear()
    yield [OLD_SECRET, SECRET]
    get_settings.cache_clear()


@pytest.fixture
def client(webhook_secrets):
    """The backend's real Starlette API app (the one Reflex mounts), driven in-process."""
    from starlette.testclient import TestClient

    from billing_app.api import build_api

    with TestClient(build_api(), client=("127.0.0.1", 50000)) as test_client:
        yield test_client


class Poster:
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


@pytest.fixture
def post(client) -> Poster:
    """post(event, secret=..., timestamp=..., signature=...) -> the route's response."""
    return Poster(client)


def rows():
    from billing_app.db import session_scope
    from billing_app.models import WebhookEvent

    with session_scope() as session:
        return list(session.exec(select(WebhookEvent).order_by(WebhookEvent.id)).all())


def row(stripe_event_id: str):
    from billing_app.db import session_scope
    from billing_app.models import WebhookEvent

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
