"""The worker on a real database: coalescing, retries with backoff, replay, crash recovery, several workers.

The sync is a test double here (it records calls and can fail): what is under test is
the event log's state machine. tests/webhooks/test_end_to_end.py runs the real sync.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta

from sqlalchemy import update

from billing_app.db import get_engine
from billing_app.models import WebhookEvent, utcnow
from billing_app.webhooks import eventlog, replay
from billing_app.webhooks.worker import Worker
from tests.webhooks.helpers import CountingSync, aware, event, mark_failed, mark_processed, row, rows, run_crashing_worker

T = WebhookEvent.__table__


def make_due(stripe_event_id: str) -> None:
    """Let the backoff elapse (as if its time had passed) without sleeping for it."""
    with get_engine().begin() as connection:
        connection.execute(update(T).where(T.c.stripe_event_id == stripe_event_id).values(next_attempt_at=utcnow() - timedelta(seconds=1)))


def test_a_burst_of_one_customers_events_is_one_sync(post):
    types = ["checkout.session.completed", "customer.subscription.created", "invoice.paid", "customer.subscription.updated"]
    sent = []
    for i in range(40):
        ev = event(types[i % len(types)], "cus_burst" if i % 4 else "cus_other")
        sent.append(ev["id"])
        assert post(ev).status_code == 200
    sync = CountingSync()
    reports = Worker(sync).drain()
    assert sorted(sync.calls) == ["cus_burst", "cus_other"]
    assert sum(r.claimed for r in reports) == 40
    assert {r.state for r in rows()} == {"processed"}


def test_events_stored_before_a_sync_began_are_covered_by_it(post):
    """A customer's events that were not in the claim (beyond the batch) are marked by the same sync."""
    for _ in range(12):
        assert post(event("invoice.paid", "cus_many")).status_code == 200
    sync = CountingSync()
    report = Worker(sync, batch_size=5).run_once()
    assert report.claimed == 5 and sync.calls == ["cus_many"] and report.processed == 12
    assert {r.state for r in rows()} == {"processed"}


def test_a_failing_sync_is_retried_with_backoff_then_left_failed_then_replayed(post):
    ev = event("invoice.payment_failed", "cus_flaky")
    post(ev)
    failing = CountingSync(fail_with=RuntimeError("Stripe is down"))
    worker = Worker(failing, max_attempts=3, backoff_base=30, backoff_cap=3600)

    before = utcnow()
    report = worker.run_once()
    assert report.failed == ["cus_flaky"]
    first = row(ev["id"])
    assert (first.state, first.attempts, first.last_error) == ("pending", 1, "RuntimeError: Stripe is down")
    assert first.claimed_until is None
    delay = aware(first.next_attempt_at) - before
    assert timedelta(seconds=29) < delay < timedelta(seconds=32)

    # Not due yet: the next pass leaves it alone.
    assert worker.run_once().claimed == 0 and failing.calls == ["cus_flaky"]

    make_due(ev["id"])
    before = utcnow()
    worker.run_once()
    second = row(ev["id"])
    assert (second.state, second.attempts) == ("pending", 2)
    assert timedelta(seconds=59) < aware(second.next_attempt_at) - before < timedelta(seconds=62)  # doubled

    make_due(ev["id"])
    worker.run_once()
    final = row(ev["id"])
    assert (final.state, final.attempts, final.last_error) == ("failed", 3, "RuntimeError: Stripe is down")
    assert final.next_attempt_at is None and final.processed_at is None
    assert failing.calls == ["cus_flaky"] * 3
    assert worker.run_once().claimed == 0  # failed stays failed until an admin replays it

    assert replay(ev["id"]) is True
    replayed = row(ev["id"])
    assert (replayed.state, replayed.attempts) == ("pending", 0)
    working = CountingSync()
    Worker(working).run_once()
    done = row(ev["id"])
    assert working.calls == ["cus_flaky"] and (done.state, done.attempts, done.last_error) == ("processed", 1, None)
    assert replay("evt_does_not_exist") is False


