"""At most ACTIONS_AT_ONCE of one organization's actions run at a time in each process; the rest
wait on the event loop.

An action that waits for an org claim (a checkout's, a seat change's: billing/reservations.py)
would otherwise wait in a server thread: a burst for one org (racing buys, a script, a hostile
page's background events) took every thread of the pool, and every other org's requests waited
behind it. Queued here, one org holds at most ACTIONS_AT_ONCE threads; the claims still order
processes. More than one, so one slow Stripe call does not hold up the org's other actions.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from billing_app.billing.reservations import WAIT_SECONDS
from billing_app.errors import AppError, RateLimited

ACTIONS_AT_ONCE = 2

# Per event loop (a backend's; tests run several), per org: its semaphore and how many hold or await it.
_turns: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

T = TypeVar("T")


def busy() -> AppError:
    return RateLimited(5, "Your organization's other billing changes are still being made. Please try again in a moment.")


@contextlib.asynccontextmanager
async def org_turn(org_id: int, when_busy: AppError | None = None) -> AsyncIterator[None]:
    """Hold one of the org's turns for the block; after WAIT_SECONDS of waiting raise `when_busy` (default `busy()`)."""
    turns = _turns.setdefault(asyncio.get_running_loop(), {})
    slots, users = turns.get(org_id) or (asyncio.Semaphore(ACTIONS_AT_ONCE), 0)
    turns[org_id] = (slots, users + 1)
    try:
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                await slots.acquire()
        except TimeoutError:
            raise (when_busy or busy()) from None
        try:
            yield
        finally:
            slots.release()
    finally:
        slots, users = turns[org_id]
        if users == 1:
            del turns[org_id]
        else:
            turns[org_id] = (slots, users - 1)


async def in_turn(org_id: int, fn: Callable[..., T], *args, when_busy: AppError | None = None) -> T:
    """`fn(*args)` in a thread, in one of the org's turns (a page's action). A caller cancelled
    meanwhile keeps the turn until the thread ends: the turn never counts work that still runs."""
    async with org_turn(org_id, when_busy):
        work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        try:
            return await asyncio.shield(work)
        finally:
            if not work.done():
                await asyncio.wait([work])
