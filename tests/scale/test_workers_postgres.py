"""Webhook workers on PostgreSQL, as the scaled topology runs them: several at once.

Claims use FOR UPDATE SKIP LOCKED, under a transaction-level advisory lock that makes the
claim step one at a time (SKIP LOCKED locks rows, not customers). Counted by what Stripe (the
sandbox's own request log) saw: one customer read per sync.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import update

from billing_app import owners
from billing_app.db import get_engine
from billing_app.models import WebhookEvent
from billing_app.webhooks import eventlog
from tests.scale.worker_helpers import (
    CUSTOMER_READ,
    RequestLog,
    TcpProxy,
    WorkerProcess,
    postgres_schema,
    sandbox_customers,
    store_burst,
    wait_until,
    worker_processes,
)
from tests.webhooks.helpers import aware, rows


@pytest.fixture
def pg(monkeypatch):
    with postgres_schema(monkeypatch) as url:
        yield url


def test_two_workers_claiming_at_the_same_instant_never_take_events_of_one_customer(pg):
    """Customer after customer, 10 events each; two claims of 25 rows at once would split a
    customer between them if the second did not wait for the first to commit."""
    lease = timedelta(seconds=10)
    for trial in range(10):
        store_burst({f"cus_t{trial}_{n}": 10 for n in range(6)})
        start = threading.Barrier(2)
        claims: list[list[eventlog.Claimed]] = [[], []]

        def claim(slot: int) -> None:
            start.wait()
            claims[slot] = eventlog.claim(25, lease)[1]

        threads = [threading.Thread(target=claim, args=(slot,)) for slot in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        first, second = ({c.customer_id for c in got} for got in claims)
        assert claims[0] and claims[1], "both claims found work"
        assert not first & second, f"trial {trial}: both workers hold events of {sorted(first & second)}"
        with get_engine().begin() as connection:  # done with this trial's events
            connection.execute(update(WebhookEvent).values(state="processed", claimed_until=None, claimed_by=None))


def burst_sizes(customers: list[str], total: int, seed: int) -> dict[str, int]:
    """`total` events over the customers, 5 to 17 each, so batch boundaries fall inside customers."""
    rng = random.Random(seed)
    sizes = {customer: 5 for customer in customers}
    for _ in range(total - 5 * len(customers)):
        sizes[rng.choice([c for c in customers if sizes[c] < 17])] += 1
    return sizes


def test_three_worker_processes_process_1000_events_once_with_one_sync_per_customer(pg, sandbox, sandbox_server, tmp_path):
    customers = sandbox_customers(sandbox, 90)
    stripe = RequestLog(sandbox_server.recording)
    settings = dict(database_url=pg, stripe_base=sandbox.base_url, api_key=sandbox.api_key)
    with worker_processes(3, tmp_path, **settings) as workers:
        store_burst(burst_sizes(customers, 1000, seed=17))
        wait_until(lambda: eventlog.counts() == {"processed": 1000}, 90, "1,000 events processed")
        assert [worker.terminate() for worker in workers] == [0, 0, 0]

    claimed = [sum(worker.passes()) for worker in workers]
    assert sum(1 for n in claimed if n) >= 2, f"the workers did not race (events claimed by each: {claimed})"
    # What Stripe saw: each customer read once, i.e. one sync per customer for the whole burst.
    assert stripe.customer_reads() == Counter({customer: 1 for customer in customers})
    final = rows()
    assert len(final) == 1000 and all(r.state == "processed" and r.attempts <= 1 and r.claimed_by is None for r in final)


def test_a_worker_killed_mid_batch_loses_nothing_its_lease_runs_out_and_another_takes_over(pg, sandbox, sandbox_server, tmp_path):
    customers = sandbox_customers(sandbox, 40)
    store_burst({customer: 10 for customer in customers})
    stripe = RequestLog(sandbox_server.recording)
    # The victim, alone at first, claims the first batch (200 events: the first 20 customers). It reaches
    # Stripe through a proxy that holds its 4th customer read: three syncs done, the fourth under way
    # (one sync at a time, so which three is certain).
    proxy = TcpProxy(int(sandbox.base_url.rsplit(":", 1)[1]))
    proxy.hold_from(CUSTOMER_READ, 4)
    victim = WorkerProcess(tmp_path / "victim.log", database_url=pg, stripe_base=f"http://127.0.0.1:{proxy.port}",
                           api_key=sandbox.api_key, WEBHOOK_SYNC_CONCURRENCY="1")
    batch, synced_by_victim = customers[:20], customers[:3]
    try:
        victim.wait_started()
        assert proxy.held.wait(30), "the victim never reached its fourth sync"
        settings = dict(database_url=pg, stripe_base=sandbox.base_url, api_key=sandbox.api_key)
        with worker_processes(2, tmp_path, **settings) as others:
            # Both are past their start-up (where a worker frees dead local processes' claims at once):
            # the victim's events can come back only by their lease running out.
            victim.kill()
            at_kill = [r for r in rows() if r.customer_id in batch]
            # What it recorded before dying (a flush comes each second on a slow machine) stays recorded.
            recorded = {r.customer_id for r in at_kill if r.state == "processed"}
            held = [r for r in at_kill if r.state == "pending"]
            assert recorded <= set(synced_by_victim) and len(held) == 200 - 10 * len(recorded)
            assert all(owners.owner_of(r.claimed_by).pid == victim.pid for r in held)
            lease_end = max(aware(r.claimed_until) for r in held)
            wait_until(lambda: eventlog.counts() == {"processed": 400}, 60, "every event processed")
            assert [o.terminate() for o in others] == [0, 0]
    finally:
        proxy.close()
        if victim.proc.poll() is None:
            victim.kill()

    final = {r.id: r for r in rows()}
    for r in held:
        after = final[r.id]
        assert after.state == "processed" and aware(after.processed_at) > lease_end, "taken over only once its lease ran out"
    # Stripe saw every customer synced; those the victim synced but never recorded were synced again.
    reads = stripe.customer_reads()
    assert reads == Counter({c: 2 if c in synced_by_victim and c not in recorded else 1 for c in customers})
