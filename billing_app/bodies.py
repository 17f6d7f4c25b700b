"""Reading a request body without trusting its size: at most N bytes, whatever Content-Length says."""

from __future__ import annotations

from collections.abc import AsyncIterable


async def read_at_most(chunks: AsyncIterable[bytes], limit: int) -> bytes | None:
    """The body from `chunks` (e.g. `request.stream()`), or None as soon as it passes `limit` bytes:
    the rest is never read, so a caller about to be refused costs at most `limit` bytes of memory."""
    body, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            return None
        body.append(chunk)
    return b"".join(body)
