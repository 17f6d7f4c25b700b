"""Every organization for operators: search, filter, sort, keyset pages, CSV; and one org in full.

An org's row shows the subscription that decides its access (as `entitlements.current_subscription`
picks it: a held lifetime purchase, else the newest live subscription, else the newest), chosen
in SQL by a correlated subquery so a page is one query at any depth. Sorting by MRR uses
ops/metrics.py's own rule (monthly_amount_sql, to the hundredth of a minor unit), across currencies.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import BigInteger, and_, case, cast, exists, func, literal, or_
from sqlalchemy.orm import aliased
from sqlmodel import Session, select

from billing_app.billing.payments import BAD_CURSOR, cursor_row_id, cursor_time
from billing_app.billing.sync import sync_customer
from billing_app.billing.views import BillingView, billing_view
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.formatting import csv_cell, plain_amount
from billing_app.models import (
    LIVE_STATUSES,
    MANAGEABLE_STATUSES,
    BillingCustomer,
    Membership,
    Organization,
    OrgSubscription,
    Payment,
    Plan,
    PlanPeriod,
    User,
    WebhookEvent,
    id_from_text,
)
from billing_app.ops import audit, filter_choice
from billing_app.ops.access import Operator
from billing_app.ops.metrics import console_status, monthly_amount, monthly_amount_sql, paying, round_minor
from billing_app.settings import get_settings
from billing_app.text import refuse_control_characters

PAGE_SIZE = 50
MAX_LIMIT = 200
SORTS = ("-created", "created", "name", "-name", "-mrr", "mrr")
STATUS_FILTERS = ("active", "trialing", "past_due", "paused", "unpaid", "incomplete", "canceled", "lifetime", "none")


@dataclass(frozen=True)
class OrgFilter:
    q: str = ""
    status: str = ""  # one of STATUS_FILTERS, or "" for all
    sort: str = "-created"

    @classmethod
    def parse(cls, q: str | None = None, status: str | None = None, sort: str | None = None) -> "OrgFilter":
        q = (q or "").strip()
        if len(q) > 254:
            raise AppError(ErrorCode.VALIDATION_ERROR, "The search is too long.")
        refuse_control_characters(q, "The search")  # PostgreSQL refuses a NUL in a query
        status = filter_choice(status, STATUS_FILTERS, "status")
        sort = (sort or "-created").strip()
        if sort not in SORTS:
            raise AppError(ErrorCode.VALIDATION_ERROR, f"Unknown sort {sort!r}; use one of {', '.join(SORTS)}.")
        return cls(q, status, sort)


@dataclass
class OrgRow:
    id: int
    name: str
    created: datetime
    plan: str | None
    period_type: str | None
    status: str | None  # Stripe's status (paused while its collection is paused); None without a subscription
    lifetime: bool
    mrr: int  # minor units per month (0 when not paying)
    currency: str | None
    seats_used: int
    seat_limit: int | None  # None: unlimited or no plan
    customer_id: str | None


def _current_subscription_id():
    s = aliased(OrgSubscription)
    rank = case(
        (and_(s.one_off == True, s.status == "active"), 0),  # noqa: E712
        # As entitlements.current_subscription decides it: manageable, then live, then any.
        (and_(s.one_off == False, s.status.in_(MANAGEABLE_STATUSES)), 1),  # noqa: E712
        (and_(s.one_off == False, s.status.in_(LIVE_STATUSES)), 2),  # noqa: E712
        else_=3,
    )
    return (
        select(s.id).where(s.org_id == Organization.id)
        .order_by(rank, func.coalesce(s.started_at, s.updated_at).desc(), s.id.desc())
        .limit(1).correlate(Organization).scalar_subquery()
    )


def _rows_query(filters: OrgFilter):
    sub, period = OrgSubscription, PlanPeriod
    members = select(func.count(Membership.id)).where(Membership.org_id == Organization.id).correlate(Organization).scalar_subquery()
    is_paying = paying(sub)
    mrr_key = cast(func.round(case((is_paying, monthly_amount_sql(sub, period)), else_=0) * 100), BigInteger)
    query = (
        select(
            Organization.id, Organization.name, Organization.created_at, Plan.name.label("plan"), period.period_type,
            console_status(sub).label("status"), sub.one_off, case((is_paying, True), else_=False).label("paying"), period.amount, sub.quantity,
            period.currency, sub.discount_percent_off, sub.discount_amount_off,
            members.label("seats_used"), Plan.limits_json, BillingCustomer.stripe_customer_id,
            mrr_key.label("mrr_key"), func.lower(Organization.name).label("name_key"),
        )
        .select_from(Organization)
        .outerjoin(sub, sub.id == _current_subscription_id())
        .outerjoin(period, period.id == sub.plan_period_id)
        .outerjoin(Plan, Plan.id == period.plan_id)
        .outerjoin(BillingCustomer, BillingCustomer.org_id == Organization.id)
    )
    if filters.q:
        needle = filters.q.lower()
        by_email = exists(
            select(Membership.id).join(User, User.id == Membership.user_id)
            .where(Membership.org_id == Organization.id, User.email.contains(needle, autoescape=True))
        )
        org_id = id_from_text(needle)
        by_id = Organization.id == org_id if org_id else literal(False)
        query = query.where(or_(func.lower(Organization.name).contains(needle, autoescape=True), by_email, by_id,
                                BillingCustomer.stripe_customer_id == filters.q))
    if filters.status == "none":
        query = query.where(sub.id.is_(None))
    elif filters.status == "lifetime":
        query = query.where(sub.one_off == True, sub.status == "active")  # noqa: E712
    elif filters.status:
        query = query.where(sub.one_off == False, console_status(sub) == filters.status)  # noqa: E712
    return query


def _sort(filters: OrgFilter, q):
    name = filters.sort.lstrip("-")
    column = {"created": q.c.created_at, "name": q.c.name_key, "mrr": q.c.mrr_key}[name]
    return column, filters.sort.startswith("-")


def _encode(value, row_id: int) -> str:
    value = value.isoformat() if isinstance(value, datetime) else value
    return base64.urlsafe_b64encode(json.dumps([value, row_id]).encode()).decode()


def _decode(cursor: str, sort: str):
    try:
        if len(cursor) > 600:
            raise ValueError
        value, row_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        row_id = cursor_row_id(row_id)
        name = sort.lstrip("-")
        if name == "created":
            value = cursor_time(value)
        elif name == "name" and (not isinstance(value, str) or "\x00" in value):  # PostgreSQL refuses a NUL
            raise ValueError
        elif name == "mrr" and (not isinstance(value, int) or isinstance(value, bool) or abs(value) >= 2**62):
            raise ValueError
    except (ValueError, TypeError, UnicodeDecodeError, json.JSONDecodeError):
        raise AppError(ErrorCode.VALIDATION_ERROR, BAD_CURSOR) from None
    return value, row_id


def _to_row(r) -> OrgRow:
    limits = json.loads(r.limits_json or "{}") if r.limits_json else {}
    seats = limits.get("seats")
    lifetime = bool(r.one_off)
    mrr = 0
    if r.paying and r.amount is not None:
        mrr = round_minor(monthly_amount(r.amount, r.period_type, quantity=r.quantity, percent_off=r.discount_percent_off,
                                   amount_off=r.discount_amount_off))
    return OrgRow(
        id=r.id, name=r.name, created=r.created_at, plan=r.plan, period_type=r.period_type, status=r.status, lifetime=lifetime,
        mrr=mrr, currency=r.currency, seats_used=r.seats_used or 0,
        seat_limit=seats if isinstance(seats, int) and seats >= 0 else None, customer_id=r.stripe_customer_id,
    )


@dataclass
class OrgPage:
    rows: list[OrgRow]
    next_cursor: str | None


def list_orgs(session: Session, filters: OrgFilter, *, cursor: str | None = None, limit: int = PAGE_SIZE) -> OrgPage:
    if not 1 <= limit <= MAX_LIMIT:
        raise AppError(ErrorCode.VALIDATION_ERROR, f"limit must be between 1 and {MAX_LIMIT}.")
    q = _rows_query(filters).subquery()
    column, descending = _sort(filters, q)
    query = select(q)
    if cursor:
        value, row_id = _decode(cursor, filters.sort)
        after = (column < value) if descending else (column > value)
        same = (q.c.id < row_id) if descending else (q.c.id > row_id)
        query = query.where(or_(after, and_(column == value, same)))
    order = (column.desc(), q.c.id.desc()) if descending else (column.asc(), q.c.id.asc())
    rows = session.execute(query.order_by(*order).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more and rows:
        last = rows[-1]
        key = {"created": last.created_at, "name": last.name_key, "mrr": last.mrr_key}[filters.sort.lstrip("-")]
        next_cursor = _encode(key, last.id)
    return OrgPage([_to_row(r) for r in rows], next_cursor)


CSV_COLUMNS = ["id", "name", "plan", "period", "status", "mrr", "currency", "seats_used", "seat_limit", "created", "stripe_customer_id"]


def export_csv(session: Session, filters: OrgFilter) -> Iterator[str]:
    """Every matching org, in the list's order, as CSV text chunks (read in batches)."""
    q = _rows_query(filters).subquery()
    column, descending = _sort(filters, q)
    order = (column.desc(), q.c.id.desc()) if descending else (column.asc(), q.c.id.asc())
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for r in session.execute(select(q).order_by(*order).execution_options(yield_per=1000)):
        row = _to_row(r)
        # The org's name is anyone's who signs up (and plan names an operator's): text cells are neutralised.
        writer.writerow([
            row.id, csv_cell(row.name), csv_cell(row.plan or ""), row.period_type or "",
            "lifetime" if row.lifetime and row.status == "active" else row.status or "",
            plain_amount(row.mrr, row.currency) if row.currency else "0", (row.currency or "").upper(), row.seats_used,
            "" if row.seat_limit is None else row.seat_limit, row.created.date().isoformat(), csv_cell(row.customer_id or ""),
        ])
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


