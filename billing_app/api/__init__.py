"""HTTP routes served by the backend through rx.App(api_transformer=...)."""

from __future__ import annotations

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from billing_app import routes
from billing_app.db import get_engine
from billing_app.webhooks.route import PATH as STRIPE_WEBHOOK_PATH, stripe_webhook


async def health(_request: Request) -> JSONResponse:
    """Liveness plus a database round trip, for `make run` and the test harness to wait on."""
    with get_engine().connect() as connection:
        connection.execute(text("SELECT 1"))
    return JSONResponse({"status": "ok"})


def build_api() -> Starlette:
    from billing_app.api import exports, rest, session

    return Starlette(
        routes=[
            Route(routes.API_HEALTH, health),
            Route(routes.API_SESSION_LOGIN, session.login, methods=["POST"]),
            Route(routes.API_SESSION_REGISTER, session.register, methods=["POST"]),
            Route(routes.API_SESSION_LOGOUT, session.logout, methods=["GET", "POST"]),
            Route(STRIPE_WEBHOOK_PATH, stripe_webhook, methods=["GET", "PUT", "PATCH", "DELETE", "POST"]),
            Route(routes.API_PAYMENTS_CSV, exports.payments_csv, methods=["GET"]),
            # Last: the REST API takes every other path under /api (JSON 404 for unknown ones).
            rest.mount(),
        ]
    )
