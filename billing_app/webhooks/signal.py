"""The in-process signals between the delivery side (route, ingest, replay) and the worker.

Two facts cross between them, both within one process and both best effort:

- "an event was stored": `notify()` wakes the worker loops waiting in `listen()` now,
  instead of at their next poll;
- "deliveries are being stored right now": `ingest_busy()`, true while a registered
  ingest writer is busy (`on_ingest`), so the worker lets them have the database first.

Nothing here imports the route, the ingest writer or the worker: each side imports this.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

_wakeups: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
_ingest: list[Callable[[], bool]] = []


def notify() -> None:
    """Wake the worker(s) of this process now (called after an event is stored); safe from any thread."""
    for loop, event in list(_wakeups):
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            event.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(event.set)


@contextlib.contextmanager
def listen() -> Iterator[asyncio.Event]:
    """An asyncio.Event of the running loop that every `notify()` sets while the block runs."""
    wake = asyncio.Event()
    entry = (asyncio.get_running_loop(), wake)
    _wakeups.append(entry)
    try:
        yield wake
    finally:
        _wakeups.remove(entry)


def on_ingest(busy: Callable[[], bool]) -> None:
    """Register an ingest writer's "busy right now" test (the process's writer does, once)."""
    _ingest.append(busy)


def ingest_busy() -> bool:
    """Deliveries are being stored in this process right now (no writer registered: never)."""
    return any(busy() for busy in _ingest)
