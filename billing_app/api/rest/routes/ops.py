"""The operator console's API, /api/ops/*: for operators only, and invisible to everyone else.

`Operator` accepts an operator's API token (Bearer) or the browser session cookie (the console's
CSV link). The cookie reaches a POST only from APP_URL's own pages (Origin, else Referer, as the
session routes check): SameSite=Strict still sends it from a sibling subdomain, whose page must not
replay events or attach customers in an operator's name. Anyone else (no credentials, a member, an org admin, a revoked token) gets exactly
the unknown-route answer: 404 NOT_FOUND "No such API route.", never 401 or 403 (nor 429 from the
token limits, `deps.token_actor`), and the routes
are left out of the OpenAPI document. The check is the first dependency of every route, and no
route takes a body, so nothing is validated before it; a wrong method is a 404 here too (the
catch-all at the end), where elsewhere it would be a 405 that names the route.
"""

from __future__ import annotations

import logging
import threading
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import iterate_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import StreamingResponse

from billing_app.api.rest.deps import bearer, only_query_params, token_actor
from billing_app.auth.cookies import same_origin
from billing_app.db import session_scope
from billing_app.errors import AppError
from billing_app.formatting import api_time
from billing_app.models import MAX_ID
from billing_app.ops import access, audit, events, metrics, orgs, orphans, reconcile
from billing_app.ops.access import Operator as OperatorUser
from billing_app.state import SESSION_COOKIE

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False, tags=["ops"])
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # read only: a cookie needs no origin check for these


