"""Every request body under /api is capped before any route reads it (build_api's middleware).

FastAPI reads and parses a JSON body before a route's dependencies run, so without this a caller
with no token could make a backend hold any amount of memory before the 401. A body declared
(Content-Length) or streamed (chunked) past its path's cap gets 413 PAYLOAD_TOO_LARGE in the /api
envelope, having been read no further; a body within it is passed on whole. Reflex's own paths
(`/_event`, `/_upload`, ...) and websockets go through untouched.
"""

from __future__ import annotations

import structlog
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billing_app import routes
from billing_app.api.rest.errors import envelope
from billing_app.bodies import read_at_most
from billing_app.errors import ErrorCode
from billing_app.webhooks.route import MAX_BODY_BYTES as WEBHOOK_MAX_BODY_BYTES

log = structlog.get_logger("billing_app.api")

# The largest body a REST route or a session form takes is a few KB.
API_MAX_BODY_BYTES = 64 * 1024


def body_cap(path: str) -> int | None:
    """The most bytes a request to `path` may send, or None for a path that is not ours."""
    if path == routes.API_STRIPE_WEBHOOK:
        return WEBHOOK_MAX_BODY_BYTES
    if path == routes.API_PREFIX or path.startswith(routes.API_PREFIX + "/"):
        return API_MAX_BODY_BYTES
    return None


class BodyLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cap = body_cap(scope["path"]) if scope["type"] == "http" else None
        if cap is None:
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        body = None
        if not (declared.isdigit() and int(declared) > cap):
            try:
                body = await read_at_most(Request(scope, receive).stream(), cap)
            except ClientDisconnect:
                return
        if body is None:
            client = scope.get("client")
            log.warning("request.body_too_large", path=scope["path"], cap=cap, client=client[0] if client else None)
            response = envelope(413, ErrorCode.PAYLOAD_TOO_LARGE, f"The request body is larger than {cap // 1024} KiB.")
            await response(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` for the app: the body read here, then the server's own messages (a disconnect)."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
