"""Waking the webhook workers of other processes (several backends, `python -m billing_app worker`).

In one process the webhook route wakes the worker directly (`signal.notify`). When the workers run
as processes of their own (RUN_WORKERS_IN_BACKEND=false) and REDIS_URL is set, each backend
forwards its "an event was stored" signals to the Redis channel `<REDIS_KEY_PREFIX>wake:webhooks`
(a burst as one message), and each worker process wakes its webhook worker on a message there.
Best effort: without Redis, or while it is down, a worker finds new events at its next poll
(WEBHOOK_POLL_SECONDS), as before.
"""

from __future__ import annotations

import structlog

from billing_app import pubsub
from billing_app.settings import get_settings
from billing_app.webhooks import signal

log = structlog.get_logger("billing_app.webhooks")


def channel() -> str:
    return f"{get_settings().redis_key_prefix}wake:webhooks"


async def forward_stored_events() -> None:
    """Backend lifespan task: publish this process's "an event was stored" on Redis, for the worker
    processes. Returns at once when the workers run in this process or there is no Redis."""
    settings = get_settings()
    if settings.run_workers_in_backend or not settings.redis_url:
        return
    import redis.asyncio as redis

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
    failing = False
    try:
        with signal.listen() as stored:
            while True:
                await stored.wait()
                stored.clear()  # the events stored meanwhile ride on this one message
                try:
                    await client.publish(channel(), b"1")
                    failing = False
                except Exception as error:  # the workers' next poll finds the events
                    if not failing:
                        log.warning("webhook.wake_not_published", error=f"{type(error).__name__}: {error}")
                    failing = True
    finally:
        await client.aclose()


async def wake_on_stored_events() -> None:
    """Worker-process task: wake this process's webhook worker when a backend stored an event
    (and once when the subscription comes back after a Redis outage). Returns at once without Redis."""
    url = get_settings().redis_url
    if not url:
        return
    await pubsub.follow(url, channel(), lambda _data: signal.notify(), on_resubscribed=signal.notify)
