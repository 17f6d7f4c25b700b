"""Crash recovery in seconds: short leases a heartbeat renews, and a restarted worker that frees its dead predecessors' claims.

The killed worker is a real process that dies in the middle of its sync
(helpers.run_crashing_worker). Time is moved on through the worker's clock, never waited for.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta

from structlog.testing import capture_logs

from billing_app import owners
from billing_app.models import utcnow
from billing_app.ops import events as events_console
from billing_app.webhooks import eventlog
from billing_app.webhooks.worker import MAX_ATTEMPTS, Worker, run_worker
from tests.webhooks.helpers import (
    ROOT,
    CountingSync,
    aware,
    cancel_when,
    die_in_a_sync,
    event,
    row,
    rows,
    run_crashing_worker,
)
from tests.aio import run_async

SHORT_LEASE = timedelta(seconds=10)  # "crash recovery in seconds": the most a killed worker's events wait
TICK = timedelta(milliseconds=1)


def at(moment):
    """A worker clock stopped at `moment` (past or future), so leases run out without waiting."""
    return lambda: moment


def test_a_killed_workers_event_is_taken_over_once_its_short_lease_runs_out(post, database_url):
    ev = event("customer.subscription.updated", "cus_killed")
    post(ev)
    assert run_crashing_worker(database_url) == 17
    killed_at = utcnow()

    orphan = row(ev["id"])
    lease_end = aware(orphan.claimed_until)
    assert orphan.state == "pending" and killed_at < lease_end <= killed_at + SHORT_LEASE
    # Another worker (one that cannot tell the claim is dead, e.g. on another machine) leaves it
    # while the lease runs, and takes it the moment the lease has run out.
    sync = CountingSync()
    assert Worker(sync, clock=at(lease_end - TICK)).run_once().claimed == 0
    report = Worker(sync, clock=at(lease_end + TICK)).run_once()
    assert report.events == [ev["id"]] and sync.calls == ["cus_killed"]
    assert (row(ev["id"]).state, row(ev["id"]).attempts) == ("processed", 2)


def test_newer_events_of_the_customer_wait_no_longer_than_the_short_lease(post, database_url):
    """The issue's case: a change made in the Stripe dashboard right after a worker was killed."""
    first = event("customer.subscription.updated", "cus_dashboard")
    post(first)
    assert run_crashing_worker(database_url) == 17
    newer = event("customer.subscription.updated", "cus_dashboard")
    post(newer)
    stored_at = utcnow()

    lease_end = aware(row(first["id"]).claimed_until)
    assert lease_end <= stored_at + SHORT_LEASE
    sync = CountingSync()
    assert Worker(sync, clock=at(lease_end - TICK)).run_once().claimed == 0  # the customer is held while the claim may live
    report = Worker(sync, clock=at(lease_end + TICK)).run_once()
    assert sorted(report.events) == sorted([first["id"], newer["id"]]) and sync.calls == ["cus_dashboard"]
    assert {r.state for r in rows()} == {"processed"}


def test_the_restarted_backend_processes_its_unfinished_events_at_once(post, database_url):
    """Its worker frees the claims of the killed process as it starts: no lease has to run out
    (the killed one held an hour's lease here, so nothing else can explain the processing)."""
    first = event("customer.subscription.updated", "cus_restart")
    post(first)
    assert run_crashing_worker(database_url, lease_seconds=3600) == 17
    newer = event("invoice.paid", "cus_restart")
    post(newer)
    assert Worker(CountingSync()).run_once().claimed == 0  # held: the killed process's claim

    sync = CountingSync()

    async def scenario():
        # A poll interval far longer than the wait below: only the first pass can process them.
        task = asyncio.create_task(run_worker(sync, poll_seconds=600, on_change=None))
        await cancel_when(task, lambda: eventlog.counts() == {"processed": 2})

    run_async(scenario())
    assert sync.calls == ["cus_restart"]
    done = row(first["id"])
    assert (done.state, done.attempts) == ("processed", 2)  # the killed attempt still counts
    assert row(newer["id"]).state == "processed"


