"""The only module that imports `stripe`.

Everything else talks to Stripe (or the offline sandbox: same SDK, another base
address) through `stripe_client()` and `call()` / `list_all()`, and gets plain dicts
back and `StripeFailure` instead of the SDK's types, so no other module depends on them.
Everything the app reads from Stripe passes `_plain`, so that is where a NUL, which PostgreSQL
cannot store, is dropped from Stripe's text (`text.without_nul`). A webhook's body is stored as
sent (its payload column is text) and only names the customer to read again.
"""

from __future__ import annotations

import functools
import json
import logging
import threading

import stripe

from billing_app.errors import AppError, ErrorCode
from billing_app.settings import get_settings
from billing_app.text import without_nul

log = logging.getLogger(__name__)
SIGNATURE_TOLERANCE_SECONDS = 300

# Counts every call made through the client, so tests can prove a page render makes none.
call_counter = {"count": 0}
_counter_lock = threading.Lock()  # the bulk reconcile calls from several threads


# Each attempt's connect and read timeout (httpx; the SDK's default is 80 s), and the SDK's retries
# (POSTs keep their idempotency key, so a retry never makes a second object). Stripe answers in
# seconds; this bounds how long a dead connection holds a request and the org's claims on it
# (`worst_case_call_seconds`, below the claims' 120 s: tests/billing/test_claim_lapse.py).
TIMEOUT_SECONDS = 30
NETWORK_RETRIES = 2


def worst_case_call_seconds() -> float:
    """The longest one call takes when every attempt times out (plus the SDK's backoff, at most 2 s
    a retry); an answer that trickles in byte by byte can still take longer."""
    return (NETWORK_RETRIES + 1) * TIMEOUT_SECONDS + NETWORK_RETRIES * 2


UNAVAILABLE_MESSAGE = "We could not reach the payment provider. Please try again."


def unavailable() -> AppError:
    """What a user is told when Stripe could not be reached (502 STRIPE_UNAVAILABLE)."""
    return AppError(ErrorCode.STRIPE_UNAVAILABLE, UNAVAILABLE_MESSAGE)


class StripeFailure(Exception):
    """Stripe refused or could not be reached. `message` is Stripe's text, for the logs only."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None, card_error: bool = False,
                 retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.card_error = card_error
        # Seconds Stripe asked us to wait (its Retry-After header, on a 429), if it said.
        self.retry_after = retry_after


class _CountingHTTPClient(stripe.HTTPXClient):
    def request(self, *args, **kwargs):
        with _counter_lock:
            call_counter["count"] += 1
        return super().request(*args, **kwargs)


@functools.lru_cache(maxsize=1)
def stripe_client() -> stripe.StripeClient:
    settings = get_settings()
    if not settings.billing_configured:
        raise AppError(ErrorCode.BILLING_NOT_CONFIGURED, "Billing is not configured.")
    options = {"max_network_retries": NETWORK_RETRIES,
               "http_client": _CountingHTTPClient(timeout=TIMEOUT_SECONDS, allow_sync_methods=True)}
    if settings.stripe_api_base:
        options["base_addresses"] = {"api": str(settings.stripe_api_base).rstrip("/")}
    return stripe.StripeClient(settings.stripe_secret_key, **options)


def reset_client() -> None:
    """Forget the cached client (settings changed, e.g. in tests)."""
    stripe_client.cache_clear()


def _plain(value):
    return without_nul(value.to_dict() if isinstance(value, stripe.StripeObject) else value)


# StripeFailure.code of a key sent again with other parameters (Stripe gives such an error no code).
IDEMPOTENCY_ERROR = "idempotency_error"


def _failure(error: stripe.StripeError) -> StripeFailure:
    status = getattr(error, "http_status", None)
    code = IDEMPOTENCY_ERROR if isinstance(error, stripe.IdempotencyError) else getattr(error, "code", None)
    message = without_nul(error.user_message or str(error))  # may reach the event log's last_error
    log.warning("stripe call failed: status=%s code=%s message=%s", status, code, message)
    return StripeFailure(message, code=code, status=status, card_error=isinstance(error, stripe.CardError),
                         retry_after=_retry_after(getattr(error, "headers", None)))


def _retry_after(headers) -> float | None:
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None
    return None


def call(fn, *args, **kwargs):
    """Run one SDK call; the result as plain dicts, the SDK's exceptions as StripeFailure."""
    try:
        return _plain(fn(*args, **kwargs))
    except stripe.StripeError as error:
        raise _failure(error) from error


def list_all(list_method, params: dict) -> list[dict]:
    """Every object of a list endpoint (all pages), as plain dicts."""
    try:
        return [_plain(obj) for obj in list_method(params={"limit": 100, **params}).auto_paging_iter()]
    except stripe.StripeError as error:
        raise _failure(error) from error


def list_page(list_method, params: dict) -> tuple[list[dict], bool]:
    """One page of a list endpoint (for callers that keep their own cursor): its objects and has_more."""
    try:
        page = list_method(params={"limit": 100, **params})
    except stripe.StripeError as error:
        raise _failure(error) from error
    return [_plain(obj) for obj in page.data], bool(page.has_more)


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
