"""Request rate limits, counted with the `limits` library (moving windows).

One call per costly entry point: `hit(LOGIN_IP, client_ip)` raises `RateLimited` (429
RATE_LIMITED, with the seconds until the next allowed request for `Retry-After`) when the
caller is over its limit. What only some requests should spend is counted once the request turned
out to spend it: `hit` after a token was refused (past the limit, the refusal is the 429), or once
an invitation is going to be sent; `check` refuses without counting, for a caller that must be
refused up front (an org over its invitation limit). The limits themselves are settings (RATE_LIMIT_*); the counts live in
RATE_LIMIT_STORAGE: memory:// for one process (the default), redis://... to share them (keys
under REDIS_KEY_PREFIX). When the shared storage cannot be reached (or takes longer than
SOCKET_SECONDS), this process counts in memory and asks it again RETRY_SECONDS later: a Redis
outage loosens the limits to per-process ones, it never refuses every login. Async code counts
with `hit_in_thread`: a count may wait for Redis, the event loop must not.

    LOGIN_IP, LOGIN_EMAIL   every login attempt, per client address and per email
    REGISTER_IP             sign-ups per client address
    STRIPE_ORG              every admin action that calls Stripe, per organization (pages and REST)
    STRIPE_USER             a member's Stripe reads (a checkout's outcome), per user: a member cannot
                            spend the limit the admins' actions need (`hit_stripe` picks the key)
    API_TOKEN               every REST request with a well-formed token, per token (revoked and expired ones too)
    API_AUTH_FAILURES_IP    REST requests whose well-formed token was refused, per client address (only
                            refused tokens are held back: a valid one from that address still works)
    ACCOUNT_USER            password changes, answers to invitations, creating an organization (home page):
                            a user's account actions
    INVITATION_EMAIL        invitation emails per recipient address, whichever org sends them
    INVITATION_ORG          invitation emails per sending organization, whatever the addresses
    RESET_IP                password reset emails asked for, per client address
    RESET_EMAIL             password reset emails per address, whichever clients ask (/forgot sends
                            nothing past it and answers as usual: it must not tell who has an account)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time

from limits import RateLimitItem, parse_many, storage, strategies
from limits.errors import StorageError

from billing_app.errors import RateLimited
from billing_app.settings import get_settings

log = logging.getLogger(__name__)

SOCKET_SECONDS = 2.0  # the longest a count waits for Redis
RETRY_SECONDS = 5.0  # after Redis failed, ask it again this much later (as state_fallback does)

LOGIN_IP = "login_ip"
LOGIN_EMAIL = "login_email"
REGISTER_IP = "register_ip"
STRIPE_ORG = "stripe_org"
STRIPE_USER = "stripe_user"
API_TOKEN = "api_token"
API_AUTH_FAILURES_IP = "api_auth_failures_ip"
ACCOUNT_USER = "account_user"
INVITATION_EMAIL = "invitation_email"
INVITATION_ORG = "invitation_org"
RESET_IP = "reset_ip"
RESET_EMAIL = "reset_email"

_MESSAGES = {
    LOGIN_IP: "Too many login attempts from your network. Try again in {s} seconds.",
    LOGIN_EMAIL: "Too many login attempts for this email. Try again in {s} seconds.",
    REGISTER_IP: "Too many sign-ups from your network. Try again in {s} seconds.",
    STRIPE_ORG: "Too many billing requests for your organization. Try again in {s} seconds.",
    STRIPE_USER: "Too many billing requests. Try again in {s} seconds.",
    API_TOKEN: "Too many requests with this API token. Try again in {s} seconds.",
    API_AUTH_FAILURES_IP: "Too many refused API tokens from your network. Try again in {s} seconds.",
    ACCOUNT_USER: "Too many attempts. Try again in {s} seconds.",
    INVITATION_EMAIL: "Too many invitations were sent to this email address. Try again in {s} seconds.",
    INVITATION_ORG: "Too many invitations were sent from your organization. Try again in {s} seconds.",
    RESET_IP: "Too many password reset requests from your network. Try again in {s} seconds.",
    RESET_EMAIL: "Too many password reset emails were sent to this address. Try again in {s} seconds.",  # never shown (/forgot)
}


class _Limits:
    """The limiter and parsed limits for one Settings object (a new one, as in tests, starts afresh)."""

    def __init__(self, settings):
        self.settings = settings
        options = {}
        if settings.rate_limit_storage.startswith(("redis://", "rediss://")):
            # Errors come as StorageError (see `hit`); keys share the app's Redis prefix. A Redis that
            # stops answering costs a count SOCKET_SECONDS, not forever.
            options = {"key_prefix": settings.redis_key_prefix + "limits", "wrap_exceptions": True,
                       "socket_timeout": SOCKET_SECONDS, "socket_connect_timeout": SOCKET_SECONDS}
        self.limiter = strategies.MovingWindowRateLimiter(storage.storage_from_string(settings.rate_limit_storage, **options))
        self.fallback = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
        self.items = {kind: tuple(parse_many(getattr(settings, f"rate_limit_{kind}"))) for kind in _MESSAGES}
        self.down_until = 0.0  # after a failure, count in the process until then without asking Redis


_current: _Limits | None = None


def _state() -> _Limits:
    global _current
    settings = get_settings()
    if _current is None or _current.settings is not settings:
        _current = _Limits(settings)
    return _current


def _key(identity: str | int) -> str:
    # Emails and tokens are not kept as they are, even in memory or Redis.
    return hashlib.sha256(str(identity).encode()).hexdigest()[:32]


def hit(kind: str, identity: str | int) -> None:
    """Count one request of `kind` for `identity`; raise RateLimited when over any of its limits.

    A refused request is not counted, so a client that waits as told gets in.
    """
    _apply(kind, identity, count=True)


def check(kind: str, identity: str | int) -> None:
    """Raise RateLimited when `identity` is over a limit of `kind`, counting nothing: for limits
    that only some requests spend (`hit` once the request turned out to spend it)."""
    _apply(kind, identity, count=False)


def _apply(kind: str, identity: str | int, *, count: bool) -> None:
    state, key = _state(), _key(identity)
    if time.monotonic() >= state.down_until:
        try:
            return _hit(state.limiter, state.items[kind], kind, key, count=count)
        except StorageError as error:
            log.warning("rate-limit storage unreachable, counting in this process for %.0f s: %s", RETRY_SECONDS, error)
            state.down_until = time.monotonic() + RETRY_SECONDS
    _hit(state.fallback, state.items[kind], kind, key, count=count)


def hit_stripe(actor) -> None:
    """Count one Stripe call for an `Actor` in its organization: an admin's against the org
    (STRIPE_ORG), anyone else's against themself (STRIPE_USER), so a member's lookups cannot lock
    the admins out of buying, cancelling or the portal."""
    org_id = actor.require_org()
    if actor.is_admin:
        hit(STRIPE_ORG, org_id)
    else:
        hit(STRIPE_USER, actor.user_id)


async def hit_in_thread(kind: str, identity: str | int) -> None:
    """`hit` from async code (pages, the session routes)."""
    await asyncio.to_thread(hit, kind, identity)


def _hit(limiter, items: tuple[RateLimitItem, ...], kind: str, key: str, *, count: bool = True) -> None:
    for item in items:
        if not limiter.test(item, kind, key):
            _refuse(limiter, item, kind, key)
    if not count:
        return
    for item in items:
        if not limiter.hit(item, kind, key):  # a concurrent request took the last slot
            _refuse(limiter, item, kind, key)


def _refuse(limiter, item: RateLimitItem, kind: str, key: str):
    wait = _retry_after(limiter, item, kind, key)
    raise RateLimited(wait, _MESSAGES[kind].format(s=wait))


def _retry_after(limiter, item: RateLimitItem, kind: str, key: str) -> int:
    reset = limiter.get_window_stats(item, kind, key).reset_time
    return max(1, math.ceil(reset - time.time()))


def reset() -> None:
    """Forget every count (tests; a changed RATE_LIMIT_* setting)."""
    global _current
    if _current is not None:
        with contextlib.suppress(StorageError):  # unreachable: nothing there to forget
            _current.limiter.storage.reset()
        _current.fallback.storage.reset()
    _current = None