def test_replay_by_row_id_resyncs_a_processed_event(post):
    ev = event("charge.refunded", "cus_replay")
    post(ev)
    sync = CountingSync()
    Worker(sync).drain()
    assert replay(row(ev["id"]).id) is True
    Worker(sync).drain()
    assert sync.calls == ["cus_replay", "cus_replay"] and row(ev["id"]).state == "processed"


def test_one_customers_failure_does_not_hold_back_the_others(post):
    post(event("invoice.paid", "cus_bad"))
    post(event("invoice.paid", "cus_good"))

    def sync(customer_id):
        if customer_id == "cus_bad":
            raise ValueError("boom")

    report = Worker(sync).run_once()
    assert report.synced == ["cus_good"] and report.failed == ["cus_bad"]
    assert {r.customer_id: r.state for r in rows()} == {"cus_bad": "pending", "cus_good": "processed"}


def test_an_event_claimed_by_a_process_that_died_is_processed_after_its_claim_expires(post, database_url):
    ev = event("customer.subscription.deleted", "cus_crash")
    post(ev)
    assert run_crashing_worker(database_url, lease_seconds=2) == 17

    orphan = row(ev["id"])
    assert (orphan.state, orphan.attempts) == ("pending", 1) and aware(orphan.claimed_until) > utcnow()
    sync = CountingSync()
    assert Worker(sync).run_once().claimed == 0  # the lease still holds: nobody else takes it yet

    deadline = time.monotonic() + 10
    while aware(row(ev["id"]).claimed_until) >= utcnow() and time.monotonic() < deadline:
        time.sleep(0.1)
    report = Worker(sync).run_once()  # the restarted backend's worker
    assert report.claimed == 1 and sync.calls == ["cus_crash"]
    done = row(ev["id"])
    assert (done.state, done.attempts, done.claimed_until) == ("processed", 2, None)


def test_a_worker_whose_lease_expired_cannot_overwrite_the_new_claim(post):
    ev = event("invoice.paid", "cus_slow")
    post(ev)
    old_token, claimed = eventlog.claim(10, timedelta(seconds=-1))  # a lease that has already run out
    assert [c.stripe_event_id for c in claimed] == [ev["id"]]
    eventlog.start([claimed[0].id], old_token, alone=True)  # its sync is running (the attempt counts)
    new_token, reclaimed = eventlog.claim(10, timedelta(seconds=60))
    assert [c.stripe_event_id for c in reclaimed] == [ev["id"]] and reclaimed[0].attempts == 2

    # The first worker finally finishes: its marks are fenced off by the token.
    assert mark_processed([claimed[0].id], old_token) == 0
    assert mark_failed(claimed, old_token, "late", max_attempts=1, backoff_base=1, backoff_cap=1) == []
    assert row(ev["id"]).state == "pending"
    assert mark_processed([reclaimed[0].id], new_token) == 1
    assert row(ev["id"]).state == "processed"


def test_a_pass_syncs_up_to_its_concurrency_of_customers_at_once_each_once(post):
    customers = [f"cus_together{i}" for i in range(8)]
    for customer in customers:
        post(event("invoice.paid", customer))
        post(event("customer.subscription.updated", customer))
    post(event("invoice.paid", "cus_broken"))
    four_at_once = threading.Barrier(4, timeout=10)  # broken (every sync fails) unless four syncs run together
    lock, running, most, calls = threading.Lock(), [0], [0], []

    def sync(customer_id):
        with lock:
            calls.append(customer_id)
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            if customer_id == "cus_broken":
                raise RuntimeError("Stripe said no")
            four_at_once.wait()
        finally:
            with lock:
                running[0] -= 1

    report = Worker(sync, concurrency=4).run_once()
    assert sorted(calls) == sorted(customers + ["cus_broken"]) and most[0] == 4
    assert sorted(report.synced) == sorted(customers) and report.failed == ["cus_broken"]
    assert report.processed == 16
    broken = [r for r in rows() if r.customer_id == "cus_broken"]
    assert [(r.state, r.attempts) for r in broken] == [("pending", 1)]
    assert {r.state for r in rows() if r.customer_id != "cus_broken"} == {"processed"}


