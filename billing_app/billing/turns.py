"""One organization's Stripe actions run one at a time in each process, awaited on the event loop.

An action that waits for an org claim (a checkout's, a seat change's: billing/reservations.py)
would otherwise wait in a server thread: a burst for one org (racing buys, a script, a hostile
page's background events) took every thread of the pool, and every other org's requests waited
behind it. Queued here, the burst holds one thread; the claims still order processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator

from billing_app.billing.reservations import WAIT_SECONDS
from billing_app.errors import AppError, RateLimited

# Per event loop (a backend's; tests run several), per org: its lock and how many hold or await it.
_turns: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def busy() -> AppError:
    return RateLimited(5, "Your organization's other billing changes are still being made. Please try again in a moment.")


@contextlib.asynccontextmanager
async def org_turn(org_id: int, when_busy: AppError | None = None) -> AsyncIterator[None]:
    """Hold the org's turn for the block; after WAIT_SECONDS of waiting raise `when_busy` (default `busy()`)."""
    turns = _turns.setdefault(asyncio.get_running_loop(), {})
    lock, users = turns.get(org_id) or (asyncio.Lock(), 0)
    turns[org_id] = (lock, users + 1)
    try:
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                await lock.acquire()
        except TimeoutError:
            raise (when_busy or busy()) from None
        try:
            yield
        finally:
            lock.release()
    finally:
        lock, users = turns[org_id]
        if users == 1:
            del turns[org_id]
        else:
            turns[org_id] = (lock, users - 1)