def test_only_claims_that_no_live_process_can_hold_are_freed_at_start(post):
    me = owners.this_process()
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        holders = {
            "cus_earlier_me": owners.Owner(me.host, me.pid, "0ld1ncar"),  # this pid before a restart
            "cus_dead_pid": owners.Owner(me.host, finished.pid, "deadbeef"),
            "cus_live_pid": owners.Owner(me.host, running.pid, "a11ve000"),
            "cus_this_process": me,
            "cus_other_host": owners.Owner("elsewhere@00000000", finished.pid, "deadbeef"),
        }
        for customer, holder in holders.items():
            post(event("invoice.paid", customer))
            token, claimed = eventlog.claim(1, SHORT_LEASE, by=holder)
            assert [c.customer_id for c in claimed] == [customer] and token.startswith(f"{holder}:")

        assert Worker(CountingSync()).release_orphans() == 2
        sync = CountingSync()
        Worker(sync).run_once()
        assert sorted(sync.calls) == ["cus_dead_pid", "cus_earlier_me"]
    finally:
        running.kill()
        running.wait()


def test_a_long_sync_that_keeps_its_heartbeat_is_not_taken_over_and_runs_once(post):
    ev = event("invoice.paid", "cus_slow")
    post(ev)
    started, finish = threading.Event(), threading.Event()
    calls = []

    def slow_sync(customer_id):
        calls.append(customer_id)
        started.set()
        assert finish.wait(60)

    reports = []
    slow = threading.Thread(target=lambda: reports.append(Worker(slow_sync).run_once()))  # the backend's settings
    slow.start()
    try:
        assert started.wait(30)
        seen = aware(row(ev["id"]).claimed_until)
        deadline = time.monotonic() + 30
        while (renewed := aware(row(ev["id"]).claimed_until)) == seen and time.monotonic() < deadline:
            time.sleep(0.02)  # until the heartbeat has renewed the lease at least once since
        assert renewed > seen, "the lease was not renewed while the sync ran"

        # A moment at which the lease as seen has run out, and the renewed one has not.
        later = seen + (renewed - seen) / 2
        newer = event("invoice.paid", "cus_slow")
        post(newer)
        other = CountingSync()
        assert Worker(other, clock=at(later)).run_once().claimed == 0  # neither the event nor its customer
        assert Worker(other).release_orphans() == 0  # a live process's claim
        assert other.calls == []
    finally:
        finish.set()
        slow.join(60)

    assert calls == ["cus_slow"] and reports[0].processed == 1
    done = row(ev["id"])
    assert (done.state, done.attempts, done.claimed_by, done.claimed_until) == ("processed", 1, None, None)
    Worker(other).run_once()  # the newer event came after the slow sync began: one more sync covers it
    assert other.calls == ["cus_slow"] and {r.state for r in rows()} == {"processed"}


def _failed_in_the_console() -> list:
    return events_console.list_events(events_console.EventFilter(state=eventlog.FAILED))[0]


def test_an_event_that_kills_its_worker_every_time_fails_at_the_attempt_limit(post, database_url):
    """A poison event (its sync kills the process: out of memory, a crash in C) is not claimed
    forever: the restarted worker gives it up with its last attempt, visible and replayable like
    any failed event."""
    ev = event("invoice.paid", "cus_poison")
    post(ev)
    with capture_logs() as logs:
        for _ in range(MAX_ATTEMPTS):
            assert row(ev["id"]).state == "pending"
            assert run_crashing_worker(database_url) == 17  # the worker dies in the sync
            assert Worker(CountingSync()).release_orphans() == 1  # its restart frees the claim at once
    failures = [(e["error"], e["sample"]) for e in logs if e["event"] == "webhook.sync_failed"]
    assert failures == [(eventlog.DIED_ERROR, ["cus_poison"])]  # the last restart's give-up, logged as a failure

    stored = row(ev["id"])
    assert (stored.state, stored.attempts, stored.claimed_by) == ("failed", MAX_ATTEMPTS, None)
    assert "died" in stored.last_error
    assert [(e.stripe_event_id, e.last_error) for e in _failed_in_the_console()] == [(ev["id"], stored.last_error)]
    assert run_crashing_worker(database_url) == 0  # nothing to claim: no crash loop
    eventlog.replay(ev["id"])  # the operator's replay, once the cause is fixed
    sync = CountingSync()
    Worker(sync).run_once()
    assert sync.calls == ["cus_poison"] and row(ev["id"]).state == "processed"


