"""The REST API: the billing abilities of the UI for scripts and other front ends.

A FastAPI app mounted at `/api` inside the backend's Starlette app (see `mount()`), so the
routes below are relative to `/api` and the OpenAPI 3.1 document, generated from these same
definitions, is served at `/api/openapi.json` with full paths. Every route calls the same
billing services as the pages; the services check roles themselves, and admin-only routes
also refuse non-admins up front (403) so a member learns nothing from validation errors.
Auth is `Authorization: Bearer <token>` (billing_app/auth/api_tokens.py).
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Body, Depends, FastAPI, Path, Query, Request
from fastapi.openapi.utils import get_openapi
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.routing import Mount

from billing_app import routes
from billing_app.api import rest_errors as errs
from billing_app.api.rest_errors import error_responses
from billing_app.api.rest_schemas import (
    BuyRequest,
    CancelRequest,
    ChangeRequest,
    CheckoutStartedResponse,
    CheckoutStatusResponse,
    MySubscriptionResponse,
    PaymentOut,
    PaymentsResponse,
    PeriodOut,
    PlanChangeResponse,
    PlanOut,
    PlansResponse,
    PortalRequest,
    PortalResponse,
    ScheduledChange,
    SubscriptionActionResponse,
    SubscriptionOut,
    SummaryPlan,
    SummaryResponse,
)
from billing_app.auth import api_tokens
from billing_app.auth.accounts import Actor
from billing_app.billing import checkout, payments, portal, subscriptions, views
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import PaymentStatus, Role

E = ErrorCode
# Query dates are YYYY-MM-DD only (not timestamps, not 20260131); the service then checks the calendar.
ISO_DATE = {"pattern": r"^\d{4}-\d{2}-\d{2}$", "json_schema_extra": {"format": "date"}}
PAYMENTS_MAX_LIMIT = payments.MAX_LIMIT

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    description="An API token for one user in one organization: made on the API tokens page or with "
    "`python -m billing_app create-token --email EMAIL [--org ORG]`. It acts with the user's current role.",
)


# --- auth dependencies ------------------------------------------------------------------------------


def current_actor(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Actor:
    return api_tokens.authenticate_bearer(credentials.credentials if credentials else None)


def admin_actor(actor: Annotated[Actor, Depends(current_actor)]) -> Actor:
    actor.require_role(Role.ADMIN)
    return actor


def _only_query_params(allowed: frozenset[str]):
    """A dependency refusing unknown query parameters: a misspelt filter (start_date) must not
    silently return everything."""

    def check(request: Request) -> None:
        unknown = sorted(set(request.query_params.keys()) - allowed)
        if unknown:
            raise AppError(E.VALIDATION_ERROR, f"Unknown query parameter(s): {', '.join(repr(u) for u in unknown)}; "
                           f"use {', '.join(sorted(allowed))}.")

    return check


PAYMENT_QUERY = frozenset({"startDate", "endDate", "status", "limit", "cursor"})

Member = Annotated[Actor, Depends(current_actor)]
Admin = Annotated[Actor, Depends(admin_actor)]


# --- views of the mirror, as the API's schemas -----------------------------------------------------


def _subscription_out(detail: views.SubscriptionDetail | None) -> SubscriptionOut | None:
    if detail is None:
        return None
    change = detail.scheduled_change
    return SubscriptionOut(
        id=detail.stripe_id,
        planKey=detail.plan_key,
        planName=detail.plan_name,
        periodType=detail.period_type,
        subscriptionPeriodId=detail.period_id,
        price=detail.price,
        currency=detail.currency,
        dateFrom=detail.date_from,
        dateTo=detail.date_to,
        status=detail.status,
        autoRenew=detail.auto_renew,
        cancelAtPeriodEnd=detail.cancel_at_period_end,
        trialEndsAt=detail.trial_ends_at,
        access=detail.access,
        scheduledChange=ScheduledChange(
            subscriptionPeriodId=change.period_id, planKey=change.plan_key, periodType=change.period_type, at=change.at,
        ) if change else None,
    )


def _current(org_id: int) -> SubscriptionOut | None:
    with session_scope() as session:
        return _subscription_out(views.subscription_detail(session, org_id))


def _plan_out(plan: views.CatalogPlan) -> PlanOut:
    return PlanOut(
        key=plan.key,
        name=plan.name,
        description=plan.description,
        features=plan.features,
        limits=plan.limits,
        mostPopular=plan.most_popular,
        periods=[
            PeriodOut(
                id=p.id, periodType=p.period_type, price=p.amount, currency=p.currency,
                interval=p.period_type.interval, trialDays=p.trial_days,
            )
            for p in plan.periods
        ],
    )


# --- the app ---------------------------------------------------------------------------------------

TAGS = [
    {"name": "plans", "description": "The public catalog."},
    {"name": "subscription", "description": "The organization's subscription: read it, buy, change, cancel, reactivate."},
    {"name": "billing", "description": "Payments, the Stripe Customer Portal and a summary for gating."},
]



def create_app() -> FastAPI:
    """A new REST app (tests make one each; the backend mounts `rest_app`)."""
    app = FastAPI(
        title="billing_app REST API",
        version="1.0.0",
        description=(
            "The billing abilities of the app for scripts and other front ends. Authenticate with "
            "`Authorization: Bearer <token>`. Every error is `{success: false, error_code, message}`; "
            "`error_code` comes from the one list of codes shared with the UI."
        ),
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        root_path_in_servers=False,
        openapi_tags=TAGS,
        separate_input_output_schemas=False,
        generate_unique_id_function=lambda route: route.name,
    )
    errs.install(app)
    _add_routes(app)

    def openapi() -> dict:
        # Routes are declared relative to the mount point; the document names their full paths.
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, openapi_version=app.openapi_version,
                description=app.description, routes=app.routes, tags=app.openapi_tags,
                separate_input_output_schemas=app.separate_input_output_schemas,
            )
            schema["paths"] = {routes.API_PREFIX + path: item for path, item in schema.get("paths", {}).items()}
            # The shared envelope, for readers (each route's responses narrow its error codes).
            envelope = errs.ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(envelope.pop("$defs", {}))
            components["ErrorResponse"] = envelope
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _add_routes(app: FastAPI) -> None:  # noqa: C901 - one place that lists every route
    @app.get(
        "/subscriptions", tags=["plans"], response_model=PlansResponse,
        summary="Active plans and their billing periods (public)", responses=error_responses(validation=False),
    )
    def list_plans() -> PlansResponse:
        with session_scope() as session:
            plans = views.catalog(session)
        # A plan with no period on sale has nothing to buy.
        return PlansResponse(plans=[_plan_out(plan) for plan in plans if plan.periods])

    @app.get(
        "/subscriptions/my", tags=["subscription"], response_model=MySubscriptionResponse,
        summary="The organization's subscription, or null", responses=error_responses(errs.AUTH, validation=False),
    )
    def my_subscription(actor: Member) -> MySubscriptionResponse:
        return MySubscriptionResponse(subscription=_current(actor.require_org()))

    @app.post(
        "/subscriptions/buy", tags=["subscription"], response_model=CheckoutStartedResponse,
        summary="Start a Stripe Checkout for a plan period (admins)",
        responses=error_responses(
            errs.ADMIN, [E.SUBSCRIPTION_PERIOD_NOT_FOUND, E.SUBSCRIPTION_ALREADY_ACTIVE, E.STRIPE_PRICE_MISMATCH,
                         E.STRIPE_CHECKOUT_FAILED], errs.STRIPE,
        ),
    )
    def buy(actor: Admin, body: BuyRequest) -> CheckoutStartedResponse:
        started = checkout.start_checkout(actor, body.subscriptionPeriodId)
        return CheckoutStartedResponse(sessionId=started.session_id, checkoutUrl=started.url)

    @app.get(
        "/subscriptions/checkout-session/{session_id}", tags=["subscription"], response_model=CheckoutStatusResponse,
        summary="How a Checkout ended (syncs the organization's billing first)",
        responses=error_responses(errs.AUTH, [E.INVALID_SESSION], errs.STRIPE, path_params=True),
    )
    def checkout_session(
        actor: Member,
        session_id: Annotated[str, Path(description="The Checkout Session id (cs_...) from POST /api/subscriptions/buy.")],
    ) -> CheckoutStatusResponse:
        status = checkout.checkout_status(actor, session_id)
        return CheckoutStatusResponse(
            status=status.status, payment_status=status.payment_status,
            subscriptionId=status.subscription_id, mode=status.mode,
        )

    portal_doc = dict(
        response_model=PortalResponse,
        summary="A Stripe Customer Portal URL for the organization (admins)",
        responses=error_responses(errs.ADMIN, [E.NO_BILLING_ACCOUNT, E.SUBSCRIPTION_NOT_FOUND, E.STRIPE_PORTAL_FAILED], errs.STRIPE),
    )

    def open_portal(actor: Actor, body: PortalRequest | None) -> PortalResponse:
        return PortalResponse(url=portal.portal_url(actor, body.flow if body else None))

    @app.post("/subscriptions/portal", tags=["subscription"], **portal_doc)
    def subscriptions_portal(actor: Admin, body: Annotated[PortalRequest | None, Body()] = None) -> PortalResponse:
        return open_portal(actor, body)

    @app.post("/billing/portal", tags=["billing"], **portal_doc)
    def billing_portal(actor: Admin, body: Annotated[PortalRequest | None, Body()] = None) -> PortalResponse:
        return open_portal(actor, body)

    @app.get(
        "/subscriptions/payments", tags=["billing"], response_model=PaymentsResponse,
        summary="Payment history, newest first, one page at a time (admins)",
        responses=error_responses(errs.ADMIN),
    )
    # Optional query parameters are typed without `| None` so the document does not offer `null`
    # (a query string cannot carry one); absent means None.
    def list_payments(
        actor: Admin,
        _known: Annotated[None, Depends(_only_query_params(PAYMENT_QUERY))],
        start_date: Annotated[str, Query(alias="startDate", description="First day (inclusive), YYYY-MM-DD.", **ISO_DATE)] = None,
        end_date: Annotated[str, Query(alias="endDate", description="Last day (inclusive), YYYY-MM-DD.", **ISO_DATE)] = None,
        status: Annotated[PaymentStatus, Query(description="Only payments in this status.")] = None,
        limit: Annotated[int, Query(ge=1, le=PAYMENTS_MAX_LIMIT, description="Page size.")] = 25,
        cursor: Annotated[str, Query(max_length=200, description="nextCursor of the previous page.")] = None,
    ) -> PaymentsResponse:
        filters = payments.PaymentFilter.parse(start_date, end_date, status.value if status else None)
        with session_scope() as session:
            page = payments.list_payments(session, actor, filters, limit=limit, cursor=cursor or None)
            rows = [
                PaymentOut(
                    id=row.stripe_id, status=PaymentStatus(row.status), amount=row.amount, currency=row.currency,
                    created=row.created, description=row.description, invoiceUrl=row.invoice_url,
                    receiptUrl=row.receipt_url, pdfUrl=row.pdf_url,
                )
                for row in page.rows
            ]
        return PaymentsResponse(payments=rows, nextCursor=page.next_cursor)

    @app.post(
        "/subscriptions/cancel", tags=["subscription"], response_model=SubscriptionActionResponse,
        summary="Cancel at the period end (default) or now (admins)",
        responses=error_responses(
            errs.ADMIN, [E.SUBSCRIPTION_NOT_FOUND, E.LIFETIME_NOT_CHANGEABLE, E.SUBSCRIPTION_ALREADY_CANCELED,
                         E.STRIPE_CANCELLATION_FAILED], errs.STRIPE,
        ),
    )
    def cancel(actor: Admin, body: Annotated[CancelRequest | None, Body()] = None) -> SubscriptionActionResponse:
        body = body or CancelRequest()
        subscriptions.cancel(actor, at_period_end=body.atPeriodEnd, reason=body.reason)
        return SubscriptionActionResponse(subscription=_current(actor.require_org()))

    @app.post(
        "/subscriptions/reactivate", tags=["subscription"], response_model=SubscriptionActionResponse,
        summary="Undo a cancellation at the period end (admins)",
        responses=error_responses(
            errs.ADMIN, [E.SUBSCRIPTION_NOT_FOUND, E.LIFETIME_NOT_CHANGEABLE, E.SUBSCRIPTION_ALREADY_CANCELED,
                         E.SUBSCRIPTION_NOT_CANCELING, E.STRIPE_REACTIVATION_FAILED], errs.STRIPE, validation=False,
        ),
    )
    def reactivate(actor: Admin) -> SubscriptionActionResponse:
        subscriptions.reactivate(actor)
        return SubscriptionActionResponse(subscription=_current(actor.require_org()))

    @app.post(
        "/subscriptions/change", tags=["subscription"], response_model=PlanChangeResponse,
        summary="Preview or make a plan change: upgrades apply now (prorated), downgrades at the period end (admins)",
        responses=error_responses(
            errs.ADMIN, [E.SUBSCRIPTION_NOT_FOUND, E.SUBSCRIPTION_PERIOD_NOT_FOUND, E.SAME_PLAN, E.LIFETIME_NOT_CHANGEABLE,
                         E.SUBSCRIPTION_ALREADY_CANCELED, E.STRIPE_PLAN_CHANGE_FAILED], errs.STRIPE,
        ),
    )
    def change(actor: Admin, body: ChangeRequest) -> PlanChangeResponse:
        result = subscriptions.change_plan(actor, body.subscriptionPeriodId, preview=body.preview)
        return PlanChangeResponse(
            fromPlan=result.from_plan, toPlan=result.to_plan, upgrade=result.upgrade,
            amountDueNow=result.amount_due_now, currency=result.currency, applied=result.applied,
            effectiveAt=result.effective_at,
            subscription=_current(actor.require_org()),
        )

    @app.get(
        "/billing/summary", tags=["billing"], response_model=SummaryResponse,
        summary="Status, plan and key dates, for gating features", responses=error_responses(errs.AUTH, validation=False),
    )
    def summary(actor: Member) -> SummaryResponse:
        with session_scope() as session:
            result = views.billing_summary(session, actor.require_org())
        plan = result.plan
        return SummaryResponse(
            status=result.status,
            trial_ends_at=result.trial_ends_at,
            activated_at=result.activated_at,
            plan=SummaryPlan(key=plan.key, name=plan.name, periodType=plan.period_type, limits=plan.limits) if plan else None,
            current_period_end=result.current_period_end,
            access=result.access,
            reason=result.reason,
        )


rest_app = create_app()


class _ApiMount(Mount):
    """Mount whose prefix match also spans a decoded newline (`%0A`) in the path.

    Starlette's `.*` stops at a newline, so `/api/x%0Ay` would miss the mount and get the outer
    app's plain-text 404 instead of the API's JSON envelope.
    """

    def __init__(self, path: str, app) -> None:
        super().__init__(path, app=app)
        self.path_regex = re.compile(self.path_regex.pattern, re.DOTALL)


def mount(app: FastAPI | None = None) -> Mount:
    """The API as a route of the backend's Starlette app, at `/api`.

    Put it after the backend's own `/api/...` routes (health, the Stripe webhook, the CSV export):
    it takes every path under `/api` that no earlier route matched, and answers unknown ones with
    the JSON 404 envelope.
    """
    return _ApiMount(routes.API_PREFIX, app=app or rest_app)