def test_events_of_a_customer_being_synced_wait_for_one_later_sync(post):
    post(event("invoice.paid", "cus_busy"))
    token, first = eventlog.claim(10, timedelta(seconds=60))  # another worker is syncing cus_busy
    later = [event("invoice.paid", "cus_busy") for _ in range(3)]
    for ev in later:
        post(ev)
    post(event("invoice.paid", "cus_free"))
    sync = CountingSync()
    report = Worker(sync).run_once()
    assert sync.calls == ["cus_free"] and report.claimed == 1
    mark_processed([first[0].id], token)  # the other worker finishes
    Worker(sync).run_once()
    assert sync.calls == ["cus_free", "cus_busy"]
    assert {r.state for r in rows()} == {"processed"}


def test_a_worker_short_of_lease_gives_the_rest_back_untried(post):
    """Past half a lease its heartbeat has not renewed, the worker starts no more syncs: the rest are
    released, no attempt counted."""
    first, second = event("invoice.paid", "cus_first"), event("invoice.paid", "cus_second")
    post(first)
    post(second)
    sync = CountingSync(delay=0.3)
    # One sync at a time, so the second starts (or not) after the first has used up the lease.
    report = Worker(sync, lease_seconds=0.4, heartbeat_seconds=60, concurrency=1).run_once()  # no beat within the pass
    assert sync.calls == ["cus_first"] and report.released == 1
    given_back = row(second["id"])
    assert (given_back.state, given_back.attempts, given_back.claimed_until) == ("pending", 0, None)
    Worker(CountingSync()).run_once()
    assert row(second["id"]).state == "processed"


def test_several_workers_never_process_the_same_event_twice(post, database_url):
    """Four workers (threads with their own connections) drain 300 events of 60 customers at once.

    On PostgreSQL the claims use FOR UPDATE SKIP LOCKED; on SQLite the claim is one statement
    under the single write lock. Either way every event is claimed by exactly one worker.
    """
    customers = [f"cus_{n:03d}" for n in range(60)]
    for n in range(300):
        assert post(event(random.choice(["invoice.paid", "customer.subscription.updated"]), customers[n % 60])).status_code == 200

    claimed_by: dict[int, list[str]] = {}
    sync = CountingSync(delay=0.005)
    start = threading.Barrier(4)
    errors = []

    def run(number: int):
        worker = Worker(sync, batch_size=7)
        got = claimed_by.setdefault(number, [])
        start.wait()
        try:
            for _ in range(500):
                report = worker.run_once()
                got.extend(report.events)
                if not report.claimed and not eventlog.has_due():
                    break
        except Exception as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    all_claims = [e for got in claimed_by.values() for e in got]
    assert len(all_claims) == len(set(all_claims)), "an event was claimed by two workers"
    assert sum(1 for got in claimed_by.values() if got) >= 2, "the workers did not actually run side by side"
    final = rows()
    assert {r.state for r in final} == {"processed"} and len(final) == 300
    assert all(r.attempts <= 1 for r in final)  # nobody processed an event a second time
    assert len(sync.calls) <= 300 and set(sync.calls) == set(customers)


def test_the_admin_sees_failed_events_newest_first(post):
    from billing_app.webhooks import recent

    good, bad = event("invoice.paid", "cus_ok"), event("invoice.paid", "cus_broken")
    post(good)
    post(bad)

    def sync(customer_id):
        if customer_id == "cus_broken":
            raise RuntimeError("no such customer")

    Worker(sync, max_attempts=1).run_once()
    (failed,) = recent(state="failed")
    assert (failed.stripe_event_id, failed.attempts, failed.last_error) == (bad["id"], 1, "RuntimeError: no such customer")
    assert [e.stripe_event_id for e in recent()] == [bad["id"], good["id"]]
    assert eventlog.counts() == {"failed": 1, "processed": 1}
