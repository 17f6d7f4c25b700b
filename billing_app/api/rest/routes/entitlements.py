"""GET /api/billing/entitlements: what the organization may use now, for the product that adopts us."""

from __future__ import annotations

from fastapi import APIRouter

from billing_app.api.rest.deps import Member
from billing_app.api.rest.errors import AUTH, error_responses
from billing_app.api.rest.schemas import EntitlementPlan, EntitlementsResponse, LimitOut
from billing_app.billing.team_views import entitlements_view
from billing_app.db import session_scope

router = APIRouter(tags=["billing"])


@router.get(
    "/billing/entitlements", response_model=EntitlementsResponse,
    summary="Features and limits of the organization's live plan (else of the free tier), with their use",
    responses=error_responses(AUTH, validation=False),
)
def entitlements(actor: Member) -> EntitlementsResponse:
    with session_scope() as session:
        view = entitlements_view(session, actor.require_org())
    granted = view.granted
    return EntitlementsResponse(
        plan=EntitlementPlan(key=granted.plan_key, name=granted.plan_name or granted.plan_key) if granted.plan_key else None,
        access=granted.access,
        features=view.features,
        limits={key: LimitOut(limit=value.limit, used=value.used) for key, value in view.limits.items()},
    )
