"""Stripe (the offline sandbox) delivers signed events over HTTP to the real route; the worker,
started by the server's lifespan as the backend starts it, runs the real sync_customer.

Nothing here calls sync_customer or the checkout confirmation: the mirror can only
change through webhooks.
"""

from __future__ import annotations

import time

import pytest
from sqlmodel import select

from billing_app.billing.checkout import start_checkout
from billing_app.billing.sync import sync_customer
from billing_app.db import session_scope
from billing_app.models import OrgSubscription, Payment, WebhookEvent
from tests.billing.helpers import make_org, period_id
from tests.webhooks.helpers import served_backend


class CountingRealSync:
    def __init__(self):
        self.calls: list[str] = []

    def __call__(self, customer_id: str):
        self.calls.append(customer_id)
        return sync_customer(customer_id)


@pytest.fixture
def backend(stripe_env, monkeypatch):
    """The backend's API routes under uvicorn on 127.0.0.1, with the worker as a lifespan task."""
    sync = CountingRealSync()
    with served_backend(stripe_env, monkeypatch, sync=sync, poll_seconds=0.5):
        yield sync

def wait_for(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def subscription_of(org_id: int):
    with session_scope() as session:
        return session.exec(select(OrgSubscription).where(OrgSubscription.org_id == org_id)).first()


def events():
    with session_scope() as session:
        return list(session.exec(select(WebhookEvent)).all())


def test_webhooks_alone_keep_the_mirror_in_step_even_with_duplicated_shuffled_deliveries(stripe_env, backend):
    stripe_env.configure(chaos=["dup", "shuffle"])
    org = make_org("Hooks Inc", "admin@hooks.example", "member@hooks.example")
    started = start_checkout(org.admin, period_id("starter", "MONTHLY"))
    assert subscription_of(org.id) is None
    stripe_env.complete_checkout(started.session_id)

    sub = wait_for(lambda: (s := subscription_of(org.id)) and s.status == "active" and s, "the subscription via webhooks")
    with session_scope() as session:
        payment = wait_for(
            lambda: session.exec(select(Payment).where(Payment.org_id == org.id, Payment.status == "COMPLETED")).first(),
            "the payment via webhooks",
        )
    assert payment.amount == 900

    # A change made in Stripe, not through the app (e.g. the Dashboard): only the webhook can tell us.
    stripe_env.client.v1.subscriptions.cancel(sub.stripe_id)
    wait_for(lambda: subscription_of(org.id).status == "canceled", "the cancellation via webhooks")

    # Every delivery (each one twice) answered 200; each event id stored once, all processed.
    log = wait_for(lambda: (d := stripe_env.deliveries())["pending"] == 0 and d, "the sandbox to finish delivering")
    attempts = log["attempts"]
    assert attempts and all(a["status"] == 200 for a in attempts)
    stored = wait_for(lambda: (rows := events()) and all(r.state == "processed" for r in rows) and rows, "all events processed")
    assert sorted(r.stripe_event_id for r in stored) == sorted({a["event"] for a in attempts})
    assert len(attempts) == 2 * len(stored)  # chaos "dup": every event arrived twice, stored once
    assert {"checkout.session.completed", "customer.subscription.created", "invoice.paid", "customer.subscription.deleted"} <= {
        r.type for r in stored
    }
    assert all(r.last_error is None for r in stored)
    # One sync per customer burst, not one per event.
    handled = [r for r in stored if r.customer_id]
    assert 1 <= len(backend.calls) < len(handled)
