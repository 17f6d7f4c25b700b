"""A webhook event stored by a backend wakes a `worker` process at once, through Redis, instead of
at the worker's next poll (billing_app/webhooks/wake.py)."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
import redis

from billing_app.settings import get_settings
from billing_app.webhooks import eventlog, signal, wake
from tests.scale.helpers import CuttableProxy, real_servers, redis_address, redis_url
from tests.scale.worker_helpers import WorkerProcess, postgres_schema, sandbox_customers, store_burst, wait_until


@pytest.fixture
def pg(monkeypatch):
    if (reason := real_servers()) is not None:
        pytest.skip(reason)
    with postgres_schema(monkeypatch) as url:
        yield url


class _Backend:
    """This test process as a backend whose workers run elsewhere: its `forward_stored_events` task,
    on an event loop of its own in a thread."""

    def __init__(self):
        self.thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self.started = threading.Event()

    async def _main(self) -> None:
        self.loop, self.stop = asyncio.get_running_loop(), asyncio.Event()
        self.started.set()
        task = asyncio.create_task(wake.forward_stored_events())
        await self.stop.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def __enter__(self):
        self.thread.start()
        self.started.wait(10)
        return self

    def __exit__(self, *_exc):
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)


def test_an_event_a_backend_stores_wakes_a_worker_process_through_redis(pg, sandbox, monkeypatch, tmp_path):
    settings = {"REDIS_URL": redis_url(), "REDIS_KEY_PREFIX": f"test_wake_{uuid.uuid4().hex[:8]}:"}
    for name, value in {**settings, "RUN_WORKERS_IN_BACKEND": "false"}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    customer = sandbox_customers(sandbox, 1)[0]
    # Its poll is two minutes: within the 30 s waited below only a wake-up makes it look.
    worker = WorkerProcess(tmp_path / "worker.log", database_url=pg, stripe_base=sandbox.base_url,
                           api_key=sandbox.api_key, WEBHOOK_POLL_SECONDS="120", **settings)
    listeners = redis.Redis.from_url(redis_url())
    try:
        worker.wait_started()
        wait_until(lambda: dict(listeners.pubsub_numsub(wake.channel())).get(wake.channel().encode()) == 1, 30,
                   "the worker to follow the wake channel")
        with _Backend():
            store_burst({customer: 3})

            def stored_and_taken() -> bool:
                signal.notify()  # as the webhook route does once an event is stored (again: the
                return eventlog.counts() == {"processed": 3}  # forwarder may not listen yet)

            wait_until(stored_and_taken, 30, "the worker to take the events at once")
        assert worker.terminate() == 0
    finally:
        listeners.close()
        if worker.proc.poll() is None:
            worker.kill()
        get_settings.cache_clear()


def test_a_backend_goes_on_forwarding_once_redis_is_back(monkeypatch):
    """While Redis is away the forwarder's publishes fail (the workers' poll covers it); it must not
    die of it: once Redis is back, a stored event wakes the workers again."""
    if (reason := real_servers()) is not None:
        pytest.skip(reason)
    proxy = CuttableProxy(redis_address())
    for name, value in {"REDIS_URL": proxy.url, "REDIS_KEY_PREFIX": f"test_wake_{uuid.uuid4().hex[:8]}:",
                        "RUN_WORKERS_IN_BACKEND": "false"}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    direct = redis.Redis.from_url(redis_url())
    worker_side = direct.pubsub()
    worker_side.subscribe(wake.channel())
    worker_side.get_message(timeout=5)  # the subscribe confirmation

    def woken() -> bool:
        signal.notify()  # as the webhook route does once an event is stored
        return worker_side.get_message(timeout=0.2) is not None

    try:
        with _Backend():
            wait_until(woken, 30, "the forwarder to publish")
            proxy.cut()
            for _ in range(5):
                assert not woken()
            proxy.restore()
            wait_until(woken, 30, "the forwarder to publish again after the outage")
    finally:
        worker_side.close()
        direct.close()
        proxy.close()
        get_settings.cache_clear()