# --- one organization ------------------------------------------------------------------------------------


@dataclass
class Member:
    user_id: int
    email: str
    name: str
    role: str


@dataclass
class OrgDetail:
    id: int
    name: str
    created: datetime
    customer_id: str | None
    stripe_dashboard_url: str | None  # None on the sandbox
    summary: OrgRow
    subscriptions: list[OrgSubscription] = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)
    members: list[Member] = field(default_factory=list)
    events: list[WebhookEvent] = field(default_factory=list)


def stripe_dashboard_url(customer_id: str | None) -> str | None:
    """The customer in Stripe's dashboard; None on the sandbox (it has no dashboard)."""
    settings = get_settings()
    if not customer_id or settings.stripe_api_base is not None or not settings.stripe_secret_key:
        return None
    test = settings.stripe_secret_key.startswith(("sk_test_", "rk_test_"))
    return f"https://dashboard.stripe.com/{'test/' if test else ''}customers/{customer_id}"


def org_detail(session: Session, org_id: int, *, payments: int = 25, events: int = 50) -> OrgDetail:
    org = session.get(Organization, org_id)
    if org is None:
        raise AppError(ErrorCode.NOT_FOUND, f"No organization {org_id}.")
    summary = _to_row(session.exec(_rows_query(OrgFilter()).where(Organization.id == org_id)).one())
    customer = summary.customer_id
    detail = OrgDetail(org.id, org.name, org.created_at, customer, stripe_dashboard_url(customer), summary)
    detail.subscriptions = list(session.exec(
        select(OrgSubscription).where(OrgSubscription.org_id == org_id).order_by(OrgSubscription.id.desc())).all())
    detail.payments = list(session.exec(
        select(Payment).where(Payment.org_id == org_id).order_by(Payment.created.desc(), Payment.id.desc()).limit(payments)).all())
    detail.members = [Member(*row) for row in session.exec(
        select(User.id, User.email, User.name, Membership.role).join(Membership, Membership.user_id == User.id)
        .where(Membership.org_id == org_id).order_by(User.email)).all()]
    if customer:
        detail.events = list(session.exec(
            select(WebhookEvent).where(WebhookEvent.customer_id == customer).order_by(WebhookEvent.id.desc()).limit(events)).all())
    return detail


