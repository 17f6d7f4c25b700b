"""The worker as the backend runs it: a Reflex lifespan task that wakes when the route stores an event."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field

import httpx

from billing_app.api import build_api
from billing_app.webhooks import eventlog
from billing_app.webhooks.worker import run_worker
from tests.aio import run_async
from tests.webhooks.helpers import CountingSync, cancel_when, event, rows, sign


def test_the_backend_registers_the_worker_as_a_lifespan_task():
    from billing_app.billing_app import app

    assert run_worker in app.get_lifespan_tasks()


@dataclass
class Report:
    org_id: int | None
    changes: list[str] = field(default_factory=list)


def test_the_running_worker_wakes_on_a_stored_event_and_refreshes_changed_orgs(webhook_secrets):
    sync_calls = CountingSync()
    refreshed: list[set[int]] = []

    def sync(customer_id):
        sync_calls(customer_id)
        return Report(org_id=7, changes=["subscription sub_1: status 'active' -> 'canceled'"])

    async def on_change(org_ids):
        refreshed.append(set(org_ids))

    async def scenario():
        # A poll interval far longer than the wait below: only the route's wake-up can explain a quick pass.
        worker = asyncio.create_task(run_worker(sync, poll_seconds=60, gather_seconds=1.0, on_change=on_change))
        await asyncio.sleep(0.2)  # the worker has made its first (empty) pass and sleeps
        transport = httpx.ASGITransport(app=build_api())
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            bodies = [json.dumps(event("customer.subscription.updated", "cus_live")) for _ in range(10)]
            responses = await asyncio.gather(*[
                client.post("/api/stripe/webhook", content=body, headers={"Stripe-Signature": sign(body)}) for body in bodies
            ])
        assert all(r.status_code == 200 for r in responses)
        # Rows are marked inside a pass and the pages refreshed after it: wait for both before stopping.
        await cancel_when(worker, lambda: eventlog.counts() == {"processed": 10} and refreshed)

    run_async(scenario())
    assert {r.state for r in rows()} == {"processed"}
    assert sync_calls.calls == ["cus_live"]  # the burst gathered into one sync
    assert refreshed == [{7}]


def test_the_worker_survives_a_failing_sync_and_keeps_the_failure_on_the_row(webhook_secrets, post):
    post(event("invoice.payment_failed", "cus_down"))

    def sync(_customer_id):
        raise ConnectionError("sandbox unreachable")

    async def scenario():
        worker = asyncio.create_task(run_worker(sync, poll_seconds=0.05, on_change=None))
        for _ in range(100):
            if rows()[0].attempts:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        assert not worker.done()  # still running after the failure
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)

    run_async(scenario())
    (failed,) = rows()
    assert (failed.state, failed.attempts, failed.last_error) == ("pending", 1, "ConnectionError: sandbox unreachable")


def test_a_changed_org_is_announced_as_soon_as_its_sync_ends_not_after_the_whole_pass(webhook_secrets):
    # Two customers in one pass: the second one's sync waits for the first one's org to be announced.
    # Announcing only at the end of the pass would leave it waiting out its 5 s.
    announced = threading.Event()
    announced_in_time: list[bool] = []

    def sync(customer_id):
        if customer_id == "cus_second":
            announced_in_time.append(announced.wait(5))
            return Report(org_id=2, changes=["plan changed"])
        return Report(org_id=1, changes=["status changed"])

    refreshed: list[set[int]] = []

    async def on_change(org_ids):
        refreshed.append(set(org_ids))
        announced.set()

    async def scenario():
        worker = asyncio.create_task(run_worker(sync, poll_seconds=60, gather_seconds=1.0, on_change=on_change))
        await asyncio.sleep(0.2)
        transport = httpx.ASGITransport(app=build_api())
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            for customer in ("cus_first", "cus_second"):  # stored in this order, so synced in this order
                body = json.dumps(event("customer.subscription.updated", customer))
                response = await client.post("/api/stripe/webhook", content=body, headers={"Stripe-Signature": sign(body)})
                assert response.status_code == 200
        await cancel_when(worker, lambda: eventlog.counts() == {"processed": 2} and len(refreshed) == 2)

    run_async(scenario())
    assert announced_in_time == [True]
    assert refreshed == [{1}, {2}]
