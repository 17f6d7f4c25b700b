"""Which stored events a successful sync covers (marks processed without syncing again).

A sync covers the customer's pending events that were stored before it read Stripe, and
never one stored after: that event's change may be newer than what the sync read. The
backend that stores an event and the worker that syncs run on different hosts, whose
clocks need not agree, so the line is drawn by the event log's ids, not by times.
"""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from billing_app.billing import gateway, sync
from billing_app.db import session_scope
from billing_app.models import Notification, OrgSubscription, utcnow
from billing_app.webhooks import eventlog
from billing_app.webhooks import worker as worker_module
from billing_app.webhooks.worker import Worker
from tests.billing.helpers import buy
from tests.webhooks.helpers import CountingSync, event, row

SKEW = timedelta(seconds=1)  # the worker host's clock runs this far ahead of the backend's


def _mirror(org_id: int) -> OrgSubscription:
    with session_scope() as session:
        return session.exec(select(OrgSubscription).where(OrgSubscription.org_id == org_id)).one()


def test_a_change_whose_event_arrives_after_the_syncs_read_reaches_the_mirror_whatever_the_clocks(
    org, stripe_env, monkeypatch,
):
    buy(org, sandbox=stripe_env)
    sub = _mirror(org.id)
    customer = stripe_env.client.v1.subscriptions.retrieve(sub.stripe_id).customer
    eventlog.store_events([(event("invoice.paid", customer), "{}")])
    late = event("customer.subscription.updated", customer)
    real_read = sync._read

    def read_then_change_at_stripe(client, customer_id):
        snapshot = real_read(client, customer_id)
        # Right after the sync's read: a change at Stripe, and its webhook stored by a backend.
        stripe_env.client.v1.subscriptions.update(sub.stripe_id, params={"cancel_at_period_end": True})
        eventlog.store_events([(late, "{}")])
        return snapshot

    def skewed() -> object:
        return utcnow() + SKEW

    monkeypatch.setattr(worker_module, "utcnow", skewed)
    monkeypatch.setattr(sync, "_read", read_then_change_at_stripe)
    Worker(sync.sync_customer, ingest_busy=None, concurrency=1, clock=skewed).run_once()
    monkeypatch.setattr(sync, "_read", real_read)

    assert _mirror(org.id).cancel_at_period_end is False  # the sync read Stripe before the change
    assert row(late["id"]).state == "pending", "the late event was covered by a sync that never saw its change"
    Worker(sync.sync_customer, ingest_busy=None, clock=skewed).run_once()
    assert row(late["id"]).state == "processed"
    assert _mirror(org.id).cancel_at_period_end is True


def test_a_sync_covers_the_customers_events_stored_before_it_began_and_no_other(post):
    first = event("invoice.paid", "cus_cover")
    assert post(first).status_code == 200
    waiting = event("invoice.paid", "cus_cover")
    assert post(waiting).status_code == 200  # not in the claim below (batch of one), stored before the sync
    other = event("invoice.paid", "cus_other")
    assert post(other).status_code == 200
    later = []

    def sync_storing_another(customer_id):
        later.append(event("invoice.paid", customer_id))
        eventlog.store_events([(later[-1], "{}")])  # delivered while the sync runs

    Worker(sync_storing_another, ingest_busy=None, batch_size=1).run_once()
    assert [row(e["id"]).state for e in (first, waiting, other, *later)] == ["processed", "processed", "pending", "pending"]
    assert row(waiting["id"]).attempts == 0  # covered, not synced on its own
    Worker(CountingSync(), ingest_busy=None).run_once()
    assert {row(e["id"]).state for e in (first, waiting, other, *later)} == {"processed"}


class _FailOnce:
    """The real sync, except Stripe answers 503 the first time."""

    def __init__(self):
        self.failed = False

    def __call__(self, customer_id):
        if not self.failed:
            self.failed = True
            raise gateway.StripeFailure("Stripe is down", status=503)
        return sync.sync_customer(customer_id)


def _queued(org_id: int, kind: str) -> int:
    with session_scope() as session:
        return len(session.exec(select(Notification).where(Notification.org_id == org_id, Notification.kind == kind)).all())


def _trialing(org, stripe_env) -> tuple[str, dict]:
    buy(org, "pro", "MONTHLY", sandbox=stripe_env)
    sub = _mirror(org.id)
    assert sub.status == "trialing"
    customer = stripe_env.client.v1.subscriptions.retrieve(sub.stripe_id).customer
    return customer, {"id": sub.stripe_id, "object": "subscription", "customer": customer}


def _drain(clock=utcnow) -> None:
    """Passes until nothing is due (at `clock`), as the worker's loop runs them."""
    while Worker(sync.sync_customer, ingest_busy=None, concurrency=1, clock=clock).run_once().claimed:
        pass


def test_a_trial_ending_event_waiting_for_its_retry_is_not_covered_and_sends_its_email_once(org, stripe_env, post):
    """Its sync failed (Stripe 503); another event of the customer is synced before its retry is due.
    That sync would cover it, but its email is built only for a claimed event: it waits for its own."""
    customer, sub = _trialing(org, stripe_env)
    trial_end = event("customer.subscription.trial_will_end", customer, obj=sub)
    assert post(trial_end).status_code == 200
    flaky = _FailOnce()
    Worker(flaky, ingest_busy=None, concurrency=1).run_once()
    assert flaky.failed and row(trial_end["id"]).state == "pending"

    assert post(event("customer.updated", customer)).status_code == 200
    _drain()  # the card was updated: synced now, the trial-ending event's retry is not due yet
    _drain(clock=lambda: utcnow() + timedelta(hours=2))  # its retry

    assert row(trial_end["id"]).state == "processed"
    assert _queued(org.id, "trial_ending") == 1


def test_a_trial_ending_event_beyond_a_bursts_claim_sends_its_email_once(org, stripe_env, post):
    """A burst of one customer's events larger than a claim: the trial-ending event left out of the
    first claim is not covered by the burst's sync, and its own sync queues the email."""
    customer, sub = _trialing(org, stripe_env)
    for _ in range(worker_module.BATCH_SIZE):
        assert post(event("customer.subscription.updated", customer, obj=sub)).status_code == 200
    trial_end = event("customer.subscription.trial_will_end", customer, obj=sub)
    assert post(trial_end).status_code == 200
    assert post(event("customer.subscription.trial_will_end", customer, obj=sub)).status_code == 200  # Stripe sent it twice

    _drain()

    assert row(trial_end["id"]).state == "processed"
    assert _queued(org.id, "trial_ending") == 1