# --- operator actions on one organization ------------------------------------------------------------------


def reconcile_org(operator: Operator, org_id: int) -> list[str]:
    """"Reconcile now": re-read the org's Stripe customer (sync_customer) and heal its mirror; audited."""
    with session_scope() as session:
        if session.get(Organization, org_id) is None:
            raise AppError(ErrorCode.NOT_FOUND, f"No organization {org_id}.")
        customer = session.exec(select(BillingCustomer.stripe_customer_id).where(BillingCustomer.org_id == org_id)).first()
        audit.record(session, operator, audit.RECONCILE, f"org:{org_id}", customer or "no Stripe customer")
    if customer is None:
        raise AppError(ErrorCode.NO_BILLING_ACCOUNT, "This organization has no Stripe customer yet: nothing to reconcile.")
    return sync_customer(customer).changes


@dataclass
class ReadOnlyView:
    """The org's billing pages as its admin sees them (the same views), for reading only."""

    org_id: int
    org_name: str
    billing: BillingView
    payments: list[Payment]
    members: list[Member]


def open_read_only(operator: Operator, org_id: int) -> ReadOnlyView:
    """"Open as read-only": audited as an impersonated read."""
    with session_scope() as session:
        detail = org_detail(session, org_id, events=0)
        view = billing_view(session, org_id)
        audit.record(session, operator, audit.IMPERSONATE_READ, f"org:{org_id}", detail.name)
    return ReadOnlyView(org_id, detail.name, view, detail.payments, detail.members)
