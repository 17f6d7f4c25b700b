"""Group commit for the webhook route: many concurrent deliveries, one durable transaction.

Each request hands its verified event to this process's writer thread and waits for
the commit that contains it, so a 200 still means "durably stored". While one batch
commits, the next requests queue up and go in the next INSERT together: under load the
cost of a transaction (and of SQLite's single write lock and its fsync) is shared by
the whole batch instead of paid per event, and the requests never contend for the
write lock among themselves. A lone request is written at once (no waiting for company).
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
from concurrent.futures import Future

import structlog

from billing_app.webhooks import eventlog, signal

log = structlog.get_logger("billing_app.webhooks")
MAX_BATCH = 256


class GroupCommitWriter:
    def __init__(self, store_events=eventlog.store_events, max_batch: int = MAX_BATCH):
        self._store_events = store_events
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = None
        self.last_write = 0.0  # time.monotonic() when the last batch committed

    def busy(self, within: float = 0.005) -> bool:
        """Deliveries are arriving right now (a batch committed within `within` seconds, or one waits)."""
        return not self._queue.empty() or time.monotonic() - self.last_write < within

    def submit(self, event: dict, payload: str) -> Future:
        """A future that resolves to True (stored) or False (duplicate id) once committed."""
        self._ensure_thread()
        future: Future = Future()
        self._queue.put((event, payload, future))
        return future

    async def store(self, event: dict, payload: str) -> bool:
        return await asyncio.wrap_future(self.submit(event, payload))

    def _ensure_thread(self) -> None:
        # Started lazily, and again in a forked child (threads do not survive a fork).
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._queue = queue.SimpleQueue() if self._pid != os.getpid() else self._queue
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="webhook-ingest", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            # A request whose client went away cancelled its future: skip it (Stripe redelivers).
            # The others are marked running, so they can no longer be cancelled under us.
            batch = [item for item in batch if item[2].set_running_or_notify_cancel()]
            if batch:
                try:
                    self._write(batch)
                except BaseException as error:  # never leave a request waiting, never let the thread die
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(error)

    def _write(self, batch: list) -> None:
        try:
            results = self._store_events([(event, payload) for event, payload, _ in batch])
        except Exception as error:
            if len(batch) == 1:
                batch[0][2].set_exception(error)
                return
            # One bad event must not fail its neighbours: retry them one by one.
            log.warning("webhook.batch_failed", size=len(batch), error=f"{type(error).__name__}: {error}")
            for item in batch:
                self._write([item])
            return
        self.last_write = time.monotonic()
        for (_, _, future), stored in zip(batch, results):
            future.set_result(stored)


writer = GroupCommitWriter()
signal.on_ingest(writer.busy)  # the worker of this process yields to it (`signal.ingest_busy`)