def operator(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> OperatorUser:
    try:
        if credentials is not None:
            actor = token_actor(request, credentials.credentials)  # refused tokens count as on every route
            with session_scope() as session:
                return access.operator_of(session, actor)
        if request.method not in SAFE_METHODS and not same_origin(request):
            raise HTTPException(404)
        return access.operator_for_session(request.cookies.get(SESSION_COOKIE))
    except AppError:
        raise HTTPException(404) from None  # the unknown-route answer, word for word


Operator = Annotated[OperatorUser, Depends(operator)]
ORG_QUERY = frozenset({"q", "status", "sort", "limit", "cursor"})
EVENT_QUERY = frozenset({"type", "state", "customer", "startDate", "endDate", "limit", "before"})


def _org(row: orgs.OrgRow) -> dict:
    return {
        "id": row.id, "name": row.name, "plan": row.plan, "periodType": row.period_type, "status": row.status,
        "lifetime": row.lifetime, "mrr": row.mrr, "currency": row.currency, "seatsUsed": row.seats_used,
        "seatLimit": row.seat_limit, "created": api_time(row.created), "stripeCustomerId": row.customer_id,
    }


def _event(e) -> dict:
    return {
        "id": e.id, "stripeEventId": e.stripe_event_id, "type": e.type, "customerId": e.customer_id, "state": e.state,
        "attempts": e.attempts, "receivedAt": api_time(e.received_at), "processedAt": api_time(e.processed_at),
        "nextAttemptAt": api_time(e.next_attempt_at), "lastError": e.last_error,
    }


@router.get("/ops/metrics")
def get_metrics(op: Operator) -> dict:
    with session_scope() as session:
        result = metrics.overview(session)
        series = metrics.months(session)
    return {
        "success": True, "mrr": result.mrr, "arr": result.arr, "counts": result.counts,
        "newThisMonth": result.new_this_month, "churnedThisMonth": result.churned_this_month,
        "trialConversion": result.trial_conversion, "recoveryRate": result.recovery_rate,
        "months": [{"month": m.start.strftime("%Y-%m"), "mrr": m.mrr, "trialing": m.trialing, "active": m.active,
                    "canceled": m.canceled, "new": m.new, "churned": m.churned} for m in series],
    }


@router.get("/ops/orgs")
def list_orgs(
    op: Operator,
    _known: Annotated[None, Depends(only_query_params(ORG_QUERY))],
    q: str = None, status: str = None, sort: str = None,
    limit: Annotated[int, Query(ge=1, le=orgs.MAX_LIMIT)] = orgs.PAGE_SIZE, cursor: str = None,
) -> dict:
    filters = orgs.OrgFilter.parse(q, status, sort)
    with session_scope() as session:
        page = orgs.list_orgs(session, filters, cursor=cursor or None, limit=limit)
    return {"success": True, "orgs": [_org(r) for r in page.rows], "nextCursor": page.next_cursor}


@router.get("/ops/orgs.csv")
def export_orgs(op: Operator, _known: Annotated[None, Depends(only_query_params(frozenset({"q", "status", "sort"})))],
                q: str = None, status: str = None, sort: str = None):
    filters = orgs.OrgFilter.parse(q, status, sort)
    with session_scope() as session:
        audit.record(session, op, audit.EXPORT, "orgs.csv", f"q={filters.q!r} status={filters.status!r} sort={filters.sort}")

    def chunks():
        with session_scope() as session:
            yield from orgs.export_csv(session, filters)

    return StreamingResponse(iterate_in_threadpool(chunks()), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="organizations.csv"'})


@router.get("/ops/orgs/{org_id}")
def get_org(op: Operator, org_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> dict:
    with session_scope() as session:
        detail = orgs.org_detail(session, org_id)
    return {
        "success": True, "org": _org(detail.summary), "stripeDashboardUrl": detail.stripe_dashboard_url,
        "subscriptions": [{"id": s.stripe_id, "status": s.status, "lifetime": s.one_off, "periodId": s.plan_period_id,
                           "currentPeriodEnd": api_time(s.current_period_end), "cancelAtPeriodEnd": s.cancel_at_period_end,
                           "cancelAt": api_time(s.ends_at),
                           "startedAt": api_time(s.started_at), "endedAt": api_time(s.ended_at)} for s in detail.subscriptions],
        "payments": [{"id": p.stripe_id, "status": p.status, "amount": p.amount, "currency": p.currency,
                      "created": api_time(p.created), "description": p.description} for p in detail.payments],
        "members": [{"userId": m.user_id, "email": m.email, "name": m.name, "role": m.role} for m in detail.members],
        "events": [{"id": e.id, "stripeEventId": e.stripe_event_id, "type": e.type, "state": e.state,
                    "receivedAt": api_time(e.received_at), "lastError": e.last_error} for e in detail.events],
    }


@router.post("/ops/orgs/{org_id}/reconcile")
def reconcile_org(op: Operator, org_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> dict:
    return {"success": True, "changes": orgs.reconcile_org(op, org_id)}


@router.get("/ops/events")
def list_events(
    op: Operator,
    _known: Annotated[None, Depends(only_query_params(EVENT_QUERY))],
    type: str = None, state: str = None, customer: str = None,
    start_date: Annotated[str, Query(alias="startDate")] = None, end_date: Annotated[str, Query(alias="endDate")] = None,
    limit: Annotated[int, Query(ge=1, le=events.MAX_LIMIT)] = events.PAGE_SIZE,
    before: Annotated[int, Query(ge=1, le=MAX_ID)] = None,
) -> dict:
    filters = events.EventFilter.parse(type, state, customer, start_date, end_date)
    rows, next_before = events.list_events(filters, before_id=before, limit=limit)
    return {"success": True, "events": [_event(e) for e in rows], "nextBefore": next_before, "counts": events.counts()}


@router.get("/ops/events/counts")
def event_counts(op: Operator) -> dict:
    return {"success": True, "counts": events.counts()}


@router.post("/ops/events/replay-failed")
def replay_failed(op: Operator) -> dict:
    return {"success": True, "queued": events.replay_failed(op)}


@router.post("/ops/events/{event_id}/replay")
def replay_event(op: Operator, event_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> dict:
    events.replay_one(op, event_id)
    return {"success": True, "queued": 1}


@router.get("/ops/orphans")
def list_orphans(op: Operator) -> dict:
    return {"success": True, "orphans": [
        {"customerId": o.customer_id, "email": o.email, "name": o.name, "claimedOrgId": o.claimed_org_id or None,
         "firstSeenAt": api_time(o.first_seen_at), "lastSeenAt": api_time(o.last_seen_at)} for o in orphans.list_orphans()]}


@router.post("/ops/orphans/{customer_id}/attach")
def attach_orphan(op: Operator, customer_id: Annotated[str, Path(max_length=255)], org_id: Annotated[int, Query(alias="orgId", ge=1, le=MAX_ID)]) -> dict:
    return {"success": True, "changes": orphans.attach_orphan(op, customer_id, org_id)}


@router.get("/ops/audit")
def list_audit(op: Operator, action: str = None, before: Annotated[int, Query(ge=1, le=MAX_ID)] = None,
               limit: Annotated[int, Query(ge=1, le=200)] = audit.PAGE_SIZE) -> dict:
    with session_scope() as session:
        lines = audit.recent(session, action=action, before_id=before, limit=limit)
    return {"success": True, "audit": [
        {"id": a.id, "at": api_time(a.at), "operator": a.operator, "action": a.action, "target": a.target, "detail": a.detail}
        for a in lines]}


@router.get("/ops/reconcile")
def reconcile_runs(op: Operator) -> dict:
    with session_scope() as session:
        runs = reconcile.latest_runs(session)
    return {"success": True, "runs": [
        {"id": r.id, "mode": r.mode, "state": "interrupted" if r.stale else r.state, "phase": r.phase,
         "startedAt": api_time(r.started_at), "finishedAt": api_time(r.finished_at), "fetched": r.fetched,
         "customersDone": r.customers_done, "customersTotal": r.customers_total, "changes": r.changes,
         "orphans": r.orphans, "stripeCalls": r.calls, "percent": r.percent, "error": r.error or None} for r in runs]}


@router.post("/ops/reconcile", status_code=202)
def start_reconcile(op: Operator, incremental: bool = False) -> dict:
    """Start (or resume) a bulk reconcile in the background; follow it with GET /api/ops/reconcile."""
    job = reconcile.start_for_operator(op, incremental=incremental)  # 409 RECONCILE_RUNNING while one runs

    def work() -> None:
        try:
            job.run()
        except Exception:  # recorded on the run row; resumable
            log.exception("bulk reconcile run %s failed", job.run_id)

    threading.Thread(target=work, name=f"reconcile-{job.run_id}", daemon=True).start()
    return {"success": True, "runId": job.run_id, "resumed": job.resumed}


# Last: any other path or method under /ops answers as an unknown route, for everyone.
@router.api_route("/ops/{rest:path}", methods=ALL_METHODS)
def not_found(rest: str):
    raise HTTPException(404)
