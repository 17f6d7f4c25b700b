"""Dependencies shared by the routers: who is calling (`Member`, `Admin`) and the query guard.

Auth is `Authorization: Bearer <token>` (billing_app/auth/api_tokens.py). The services check roles
themselves; `Admin` also refuses non-admins up front (403) so a member learns nothing from
validation errors.

Rate limits (billing_app/limits.py), applied here so no route can forget them: every request with a
well-formed token counts against that token's limit (revoked and expired ones too) before the
lookup, a refused token also against its client address's (RATE_LIMIT_API_AUTH_FAILURES_IP: past
it, refused tokens from there answer 429, valid ones still work), and every route that calls
Stripe (`STRIPE_ROUTES`) also, after the role check (a refused call spends only its token's),
against the organization's for an admin and the user's own for a member (`limits.hit_stripe`: a
member cannot lock the admins out); over a limit the answer is `429 RATE_LIMITED` with
`Retry-After`. A change runs in one of its organization's turns (billing/turns.py): one org's burst
waits on the event loop, not in threads.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from billing_app import limits
from billing_app.api.clients import client_ip
from billing_app.auth import api_tokens
from billing_app.auth.accounts import Actor
from billing_app.billing import reservations, turns
from billing_app.errors import AppError, ErrorCode
from billing_app.models import Role

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    description="An API token for one user in one organization: made on the API tokens page or with "
    "`python -m billing_app create-token --email EMAIL [--org ORG]`. It acts with the user's current role.",
)


# Route names (see routes/*) whose handlers call Stripe: every POST, and reading a Checkout session.
STRIPE_ROUTES = frozenset({
    "buy", "checkout_session", "subscriptions_portal", "billing_portal", "cancel", "reactivate", "change",
    "keep_current_plan", "seats", "remove_member",
})


def token_actor(request: Request, token: str | None) -> Actor:
    """The user of a bearer token, with the limits a token guesser meets (also for /api/ops).

    The token's own limit is counted before the lookup, so revoked and expired tokens count too.
    A token that is refused counts against its client address, and past RATE_LIMIT_API_AUTH_FAILURES_IP
    the refusal is a 429 (with Retry-After) instead of a 401. A valid token is never refused by the
    address's limit: one client polling with an expired token, or a neighbour behind the same NAT,
    must not lock out the others (and tokens are 256-bit: refusing before the lookup would stop no
    guesser). A malformed token is refused without a lookup, so it counts nowhere.
    """
    if not api_tokens.is_well_formed(token):
        return api_tokens.authenticate_bearer(token)  # refused at once
    limits.hit(limits.API_TOKEN, token)
    try:
        return api_tokens.authenticate_bearer(token)
    except AppError as error:
        if error.code == ErrorCode.UNAUTHENTICATED:
            limits.hit(limits.API_AUTH_FAILURES_IP, client_ip(request))  # RateLimited once over the limit
        raise


def current_actor(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Actor:
    """The token's user (`token_actor`: refused ones are counted too)."""
    return token_actor(request, credentials.credentials if credentials else None)


def _count_stripe_call(request: Request, actor: Actor) -> None:
    """A Stripe route counts against the Stripe limits (limits.hit_stripe): only once the caller may
    use it, so a member's refused admin calls cannot spend the org's limit and lock its admins out."""
    route = request.scope.get("route")
    if getattr(route, "name", None) in STRIPE_ROUTES or request.method == "POST":
        limits.hit_stripe(actor)


def member_actor(request: Request, actor: Annotated[Actor, Depends(current_actor)]) -> Actor:
    _count_stripe_call(request, actor)
    return actor


def admin_actor(request: Request, actor: Annotated[Actor, Depends(current_actor)]) -> Actor:
    actor.require_role(Role.ADMIN)
    _count_stripe_call(request, actor)
    return actor


def _turn(request: Request, actor: Actor):
    """A change (POST, PATCH, DELETE: those that wait for an org claim among them) runs in one of its org's turns."""
    if request.method in ("GET", "HEAD"):
        return contextlib.nullcontext()
    is_buy = getattr(request.scope.get("route"), "name", None) == "buy"
    return turns.org_turn(actor.require_org(), reservations.purchase_busy() if is_buy else turns.busy())


async def member_in_turn(request: Request, actor: Annotated[Actor, Depends(member_actor)]) -> AsyncIterator[Actor]:
    async with _turn(request, actor):
        yield actor


async def admin_in_turn(request: Request, actor: Annotated[Actor, Depends(admin_actor)]) -> AsyncIterator[Actor]:
    async with _turn(request, actor):
        yield actor


# "function": the turn ends with the route's function, not after the response is sent (a client
# that does not read its answer must not keep the org's turn).
Member = Annotated[Actor, Depends(member_in_turn, scope="function")]
Admin = Annotated[Actor, Depends(admin_in_turn, scope="function")]


def only_query_params(allowed: frozenset[str]):
    """A dependency refusing unknown query parameters: a misspelt filter (start_date) must not
    silently return everything."""

    def check(request: Request) -> None:
        unknown = sorted(set(request.query_params.keys()) - allowed)
        if unknown:
            raise AppError(ErrorCode.VALIDATION_ERROR, f"Unknown query parameter(s): {', '.join(repr(u) for u in unknown)}; "
                           f"use {', '.join(sorted(allowed))}.")

    return check
