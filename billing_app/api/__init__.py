"""HTTP routes served by the backend through rx.App(api_transformer=...)."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from billing_app import routes
from billing_app.db import get_engine
from billing_app.webhooks.route import PATH as STRIPE_WEBHOOK_PATH, stripe_webhook

log = logging.getLogger(__name__)


async def health(_request: Request) -> JSONResponse:
    """Liveness plus a database round trip, for `make run` and the test harness to wait on. In a
    thread: a database that is slow to answer (or a full pool) must not hold up the event loop."""
    await asyncio.to_thread(_check_database)
    return JSONResponse({"status": "ok"})


def _check_database() -> None:
    with get_engine().connect() as connection:
        connection.execute(text("SELECT 1"))


async def _check_redis(url: str) -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def ready(_request: Request) -> JSONResponse:
    """Readiness for a load balancer: 200 when the database and Redis (if configured) answer,
    else 503 in the error envelope naming what is down (`/api/health` stays plain liveness). The
    route is public: why a check failed goes to the log, not to the caller."""
    from billing_app.api.rest.errors import envelope
    from billing_app.errors import ErrorCode
    from billing_app.settings import get_settings

    checks: dict[str, str] = {}
    problems: list[str] = []
    try:
        await asyncio.wait_for(asyncio.to_thread(_check_database), timeout=5)
        checks["database"] = "ok"
    except Exception:
        log.warning("readiness: the database does not answer", exc_info=True)
        checks["database"] = "down"
        problems.append("the database does not answer")
    redis_url = get_settings().redis_url
    if redis_url:
        try:
            await asyncio.wait_for(_check_redis(redis_url), timeout=5)
            checks["redis"] = "ok"
        except Exception:
            log.warning("readiness: Redis does not answer", exc_info=True)
            checks["redis"] = "down"
            problems.append("Redis does not answer: live updates reach other backends' pages at their next load")
    if problems:
        return envelope(503, ErrorCode.NOT_READY, "Not ready: " + "; ".join(problems) + ".")
    return JSONResponse({"status": "ready", "checks": checks})


def build_api() -> Starlette:
    from billing_app.api import exports, rest, session
    from billing_app.api.body_limit import BodyLimit

    return Starlette(
        # Outside every route (and Reflex's, mounted under this app: it passes those through).
        middleware=[Middleware(BodyLimit)],
        routes=[
            Route(routes.API_HEALTH, health),
            Route(routes.API_READY, ready),
            Route(routes.API_SESSION_LOGIN, session.login, methods=["POST"]),
            Route(routes.API_SESSION_REGISTER, session.register, methods=["POST"]),
            Route(routes.API_SESSION_LOGOUT, session.logout, methods=["GET", "POST"]),
            Route(STRIPE_WEBHOOK_PATH, stripe_webhook, methods=["GET", "PUT", "PATCH", "DELETE", "POST"]),
            Route(routes.API_PAYMENTS_CSV, exports.payments_csv, methods=["GET"]),
            # Last: the REST API takes every other path under /api (JSON 404 for unknown ones).
            rest.mount(),
        ]
    )
