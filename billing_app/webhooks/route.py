"""POST /api/stripe/webhook: verify the signature, store the event once, answer 200.

The route does only what must happen before Stripe gets its answer: check
`Stripe-Signature` on the raw body (any of the configured secrets, for rotation;
300 s tolerance) and one INSERT ... ON CONFLICT DO NOTHING, shared with concurrent
deliveries (`ingest`: group commit). The worker does the rest.
A bad or missing signature gets 400, a log line and no row.

Errors answer in the envelope of the rest of /api, `{"success": false, "error_code",
"message"}`, with codes from `billing_app.errors.ErrorCode`; the log line names the
precise reason (signature_invalid, event_malformed, payload_too_large, store_failed).
"""

from __future__ import annotations

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse

from billing_app import routes
from billing_app.billing.gateway import verify_webhook
from billing_app.bodies import read_at_most
from billing_app.errors import ErrorCode
from billing_app.settings import get_settings
from billing_app.webhooks.ingest import writer
from billing_app.webhooks.signal import notify

log = structlog.get_logger("billing_app.webhooks")

# The URL to give Stripe (and the sandbox): <backend>/api/stripe/webhook.
PATH = routes.API_STRIPE_WEBHOOK
# Stripe's events are a few KB (large invoices some tens of KB); this refuses abuse, not events.
MAX_BODY_BYTES = 1024 * 1024


def _error(status: int, code: ErrorCode, message: str, headers: dict | None = None) -> JSONResponse:
    """The /api error envelope, as the REST API answers it."""
    body = {"success": False, "error_code": code.value, "message": message}
    return JSONResponse(body, status_code=status, headers=headers)


def _refuse(request: Request, reason: str, message: str, detail: str = "", status: int = 400,
            code: ErrorCode = ErrorCode.VALIDATION_ERROR) -> JSONResponse:
    """A refusal of what was sent, with a fixed message (400 unless told); the reason and detail go to the log only."""
    client = request.client.host if request.client else None
    log.warning("webhook.rejected", reason=reason, detail=(detail or message)[:200], client=client)
    return _error(status, code, message)


def _well_formed(event) -> bool:
    return (
        isinstance(event, dict)
        and isinstance(event.get("id"), str) and 0 < len(event["id"]) <= 255
        and isinstance(event.get("type"), str) and 0 < len(event["type"]) <= 100
    )


async def stripe_webhook(request: Request) -> JSONResponse:
    if request.method != "POST":  # routed here for every method, so the REST mount after it cannot answer 404
        return _error(405, ErrorCode.METHOD_NOT_ALLOWED, "POST only.", headers={"Allow": "POST"})
    body = await read_at_most(request.stream(), MAX_BODY_BYTES)  # read before the signature is checked, so bounded
    if body is None:
        return _refuse(request, "payload_too_large", "The body is larger than any Stripe event.",
                       status=413, code=ErrorCode.PAYLOAD_TOO_LARGE)
    try:
        event = verify_webhook(body, request.headers.get("stripe-signature"), get_settings().webhook_secrets)
    except ValueError as error:
        return _refuse(request, "signature_invalid", "Missing or invalid Stripe-Signature.", str(error))
    if not _well_formed(event):
        return _refuse(request, "event_malformed", "The body is not a Stripe event (id and type).")
    # The signature check proved these bytes are UTF-8 JSON from Stripe; store them as sent.
    # The answer waits for the commit (group commit with concurrent deliveries, off the event loop).
    try:
        stored = await writer.store(event, body.decode("utf-8"))
    except Exception as error:  # the database is unavailable: non-2xx, so Stripe retries later
        log.error("webhook.store_failed", event_id=event["id"], error=f"{type(error).__name__}: {error}")
        return _error(503, ErrorCode.SERVICE_UNAVAILABLE, "Try again later.")
    if stored:
        notify()
    return JSONResponse({"received": True, "duplicate": not stored})
