"""Payment history: filtered, newest first, keyset-paginated (fast at any depth), CSV export."""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone

from sqlalchemy import and_, or_
from sqlmodel import Session, select

from billing_app.auth.accounts import Actor
from billing_app.errors import AppError, ErrorCode
from billing_app.formatting import csv_cell, plain_amount
from billing_app.models import Payment, PaymentStatus, Role

MAX_LIMIT = 100


@dataclass(frozen=True)
class PaymentFilter:
    start: date | None = None
    end: date | None = None  # inclusive
    status: PaymentStatus | None = None

    @classmethod
    def parse(cls, start: str | None = None, end: str | None = None, status: str | None = None) -> "PaymentFilter":
        """From user input (ISO dates, a status name); a clear error for anything else."""
        def day(value: str | None, label: str) -> date | None:
            if not value:
                return None
            try:
                return date.fromisoformat(value)
            except ValueError:
                raise AppError(ErrorCode.VALIDATION_ERROR, f"The {label} date must look like 2026-01-31.") from None

        parsed_status = None
        if status:
            try:
                parsed_status = PaymentStatus(status.upper())
            except ValueError:
                allowed = ", ".join(s.value for s in PaymentStatus)
                raise AppError(ErrorCode.VALIDATION_ERROR, f"Unknown status {status!r}; use one of {allowed}.") from None
        result = cls(day(start, "from"), day(end, "to"), parsed_status)
        if result.end is not None and result.end >= date.max:
            raise AppError(ErrorCode.VALIDATION_ERROR, "The to date is out of range.")  # the query adds a day
        if result.start and result.end and result.start > result.end:
            raise AppError(ErrorCode.VALIDATION_ERROR, "The from date must be on or before the to date.")
        return result


@dataclass(frozen=True)
class PaymentPage:
    rows: list[Payment]
    next_cursor: str | None


def _cursor(row: Payment) -> str:
    return base64.urlsafe_b64encode(f"{row.created.isoformat()}|{row.id}".encode()).decode()


MAX_CURSOR_LENGTH = 200
BAD_CURSOR = "That page link is not valid; start from the first page."


def cursor_time(text: str) -> datetime:
    """A keyset page link's time, in UTC; ValueError unless it is one we could have made.

    A zoneless time would compare wrongly, and an aware one the calendar cannot hold in UTC
    (0001-01-01T00:00:00+14:00) would fail when bound to the query.
    """
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(text)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(text) from None


def cursor_row_id(value: object) -> int:
    """A keyset page link's row id; ValueError past the database's integer (PostgreSQL would fail)."""
    if not isinstance(value, int) or isinstance(value, bool) or not -(2**31) <= value < 2**31:
        raise ValueError(value)
    return value


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (created, id) a page link continues after; a clear error for anything we did not make.

    The one check for the page, the CSV route and the API; its parts (cursor_time, cursor_row_id)
    check the ops org list's page links too.
    """
    try:
        if len(cursor) > MAX_CURSOR_LENGTH:
            raise ValueError
        created_text, id_text = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return cursor_time(created_text), cursor_row_id(int(id_text))
    except (ValueError, UnicodeDecodeError, TypeError):
        raise AppError(ErrorCode.VALIDATION_ERROR, BAD_CURSOR) from None


def _query(org_id: int, filters: PaymentFilter):
    query = select(Payment).where(Payment.org_id == org_id)
    if filters.start:
        query = query.where(Payment.created >= datetime.combine(filters.start, time.min, timezone.utc))
    if filters.end:
        query = query.where(Payment.created < datetime.combine(filters.end + timedelta(days=1), time.min, timezone.utc))
    if filters.status:
        query = query.where(Payment.status == filters.status.value)
    # Served by the (org_id, created) index.
    return query.order_by(Payment.created.desc(), Payment.id.desc())


AWAITING_PAYMENT_MESSAGE = "Your organization's purchase is waiting for its payment to clear (bank payments can take a few days)."


def awaiting_purchase(session: Session, org_id: int) -> Payment | None:
    """A checkout the org completed with a delayed payment method (SEPA, ACH) that has not settled
    yet (mirrored PENDING by billing/sync.py): it holds that purchase, so no second one is started,
    though it gives no access until paid."""
    return session.exec(select(Payment).where(Payment.org_id == org_id, Payment.status == PaymentStatus.PENDING.value)).first()


def payment_failed(session: Session, org_id: int, stripe_id: str | None) -> bool:
    """The mirror has this purchase's payment as failed (the sync read its payment intent)."""
    return stripe_id is not None and session.exec(select(Payment.id).where(
        Payment.org_id == org_id, Payment.stripe_id == stripe_id, Payment.status == PaymentStatus.FAILED.value)).first() is not None


def list_payments(session: Session, actor: Actor, filters: PaymentFilter, *, limit: int = 25, cursor: str | None = None) -> PaymentPage:
    org_id = actor.require_role(Role.ADMIN)
    if not 1 <= limit <= MAX_LIMIT:
        raise AppError(ErrorCode.VALIDATION_ERROR, f"limit must be between 1 and {MAX_LIMIT}.")
    query = _query(org_id, filters)
    if cursor:
        created, row_id = decode_cursor(cursor)
        query = query.where(or_(Payment.created < created, and_(Payment.created == created, Payment.id < row_id)))
    rows = list(session.exec(query.limit(limit + 1)).all())
    has_more = len(rows) > limit
    rows = rows[:limit]
    return PaymentPage(rows, _cursor(rows[-1]) if has_more and rows else None)


CSV_COLUMNS = ["date", "description", "amount", "currency", "status", "invoice_url", "receipt_url", "pdf_url", "stripe_id",
               "amount_refunded"]


def export_csv(session: Session, actor: Actor, filters: PaymentFilter) -> Iterator[str]:
    """The filtered rows as CSV text chunks, read in batches (never all rows in memory)."""
    org_id = actor.require_role(Role.ADMIN)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for row in session.exec(_query(org_id, filters).execution_options(yield_per=1000)):
        # Text from Stripe is neutralised; the date and the amount (a number, kept a number) are ours.
        writer.writerow([
            row.created.date().isoformat(), csv_cell(row.description), plain_amount(row.amount, row.currency),
            csv_cell(row.currency.upper()), csv_cell(row.status), csv_cell(row.invoice_url or ""),
            csv_cell(row.receipt_url or ""), csv_cell(row.pdf_url or ""), csv_cell(row.stripe_id),
            plain_amount(row.amount_refunded, row.currency),
        ])
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
