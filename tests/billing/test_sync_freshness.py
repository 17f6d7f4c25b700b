"""A sync that read Stripe earlier never writes over one that read it later.

The webhook worker keeps one sync per customer at a time, but the confirmation page,
`resync_after_change` and the bulk reconcile sync the same customers beside it: one that read
Stripe before a change and commits after the webhook's sync of that change must write nothing,
or the mirror reverts while the event is already processed.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlmodel import select

from billing_app.billing import sync
from billing_app.billing.checkout import checkout_status
from billing_app.db import session_scope
from billing_app.models import OrgSubscription, utcnow
from billing_app.ops import reconcile
from billing_app.webhooks import eventlog
from billing_app.webhooks.worker import Worker
from tests.billing.helpers import buy
from tests.webhooks.helpers import event


def _mirror(org_id):
    with session_scope() as s:
        return s.exec(select(OrgSubscription).where(OrgSubscription.org_id == org_id)).one()


def _customer_of(stripe_env, sub):
    return stripe_env.client.v1.subscriptions.retrieve(sub.stripe_id).customer


def test_a_confirmation_page_that_read_before_a_change_does_not_revert_the_webhooks_sync(org, stripe_env, monkeypatch):
    started, _ = buy(org, sandbox=stripe_env)
    sub = _mirror(org.id)
    customer = _customer_of(stripe_env, sub)
    assert sub.cancel_at_period_end is False

    # The confirmation page (reloaded) syncs: its Stripe reads finish, then it is slow to commit.
    original = sync._read
    read_done, go_on = threading.Event(), threading.Event()

    def read(client, customer_id):
        snap = original(client, customer_id)
        if threading.current_thread().name == "confirm-page":
            read_done.set()
            go_on.wait(20)
        return snap

    monkeypatch.setattr(sync, "_read", read)
    page = threading.Thread(target=checkout_status, args=(org.admin, started.session_id), name="confirm-page")
    page.start()
    assert read_done.wait(20)

    # Meanwhile the admin cancels at period end in the Stripe dashboard; the webhook is synced.
    stripe_env.client.v1.subscriptions.update(sub.stripe_id, params={"cancel_at_period_end": True})
    eventlog.store_events([(event("customer.subscription.updated", customer), "{}")])
    Worker(sync.sync_customer, ingest_busy=None, concurrency=1).run_once()
    assert _mirror(org.id).cancel_at_period_end is True
    assert eventlog.counts().get("pending", 0) == 0

    go_on.set()
    page.join(20)
    assert not page.is_alive()

    assert _mirror(org.id).cancel_at_period_end is True, "the page's older snapshot overwrote the webhook's sync"
    # A sync that reads now still writes (the fence only holds back older reads).
    stripe_env.client.v1.subscriptions.update(sub.stripe_id, params={"cancel_at_period_end": False})
    report = sync.sync_customer(customer)
    assert not report.stale
    assert _mirror(org.id).cancel_at_period_end is False


def test_a_resumed_reconcile_does_not_write_pages_read_before_a_newer_sync(org, stripe_env, monkeypatch):
    buy(org, sandbox=stripe_env)
    sub = _mirror(org.id)
    customer = _customer_of(stripe_env, sub)

    # A bulk reconcile fetches (stages) everything, then is interrupted before applying.
    real_apply = reconcile.BulkReconcile._apply

    def interrupted(self, client):
        raise KeyboardInterrupt("operator pressed Ctrl-C")

    monkeypatch.setattr(reconcile.BulkReconcile, "_apply", interrupted)
    with pytest.raises(KeyboardInterrupt):
        reconcile.bulk_reconcile()
    monkeypatch.setattr(reconcile.BulkReconcile, "_apply", real_apply)

    # Later the subscription is canceled at Stripe and its webhook is synced.
    stripe_env.client.v1.subscriptions.cancel(sub.stripe_id)
    sync.sync_customer(customer)
    assert _mirror(org.id).status == "canceled"

    result = reconcile.bulk_reconcile()  # the operator resumes (the default)
    assert result.resumed
    assert _mirror(org.id).status == "canceled", f"the reconcile wrote staged state older than the mirror: {result.changes}"
    assert [line for _org, c, line in result.changes if c == customer] == []


def test_a_clock_stepped_back_does_not_freeze_the_mirror(org, stripe_env, monkeypatch):
    """A host clock that ran fast for one sync (then stepped back) must not refuse every later one."""
    buy(org, sandbox=stripe_env)
    sub = _mirror(org.id)
    customer = stripe_env.client.v1.subscriptions.retrieve(sub.stripe_id).customer
    monkeypatch.setattr(sync, "read_clock", lambda: utcnow() + timedelta(hours=1))
    sync.sync_customer(customer)
    monkeypatch.undo()
    stripe_env.client.v1.subscriptions.update(sub.stripe_id, params={"cancel_at_period_end": True})
    eventlog.store_events([(event("customer.subscription.updated", customer), "{}")])
    Worker(sync.sync_customer, ingest_busy=None, concurrency=1).run_once()
    assert eventlog.counts().get("pending", 0) == 0
    assert _mirror(org.id).cancel_at_period_end is True, "the event was marked processed, the mirror never updated"
