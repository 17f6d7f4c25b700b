"""`python -m billing_app worker`: the webhook worker and the mail worker as a process of their own.

For the scaled topology (several backends with RUN_WORKERS_IN_BACKEND=false, M of these
beside them): the same loops the backend otherwise runs as lifespan tasks, until SIGTERM or
SIGINT. Then it drains: the webhook worker claims nothing more, finishes the sync in
flight, records it and gives the rest of its claimed events back untried (due again at
once for the other workers, the attempt not counted); the mail worker finishes the pass
it is in. Nothing stays leased by a process that exited cleanly, and the exit status is 0.
"""

from __future__ import annotations

import asyncio
import os
import signal as os_signal

import structlog

from billing_app.notifications.worker import run_mail_worker
from billing_app.settings import get_settings
from billing_app.webhooks import wake
from billing_app.webhooks.worker import Worker, run_worker

log = structlog.get_logger("billing_app.webhooks")


def run() -> int:
    """Run both workers until SIGTERM/SIGINT, then drain; the exit status (0)."""
    settings = get_settings()  # a bad value stops here with one line
    if not settings.billing_configured:
        log.warning("worker.billing_not_configured", hint="set STRIPE_SECRET_KEY; every sync fails until then")
    # asyncio.run waits for the passes in flight in its threads before it returns.
    return asyncio.run(_serve())


async def _serve() -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (os_signal.SIGTERM, os_signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    webhooks = Worker()
    webhook_task = asyncio.create_task(run_worker(worker=webhooks))
    mail_task = asyncio.create_task(run_mail_worker())
    wake_task = asyncio.create_task(wake.wake_on_stored_events())  # a backend stored an event: now, not at the next poll
    log.info("worker.started", pid=os.getpid())
    stopped = asyncio.create_task(stop.wait())
    # Until a signal (or, never expected, a loop ending on its own).
    await asyncio.wait([stopped, webhook_task, mail_task], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    log.info("worker.draining", pid=os.getpid())
    webhooks.stop()
    wake_task.cancel()
    mail_task.cancel()  # its pass in flight (a thread) runs to its end; asyncio.run waits for it
    results = await asyncio.gather(webhook_task, mail_task, return_exceptions=True)
    crashed = [r for r in results if isinstance(r, Exception)]  # CancelledError is not an Exception
    for error in crashed:
        log.error("worker.crashed", error=f"{type(error).__name__}: {error}")
    log.info("worker.stopped", pid=os.getpid())
    return 1 if crashed else 0
