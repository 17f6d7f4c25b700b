"""A backend for the balancer tests: answers the address the app's own `client_ip` sees, and the
length of a body it reads (through the real BodyLimit, as /api is served).

Served by Granian (as the real backends are) with REFLEX_TRUSTED_PROXY_HOPS=1, so a test sees
what a per-address rate limit would count behind the balancer.
"""

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute

import billing_app.api.rest  # noqa: F401  (first, as in the backend: api.session alone would import it half-way)
from billing_app.api.body_limit import BodyLimit
from billing_app.api.clients import client_ip


async def whoami(request):
    return PlainTextResponse(client_ip(request) + "\n")


async def length(request):
    return PlainTextResponse(f"{len(await request.body())}\n")


async def echo(websocket):
    await websocket.accept()
    await websocket.send_text(await websocket.receive_text())
    await websocket.close()


app = Starlette(
    middleware=[Middleware(BodyLimit)],
    routes=[Route("/api/whoami", whoami), Route("/api/length", length, methods=["POST"]), WebSocketRoute("/_event", echo)],
)
