"""Following a Redis pub/sub channel from a long-running task, through Redis outages.

Used where one process tells others something that is also found by other means (a page's next
load, a worker's next poll): a message lost while Redis is away costs a delay, never data, and
`on_resubscribed` lets the follower catch up on what it may have missed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)
RECONNECT_SECONDS = 1.0  # the first retry after Redis went away (doubling up to RECONNECT_MAX_SECONDS)
# A retry is one connection attempt, cheap; a longer wait is that much longer without live push after
# Redis is back (state_fallback also retries every 5 s).
RECONNECT_MAX_SECONDS = 5.0


async def follow(url: str, channel: str, on_message: Callable[[bytes], None], *,
                 on_resubscribed: Callable[[], None] | None = None) -> None:
    """Call `on_message(data)` for each message on `channel` (a pattern when it has a `*`), until cancelled.

    When Redis goes away, retry with backoff; once subscribed again call `on_resubscribed()`
    (messages published meanwhile are lost). `on_message` runs on this loop: keep it quick.
    """
    import redis.asyncio as redis

    delay, missed = RECONNECT_SECONDS, False
    while True:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, health_check_interval=10)
        try:
            async with client.pubsub() as pubsub:
                await (pubsub.psubscribe(channel) if "*" in channel else pubsub.subscribe(channel))
                log.info("subscribed to %s", channel)
                delay = RECONNECT_SECONDS
                if missed and on_resubscribed is not None:
                    on_resubscribed()
                missed = False
                async for message in pubsub.listen():
                    if message["type"] in ("message", "pmessage"):
                        on_message(message["data"])
        except asyncio.CancelledError:
            raise
        except Exception as error:  # Redis went away: retry with backoff, catch up afterwards
            log.warning("Redis subscription to %s lost (%s); retrying in %.0f s", channel, error, delay)
            missed = True
            await asyncio.sleep(delay)
            delay = min(RECONNECT_MAX_SECONDS, delay * 2)
        finally:
            await client.aclose()