# A worker in a process of its own (two sync slots) whose sync dies for the poison customer; another
# customer's sync takes a while (it reads Stripe), so it is in flight when the process dies.
POISONED_WORKER = """
import os, time
from billing_app.webhooks.worker import Worker

def sync(customer_id):
    if customer_id == "cus_poison":
        os._exit(17)  # out of memory, a crash in C: no rollback, no mark
    time.sleep(2)

Worker(sync, concurrency=2).run_once()
"""


def test_only_the_poison_event_is_given_up_not_the_events_claimed_beside_it(post, database_url):
    """Every restart claims the three together. The event never started is not charged the deaths; the one
    whose sync ran beside the poison's is, and at the limit is tried alone (it syncs); only the poison
    event, dying alone, is given up."""
    poison = event("invoice.paid", "cus_poison")
    beside = event("customer.subscription.trial_will_end", "cus_beside")  # another org; an email waits on it
    waiting = event("invoice.paid", "cus_waiting")  # no free slot: never started before the process dies
    for ev in (poison, beside, waiting):
        post(ev)
    env = {**os.environ, "DATABASE_URL": database_url}
    deaths = 0
    while row(poison["id"]).state == "pending" and deaths <= MAX_ATTEMPTS + 1:
        assert subprocess.run([sys.executable, "-c", POISONED_WORKER], cwd=ROOT, env=env, timeout=60, check=False).returncode == 17
        deaths += 1
        Worker(CountingSync()).release_orphans()  # the restarted worker frees the dead one's claim
        assert row(waiting["id"]).attempts == 0

    assert deaths == MAX_ATTEMPTS + 1  # its attempts beside another sync, then once alone
    assert (row(poison["id"]).state, row(poison["id"]).last_error) == ("failed", eventlog.DIED_ERROR)
    assert (row(beside["id"]).state, row(beside["id"]).attempts) == ("pending", MAX_ATTEMPTS)
    sync = CountingSync()
    assert Worker(sync).run_once().synced == ["cus_beside"]  # alone: its own pass
    Worker(sync).run_once()
    assert sync.calls == ["cus_beside", "cus_waiting"]
    assert [(r.stripe_event_id, r.state) for r in rows()] == [
        (poison["id"], "failed"), (beside["id"], "processed"), (waiting["id"], "processed"),
    ]


def test_events_at_the_limit_whose_dead_claim_ran_several_syncs_are_tried_alone_not_failed(post):
    """The same on the lease path (a dead worker of another host): nobody can tell which sync killed it."""
    first, second = event("invoice.paid", "cus_first"), event("invoice.paid", "cus_second")
    post(first)
    post(second)
    for _ in range(MAX_ATTEMPTS):
        die_in_a_sync()

    passes = []
    for _ in range(3):
        sync = CountingSync()
        report = Worker(sync).run_once()
        passes.append((sync.calls, report.died_at_limit))
    assert passes == [(["cus_first"], []), (["cus_second"], []), ([], [])]
    assert {r.state for r in rows()} == {"processed"}


def test_an_event_whose_dead_workers_lease_ran_out_on_its_last_attempt_is_failed_not_claimed(post):
    """The same without a restart on the dead worker's host: another worker finds its lease run out."""
    poison, healthy = event("invoice.paid", "cus_poison"), event("invoice.paid", "cus_healthy")
    post(poison)
    for _ in range(MAX_ATTEMPTS):
        die_in_a_sync()
    post(healthy)

    sync = CountingSync()
    Worker(sync).run_once()

    assert sync.calls == ["cus_healthy"]
    stored = row(poison["id"])
    assert (stored.state, stored.attempts, stored.claimed_by) == ("failed", MAX_ATTEMPTS, None)
    assert "died" in stored.last_error and [e.stripe_event_id for e in _failed_in_the_console()] == [poison["id"]]
    assert row(healthy["id"]).state == "processed"


def test_the_pass_that_gives_up_a_dead_workers_event_reports_and_logs_it(post):
    """Failed at claim time, not by a sync of this pass: still a failure the pass's report, its log line and
    its warnings count, also when the poison event was the only one due (the claim returns nothing to sync)."""
    poison = event("invoice.paid", "cus_poison")
    post(poison)
    for _ in range(MAX_ATTEMPTS):
        die_in_a_sync()

    with capture_logs() as logs:
        report = Worker(CountingSync()).run_once()

    assert report.died_at_limit == [poison["id"]] and row(poison["id"]).state == "failed"
    assert (report.claimed, report.gave_up) == (0, 0)  # neither synced nor failed by a sync of this pass
    passes = [entry for entry in logs if entry["event"] == "webhook.pass"]
    assert [entry["died_at_limit"] for entry in passes] == [1]
    failures = [entry for entry in logs if entry["event"] == "webhook.sync_failed"]
    assert [(f["error"], f["sample"]) for f in failures] == [(eventlog.DIED_ERROR, ["cus_poison"])]
    assert Worker(CountingSync()).run_once().died_at_limit == []  # given up once, by one pass


