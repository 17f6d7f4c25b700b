"""GET /api/subscriptions: the public catalog."""

from __future__ import annotations

from fastapi import APIRouter

from billing_app.api.rest.errors import error_responses
from billing_app.api.rest.schemas import PeriodOut, PlanOut, PlansResponse
from billing_app.billing import views
from billing_app.db import session_scope

router = APIRouter(tags=["plans"])


def _plan_out(plan: views.CatalogPlan) -> PlanOut:
    return PlanOut(
        key=plan.key,
        name=plan.name,
        description=plan.description,
        features=plan.features,
        limits=plan.limits,
        featureFlags=plan.feature_flags,
        perSeat=plan.per_seat,
        minSeats=plan.min_seats,
        mostPopular=plan.most_popular,
        periods=[
            PeriodOut(
                id=p.id, periodType=p.period_type, price=p.amount, currency=p.currency,
                interval=p.period_type.interval, trialDays=p.trial_days,
            )
            for p in plan.periods
        ],
    )


@router.get(
    "/subscriptions", response_model=PlansResponse,
    summary="Active plans and their billing periods (public)", responses=error_responses(validation=False),
)
def list_plans() -> PlansResponse:
    with session_scope() as session:
        plans = views.catalog(session)
    # A plan with no period on sale has nothing to buy.
    return PlansResponse(plans=[_plan_out(plan) for plan in plans if plan.periods])
