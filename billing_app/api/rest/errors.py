"""The REST API's one error envelope, `{success: false, error_code, message}`, for every failure.

Service refusals (AppError), Stripe failures that escaped a service, the database being
unreachable (503 SERVICE_UNAVAILABLE with Retry-After: the failed request's transaction was
rolled back, so a retry is safe), FastAPI's own validation errors and Starlette's 404/405 for
unknown routes all leave through here,
with codes from the shared `ErrorCode` enum. `error_responses(...)` documents, per route,
which statuses and codes it can answer, from the same `HTTP_STATUS` table the handlers use.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import exc as db_errors
from starlette.exceptions import HTTPException as StarletteHTTPException

from billing_app.billing.gateway import StripeFailure, unavailable
from billing_app.errors import HTTP_STATUS, AppError, ErrorCode, RateLimited

log = logging.getLogger(__name__)


ROUTE_NOT_FOUND = ErrorCode.NOT_FOUND
METHOD_NOT_ALLOWED = ErrorCode.METHOD_NOT_ALLOWED
INTERNAL_ERROR = ErrorCode.INTERNAL_ERROR


class ErrorResponse(BaseModel):
    """Every error the API returns."""

    success: Literal[False] = False
    error_code: ErrorCode = Field(description="One of the codes shared with the UI (billing_app/errors.py).")
    message: str = Field(description="A sentence for people; programs should branch on error_code.")


def envelope(status: int, code: ErrorCode, message: str, headers: dict | None = None) -> JSONResponse:
    body = ErrorResponse(error_code=code, message=message).model_dump(mode="json")
    return JSONResponse(body, status_code=status, headers=headers)


def status_of(code: ErrorCode) -> int:
    return HTTP_STATUS.get(code, 400)


def _headers_for(status: int) -> dict | None:
    return {"WWW-Authenticate": "Bearer"} if status == 401 else None


async def _app_error(_request: Request, exc: AppError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else _headers_for(exc.http_status)
    return envelope(exc.http_status, exc.code, exc.message, headers)


async def _stripe_failure(_request: Request, exc: StripeFailure) -> JSONResponse:
    # A service let a Stripe failure through (e.g. the re-sync after a successful change).
    log.warning("stripe failure reached the REST API: %s", exc.message)
    error = unavailable()
    return envelope(error.http_status, error.code, error.message)


# The database could not be reached or could not answer (down, restarting, a dropped connection, the
# connection pool exhausted, SQLite's write lock held too long): temporary, so said as such.
DATABASE_UNAVAILABLE = (db_errors.OperationalError, db_errors.InterfaceError, db_errors.TimeoutError)
RETRY_AFTER_SECONDS = 5


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    cause = getattr(exc, "orig", None) or exc
    log.error("database unavailable during %s %s: %s: %s", request.method, request.url.path, type(cause).__name__, str(cause)[:300])
    code = ErrorCode.SERVICE_UNAVAILABLE
    return envelope(status_of(code), code, "The service is briefly unavailable. Please try again in a moment.",
                    {"Retry-After": str(RETRY_AFTER_SECONDS)})


def _describe(error: dict) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body",)) or "body"
    return f"{where}: {error.get('msg', 'invalid value')}"


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    message = "; ".join(_describe(e) for e in errors[:5]) or "The request is not valid."
    if len(errors) > 5:
        message += f" (and {len(errors) - 5} more)"
    code = ErrorCode.VALIDATION_ERROR
    return envelope(status_of(code), code, message)


async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404:
        return envelope(404, ROUTE_NOT_FOUND, "No such API route.", exc.headers)
    if exc.status_code == 405:
        return envelope(405, METHOD_NOT_ALLOWED, "This route does not accept that method.", exc.headers)
    code = ErrorCode.VALIDATION_ERROR
    if exc.status_code == 400:
        # FastAPI's "error parsing the body" (not JSON, not UTF-8): a validation error like any other.
        return envelope(status_of(code), code, f"The request body is not valid JSON: {exc.detail}", exc.headers)
    return envelope(exc.status_code, code, str(exc.detail), exc.headers)


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error in the REST API", exc_info=exc)
    return envelope(500, INTERNAL_ERROR, "Something went wrong on our side. Please try again.")


def install(app: FastAPI) -> None:
    # A bug still answers in the envelope (Starlette logs it and, in tests, re-raises it).
    app.add_exception_handler(Exception, _unexpected)
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StripeFailure, _stripe_failure)
    for error in DATABASE_UNAVAILABLE:
        app.add_exception_handler(error, _database_unavailable)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


# --- documentation: which statuses and codes each route can answer ------------------------------------

# Every authenticated route is rate limited per token (429 RATE_LIMITED, see deps.py), and looks its
# token up in the database (503 SERVICE_UNAVAILABLE while the database cannot be reached).
AUTH = (ErrorCode.UNAUTHENTICATED, ErrorCode.RATE_LIMITED, ErrorCode.SERVICE_UNAVAILABLE)
ADMIN = (ErrorCode.UNAUTHENTICATED, ErrorCode.FORBIDDEN, ErrorCode.RATE_LIMITED, ErrorCode.SERVICE_UNAVAILABLE)
STRIPE = (ErrorCode.BILLING_NOT_CONFIGURED, ErrorCode.STRIPE_UNAVAILABLE)

_TITLES = {
    401: "No token, an unknown token or a revoked token",
    403: "The token's user has the wrong role in the organization",
    404: "Not found",
    409: "Conflicts with the subscription's current state",
    422: "The request is not valid",
    429: "Too many requests for this token or organization; retry after `Retry-After` seconds",
    502: "Stripe failed or could not be reached",
    503: "Billing is not configured on this server, or the database cannot be reached right now (retry after `Retry-After` seconds)",
}


def _error_schema(codes: list[ErrorCode]) -> dict:
    """ErrorResponse narrowed to the codes one route can answer with one status."""
    schema = ErrorResponse.model_json_schema()
    schema["title"] = "ErrorResponse"
    schema["properties"]["error_code"] = {
        "type": "string", "enum": [c.value for c in codes], "title": "Error Code",
        "description": schema["properties"]["error_code"].get("description", ""),
    }
    schema["properties"]["success"] = {"type": "boolean", "const": False, "title": "Success"}
    schema["required"] = ["success", "error_code", "message"]
    schema.pop("$defs", None)
    return schema


def error_responses(*groups: Iterable[ErrorCode], validation: bool = True, path_params: bool = False) -> dict[int | str, dict]:
    """OpenAPI `responses` for these codes, grouped by HTTP status, each with its exact codes.

    `validation` adds 422 VALIDATION_ERROR (routes with a body or query); `path_params` lets a 404
    also be the unknown-route answer (a path parameter holding a `/` no longer matches the route).
    """
    codes = [code for group in groups for code in group]
    if validation:
        codes.append(ErrorCode.VALIDATION_ERROR)
    by_status: dict[int, list[ErrorCode]] = {}
    for code in dict.fromkeys(codes):
        by_status.setdefault(status_of(code), []).append(code)
    if path_params:
        by_status.setdefault(404, [])
        if ROUTE_NOT_FOUND not in by_status[404]:
            by_status[404].append(ROUTE_NOT_FOUND)
    responses: dict[int | str, dict] = {}
    for status in sorted(by_status):
        names = ", ".join(f"`{c.value}`" for c in by_status[status])
        doc: dict = {
            "description": f"{_TITLES.get(status, 'Error')}: {names}",
            "content": {"application/json": {"schema": _error_schema(by_status[status])}},
        }
        if status == 401:
            doc["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}}
        if status == 429:
            doc["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds until a request is allowed again"}}
        responses[status] = doc
    return responses