def test_a_live_workers_last_attempt_whose_lease_just_ran_out_is_taken_over_not_failed(post):
    """A heartbeat that missed a beat (a database hiccup) lets the lease run out under a sync about to
    succeed: another worker takes the event over, as before; it was failed as "worker died", and the
    first worker's success was then refused by the fence."""
    ev = event("invoice.paid", "cus_slow")
    post(ev)
    lease, policy = timedelta(seconds=10), eventlog.RetryPolicy(MAX_ATTEMPTS, 0, 0)
    start = utcnow()
    for i in range(MAX_ATTEMPTS - 1):  # ordinary failures (Stripe down), each retried
        token, claimed = eventlog.claim(10, lease, start + timedelta(minutes=i))
        eventlog.record(token, failed=[eventlog.Failed(claimed, "stripe down")], policy=policy)
    last = start + timedelta(hours=1)
    eventlog.claim(10, lease, last, max_attempts=MAX_ATTEMPTS)  # the last attempt, whose renewal then failed once

    other = CountingSync()
    Worker(other, clock=lambda: last + lease + timedelta(seconds=1)).run_once()

    assert other.calls == ["cus_slow"] and row(ev["id"]).state == "processed"


def test_a_poison_event_at_the_limit_is_given_up_not_ping_ponged_between_two_hosts(database_url):
    """Workers on two hosts (neither's restart can prove the other's process dead) poll a second after the
    other's lease ran out: the poison event at the limit waits out the dead claim's last lease, untaken,
    then is given up. Each death is a claim that started its sync alone and never recorded."""
    ev = event("invoice.paid", "cus_poison")
    eventlog.store_events([(ev, json.dumps(ev))])
    hosts = [owners.Owner("host-a@00000000", 4242, "aaaa0000"), owners.Owner("host-b@00000000", 4343, "bbbb0000")]
    now, deaths, given_up = utcnow(), 0, []
    for turn in range(3 * MAX_ATTEMPTS):
        by = hosts[turn % 2]
        now += SHORT_LEASE + timedelta(seconds=1)
        if deaths < MAX_ATTEMPTS:  # the climb to the limit: claimed in batches, started alone, died
            token, claimed = eventlog.claim(10, SHORT_LEASE, now, by=by, max_attempts=MAX_ATTEMPTS)
        else:
            token, claimed, given_up = eventlog.claim_alone(10, SHORT_LEASE, now, by=by, max_attempts=MAX_ATTEMPTS)
        if given_up:
            break
        if claimed:
            eventlog.start([c.id for c in claimed], token, alone=True)
            deaths += 1
    stored = row(ev["id"])
    assert [e.stripe_event_id for e in given_up] == [ev["id"]], f"{deaths} deaths, still {stored.state}"
    assert (stored.state, stored.attempts, deaths) == ("failed", MAX_ATTEMPTS, MAX_ATTEMPTS)


def test_starting_syncs_rewrites_each_row_about_once_not_once_per_round(database_url, monkeypatch):
    """`start` marks the rows beside the syncs it starts (in flight, or synced and not yet recorded): only
    those not marked so already, or a burst of quick customers rewrote rows customers x flush_every times."""
    customers = 200
    assert all(eventlog.store_events([(e, json.dumps(e)) for e in (event("invoice.paid", f"cus_{i}") for i in range(customers))]))
    real_start, rewritten = eventlog.start, []
    monkeypatch.setattr(eventlog, "start", lambda *args, **kwargs: rewritten.append(real_start(*args, **kwargs)))

    report = Worker(CountingSync(), ingest_busy=None, concurrency=4, batch_size=customers).run_once()

    assert len(report.synced) == customers
    # Each row once as its sync starts, and once more at most: a row started alone, then beside a later one.
    assert sum(rewritten) <= 2 * customers, f"{sum(rewritten)} rows rewritten in {len(rewritten)} statements"
