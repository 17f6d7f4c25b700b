"""One slow customer holds back no other: while a pass's syncs run, its idle slots take newer due events.

A Stripe call may take minutes (the SDK's 80 s timeout, retried), so a pass that waited for its
slowest sync before claiming anything new would stall every customer's webhooks behind one. The
events a pass takes meanwhile join its claim: renewed by its heartbeat, fenced by its token, and
given back untried when it drains, exactly like the ones it claimed first.
"""

from __future__ import annotations

import threading
import time

from billing_app.webhooks import eventlog
from billing_app.webhooks.worker import Worker
from tests.webhooks.helpers import CountingSync, aware, event, row, rows

WAIT = 15.0  # the most a sync below waits for what it expects (it never takes that long unless the worker stalls)


def _until(predicate, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


def _stored(ev: dict):
    """The event's row, or None while it is not stored yet (it is posted while the sync runs)."""
    return next((r for r in rows() if r.stripe_event_id == ev["id"]), None)


def _pass_in_thread(worker: Worker) -> tuple[threading.Thread, list]:
    reports: list = []
    thread = threading.Thread(target=lambda: reports.append(worker.run_once()))
    thread.start()
    return thread, reports


def test_a_slow_customers_sync_holds_back_no_other(post):
    slow = event("invoice.paid", "cus_slow")
    assert post(slow).status_code == 200
    started, calls, fast_done_meanwhile = threading.Event(), [], []
    fast = event("invoice.paid", "cus_fast")
    slow_again = event("invoice.paid", "cus_slow")

    def sync(customer_id):
        calls.append(customer_id)
        if customer_id == "cus_slow" and len(calls) == 1:
            started.set()
            # Still syncing: the other customer's event is handled (synced and recorded) meanwhile.
            fast_done_meanwhile.append(_until(lambda: getattr(_stored(fast), "state", None) == "processed"))

    thread, reports = _pass_in_thread(Worker(sync, ingest_busy=None, concurrency=4))
    assert started.wait(WAIT)
    assert post(slow_again).status_code == 200  # the slow customer again: it waits for its sync to end
    assert post(fast).status_code == 200
    thread.join(WAIT * 2)

    assert fast_done_meanwhile == [True], "cus_fast's event waited behind cus_slow's sync"
    assert calls == ["cus_slow", "cus_fast"] and reports[0].claimed == 2
    assert [row(e["id"]).state for e in (slow, fast, slow_again)] == ["processed", "processed", "pending"]
    Worker(sync, ingest_busy=None).run_once()  # stored after the slow sync read Stripe: one more sync
    assert calls == ["cus_slow", "cus_fast", "cus_slow"] and {r.state for r in rows()} == {"processed"}


def test_events_taken_while_a_pass_runs_keep_their_lease_renewed(post):
    assert post(event("invoice.paid", "cus_slow")).status_code == 200
    started, finish, renewed = threading.Event(), threading.Event(), []
    late = event("invoice.paid", "cus_late")

    def sync(customer_id):
        if customer_id == "cus_slow":
            started.set()
            assert finish.wait(WAIT)
            return
        # Taken while cus_slow syncs: its lease is renewed past the one it was claimed with.
        first = aware(row(late["id"]).claimed_until)
        renewed.append(_until(lambda: aware(row(late["id"]).claimed_until) > first))
        finish.set()

    worker = Worker(sync, ingest_busy=None, concurrency=2, lease_seconds=2.0, heartbeat_seconds=0.1)
    thread, reports = _pass_in_thread(worker)
    try:
        assert started.wait(WAIT)
        assert post(late).status_code == 200
    finally:
        thread.join(WAIT * 2)
    assert renewed == [True]
    assert reports[0].claimed == 2 and {r.state for r in rows()} == {"processed"}
    assert {(r.attempts, r.claimed_by) for r in rows()} == {(1, None)}


def test_a_draining_worker_gives_back_untried_the_events_it_took_while_its_pass_ran(post):
    assert post(event("invoice.paid", "cus_slow")).status_code == 200
    started = threading.Event()
    second, third = event("invoice.paid", "cus_second"), event("invoice.paid", "cus_third")

    def sync(customer_id):
        if customer_id == "cus_slow":
            started.set()
            # Ends once the drain has given back what waited for a slot.
            assert _until(lambda: worker.stopping and _stored(third).claimed_until is None)
        elif customer_id == "cus_second":
            worker.stop()  # SIGTERM while cus_third waits for a slot

    worker = Worker(sync, ingest_busy=None, concurrency=2)
    thread, reports = _pass_in_thread(worker)
    assert started.wait(WAIT)
    eventlog.store_events([(second, "{}"), (third, "{}")])  # one delivery batch: taken together
    thread.join(WAIT * 2)

    assert reports[0].claimed == 3 and reports[0].released == 1
    assert sorted(reports[0].synced) == ["cus_second", "cus_slow"]
    given_back = row(third["id"])
    assert (given_back.state, given_back.attempts, given_back.claimed_by) == ("pending", 0, None)
    assert Worker(CountingSync(), ingest_busy=None).run_once().claimed == 1
    assert {r.state for r in rows()} == {"processed"}
