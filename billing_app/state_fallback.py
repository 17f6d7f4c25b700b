"""Pages keep working while Redis is down: Reflex's Redis state manager, with this process's memory as a fallback.

With REFLEX_REDIS_URL every backend keeps page states in Redis (Reflex's StateManagerRedis), so
a page's next connection may land on any backend. That manager has no fallback of its own: with
Redis unreachable no event can be handled, so no page works. `RedisWithFallback` extends it: when
taking a state from Redis fails with a connection error, the state is handled in this process's
memory instead (Reflex's StateManagerMemory), and for `RETRY_SECONDS` every state is, before
Redis is tried again.

What a page loses meanwhile: a state that lived in Redis starts afresh in memory (the page's
on_load fills it again at its next load; a sign-in is the session cookie, so nobody is signed
out), and once Redis is back the page's state is Redis's again (the memory copy is dropped; the
frontend keeps what it shows until its next change or load). A change that failed to be
written back to Redis at the end of an event is logged; the browser already has its delta. An
event whose state was read from Redis just before it went away, and that then needs another part
of that state from Redis, fails (once: the next events use memory).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator

from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError
from reflex.istate.manager.memory import StateManagerMemory
from reflex.istate.manager.redis import StateManagerRedis

log = logging.getLogger(__name__)
RETRY_SECONDS = 5.0  # while Redis is down, try it again this often (each try costs one refused connection)
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError, OSError)


class RedisWithFallback(StateManagerRedis):
    """StateManagerRedis (Reflex checks for that class when it reads a substate from Redis) that
    falls back to a StateManagerMemory while Redis is unreachable. `install` turns the app's own
    manager into one, keeping its Redis client and settings."""

    _memory: StateManagerMemory
    _down_until: float

    @property
    def redis_down(self) -> bool:
        return time.monotonic() < self._down_until

    def _went_down(self, error: BaseException) -> None:
        if not self.redis_down:
            log.warning("Redis unreachable (%s): page states are kept in this process's memory for now", error)
        self._down_until = time.monotonic() + RETRY_SECONDS

    async def get_state(self, token, *args, **kwargs):
        if kwargs.get("for_state_instance") is not None:
            # A substate for a tree read from Redis moments ago: memory holds no part of that tree.
            # Redis failing mid-event fails this one event; the next ones use memory.
            try:
                return await super().get_state(token, *args, **kwargs)
            except REDIS_DOWN as error:
                self._went_down(error)
                raise
        if not self.redis_down:
            try:
                return await super().get_state(token, *args, **kwargs)
            except REDIS_DOWN as error:
                self._went_down(error)
        return await self._memory.get_state(token)

    async def set_state(self, token, state, **context):
        if not self.redis_down:
            try:
                return await super().set_state(token, state, **context)
            except REDIS_DOWN as error:
                self._went_down(error)
        # Not into memory: a state read from Redis holds only the substates an event needed, and
        # memory's trees must be whole. The next event starts a whole one there.
        return None

    @contextlib.asynccontextmanager
    async def modify_state(self, token, **context) -> AsyncIterator:
        manager = None
        if not self.redis_down:
            manager = super().modify_state(token, **context)
            try:
                state = await manager.__aenter__()
            except REDIS_DOWN as error:
                self._went_down(error)
                manager = None
        if manager is None:
            async with self._memory.modify_state(token, **context) as state:
                yield state
            return
        try:
            yield state
        except BaseException:
            if not await manager.__aexit__(*sys.exc_info()):
                raise
        else:
            try:
                await manager.__aexit__(None, None, None)
            except REDIS_DOWN as error:  # the browser has the delta; Redis keeps the state before it
                self._went_down(error)

    async def close(self):
        await self._memory.close()
        await super().close()


def install(app) -> None:
    """Make the app's state manager fall back to memory when it is Reflex's Redis one (REFLEX_REDIS_URL)."""
    manager = app._state_manager
    if type(manager) is StateManagerRedis:
        manager.__class__ = RedisWithFallback
        manager._memory = StateManagerMemory()
        manager._down_until = 0.0
