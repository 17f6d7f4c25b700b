"""Webhook workers on PostgreSQL, as the scaled topology runs them: several at once.

Claims use FOR UPDATE SKIP LOCKED, under a transaction-level advisory lock that makes the
claim step one at a time (SKIP LOCKED locks rows, not customers). Counted by what Stripe (the
sandbox's own request log) saw: one customer read per sync.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import update

from billing_app.db import get_engine
from billing_app.models import WebhookEvent
from billing_app.webhooks import eventlog
from tests.scale.worker_helpers import postgres_schema, store_burst


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
