"""The only module that imports `stripe`.

Everything else talks to Stripe (or the offline sandbox: same SDK, another base
address) through `stripe_client()` and gets `StripeFailure` instead of the SDK's
exception classes. Objects come back as the SDK's StripeObjects, which read like dicts.
"""

from __future__ import annotations

import functools
import json
import logging

import stripe

from billing_app.errors import AppError, ErrorCode
from billing_app.settings import get_settings

log = logging.getLogger(__name__)
SIGNATURE_TOLERANCE_SECONDS = 300

# Counts every call made through the client, so tests can prove a page render makes none.
call_counter = {"count": 0}


class StripeFailure(Exception):
    """Stripe refused or could not be reached. `message` is Stripe's text, for the logs only."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None, card_error: bool = False):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.card_error = card_error


class _CountingHTTPClient(stripe.HTTPXClient if hasattr(stripe, "HTTPXClient") else stripe.RequestsClient):
    def request(self, *args, **kwargs):
        call_counter["count"] += 1
        return super().request(*args, **kwargs)


@functools.lru_cache(maxsize=1)
def stripe_client() -> stripe.StripeClient:
    settings = get_settings()
    if not settings.billing_configured:
        raise AppError(ErrorCode.BILLING_NOT_CONFIGURED, "Billing is not configured.")
    options = {"max_network_retries": 2, "http_client": _CountingHTTPClient()}
    if settings.stripe_api_base:
        options["base_addresses"] = {"api": str(settings.stripe_api_base).rstrip("/")}
    return stripe.StripeClient(settings.stripe_secret_key, **options)


def reset_client() -> None:
    """Forget the cached client (settings changed, e.g. in tests)."""
    stripe_client.cache_clear()


def call(fn, *args, **kwargs):
    """Run one SDK call, turning the SDK's exceptions into StripeFailure."""
    try:
        return fn(*args, **kwargs)
    except stripe.StripeError as error:
        status = getattr(error, "http_status", None)
        code = getattr(error, "code", None)
        log.warning("stripe call failed: status=%s code=%s message=%s", status, code, error.user_message or str(error))
        raise StripeFailure(
            error.user_message or str(error), code=code, status=status, card_error=isinstance(error, stripe.CardError)
        ) from error


def verify_webhook(payload: bytes, signature_header: str | None, secrets: list[str]) -> dict:
    """The event as a dict if any of `secrets` signed this raw body within the tolerance.

    Verifies on the raw bytes and parses with `json`: building the SDK's full object
    tree (`stripe.Webhook.construct_event`) is far slower for the same check.
    """
    if not signature_header or not secrets:
        raise ValueError("missing Stripe-Signature header or webhook secret")
    text = payload.decode("utf-8")
    last_error: Exception | None = None
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(text, signature_header, secret, SIGNATURE_TOLERANCE_SECONDS)
            break
        except stripe.SignatureVerificationError as error:
            last_error = error
    else:
        raise ValueError(f"signature verification failed: {last_error}")
    return json.loads(text)
