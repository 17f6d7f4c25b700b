"""Dependencies shared by the routers: who is calling (`Member`, `Admin`) and the query guard.

Auth is `Authorization: Bearer <token>` (billing_app/auth/api_tokens.py). The services check roles
themselves; `Admin` also refuses non-admins up front (403) so a member learns nothing from
validation errors.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from billing_app.auth import api_tokens
from billing_app.auth.accounts import Actor
from billing_app.errors import AppError, ErrorCode
from billing_app.models import Role

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    description="An API token for one user in one organization: made on the API tokens page or with "
    "`python -m billing_app create-token --email EMAIL [--org ORG]`. It acts with the user's current role.",
)


def current_actor(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Actor:
    return api_tokens.authenticate_bearer(credentials.credentials if credentials else None)


def admin_actor(actor: Annotated[Actor, Depends(current_actor)]) -> Actor:
    actor.require_role(Role.ADMIN)
    return actor


Member = Annotated[Actor, Depends(current_actor)]
Admin = Annotated[Actor, Depends(admin_actor)]


def only_query_params(allowed: frozenset[str]):
    """A dependency refusing unknown query parameters: a misspelt filter (start_date) must not
    silently return everything."""

    def check(request: Request) -> None:
        unknown = sorted(set(request.query_params.keys()) - allowed)
        if unknown:
            raise AppError(ErrorCode.VALIDATION_ERROR, f"Unknown query parameter(s): {', '.join(repr(u) for u in unknown)}; "
                           f"use {', '.join(sorted(allowed))}.")

    return check
