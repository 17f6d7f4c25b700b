"""Billing: the Stripe Customer Portal, the payment history and a summary for gating features."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query

from billing_app.api.rest.deps import Admin, Member, only_query_params
from billing_app.api.rest.errors import ADMIN, AUTH, STRIPE, error_responses
from billing_app.api.rest.schemas import (
    PaymentOut,
    PaymentsResponse,
    PortalRequest,
    PortalResponse,
    SummaryPlan,
    SummaryResponse,
)
from billing_app.billing import payments, portal, views
from billing_app.db import session_scope
from billing_app.errors import ErrorCode as E
from billing_app.models import PaymentStatus

router = APIRouter()  # tags per route: the portal is also the subscription's

# Query dates are YYYY-MM-DD only (not timestamps, not 20260131); the service then checks the calendar.
ISO_DATE = {"pattern": r"^\d{4}-\d{2}-\d{2}$", "json_schema_extra": {"format": "date"}}
PAYMENT_QUERY = frozenset({"startDate", "endDate", "status", "limit", "cursor"})
PORTAL_DOC = dict(
    response_model=PortalResponse,
    summary="A Stripe Customer Portal URL for the organization (admins)",
    responses=error_responses(ADMIN, [E.NO_BILLING_ACCOUNT, E.SUBSCRIPTION_NOT_FOUND, E.STRIPE_PORTAL_FAILED], STRIPE),
)


# One endpoint at two paths (the subscription's and billing's), each its own operation in the document.
@router.post("/subscriptions/portal", tags=["subscription"], name="subscriptions_portal", **PORTAL_DOC)
@router.post("/billing/portal", tags=["billing"], name="billing_portal", **PORTAL_DOC)
def open_portal(actor: Admin, body: Annotated[PortalRequest | None, Body()] = None) -> PortalResponse:
    return PortalResponse(url=portal.portal_url(actor, body.flow if body else None))


@router.get(
    "/subscriptions/payments", tags=["billing"], response_model=PaymentsResponse,
    summary="Payment history, newest first, one page at a time (admins)",
    responses=error_responses(ADMIN),
)
# Optional query parameters are typed without `| None` so the document does not offer `null`
# (a query string cannot carry one); absent means None. The cursor is checked by the service.
def list_payments(
    actor: Admin,
    _known: Annotated[None, Depends(only_query_params(PAYMENT_QUERY))],
    start_date: Annotated[str, Query(alias="startDate", description="First day (inclusive), YYYY-MM-DD.", **ISO_DATE)] = None,
    end_date: Annotated[str, Query(alias="endDate", description="Last day (inclusive), YYYY-MM-DD.", **ISO_DATE)] = None,
    status: Annotated[PaymentStatus, Query(description="Only payments in this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=payments.MAX_LIMIT, description="Page size.")] = 25,
    cursor: Annotated[str, Query(max_length=payments.MAX_CURSOR_LENGTH, description="nextCursor of the previous page.")] = None,
) -> PaymentsResponse:
    filters = payments.PaymentFilter.parse(start_date, end_date, status.value if status else None)
    with session_scope() as session:
        page = payments.list_payments(session, actor, filters, limit=limit, cursor=cursor or None)
        rows = [
            PaymentOut(
                id=row.stripe_id, status=PaymentStatus(row.status), amount=row.amount, currency=row.currency,
                created=row.created, description=row.description, invoiceUrl=row.invoice_url,
                receiptUrl=row.receipt_url, pdfUrl=row.pdf_url, subtotal=row.subtotal, discount=row.discount, tax=row.tax,
                amountRefunded=row.amount_refunded,
            )
            for row in page.rows
        ]
    return PaymentsResponse(payments=rows, nextCursor=page.next_cursor)


@router.get(
    "/billing/summary", tags=["billing"], response_model=SummaryResponse,
    summary="Status, plan and key dates, for gating features", responses=error_responses(AUTH, validation=False),
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
