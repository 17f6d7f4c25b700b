"""What the background workers (webhooks, mail) share: they work in passes.

A pass (`run_once()`, blocking: database and network calls) claims a batch of due rows and
reports how many it claimed (`.claimed`). The loops run each pass in a thread, off Reflex's
event loop, and back off while passes fail (e.g. the database is unreachable).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

MAX_BACKOFF_SECONDS = 30.0


class Report(Protocol):
    claimed: int


class PassWorker:
    """Base for a worker made of passes."""

    def run_once(self) -> Report:
        raise NotImplementedError

    def drain(self, max_passes: int = 1000) -> list:
        """Run passes until nothing is due (bounded); for tests, benchmarks and scripts."""
        reports = []
        for _ in range(max_passes):
            report = self.run_once()
            if not report.claimed:
                break
            reports.append(report)
        return reports


class Backoff:
    """Runs passes in a thread; after n failures in a row it waits poll × 2ⁿ seconds (at most 30 s)."""

    def __init__(self, poll_seconds: float, log, error_event: str, nap: Callable[[float], Awaitable] = asyncio.sleep):
        self.poll_seconds = poll_seconds
        self.log = log
        self.error_event = error_event
        self.nap = nap
        self.failures = 0

    async def run(self, run_once: Callable[[], Report]) -> Report | None:
        """The pass's report, or None when it failed (logged, and waited out)."""
        try:
            report = await asyncio.to_thread(run_once)
        except Exception as error:  # e.g. the database is unreachable: log, back off, keep going
            self.failures += 1
            self.log.error(self.error_event, error=f"{type(error).__name__}: {error}")
            await self.nap(min(MAX_BACKOFF_SECONDS, self.poll_seconds * 2 ** self.failures))
            return None
        self.failures = 0
        return report
