"""The webhook event log for operators: filter by type, state, customer and date; live counts;
replay one event or every failed one (audited). Rows are read without their payload."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import select, update

from billing_app.db import get_engine, session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.ops import audit, filter_choice
from billing_app.ops.access import Operator
from billing_app.text import refuse_control_characters
from billing_app.webhooks import eventlog
from billing_app.webhooks.eventlog import FAILED, PENDING, PROCESSED, T, EventSummary
from billing_app.webhooks.signal import notify

STATES = (PENDING, PROCESSED, FAILED)
PAGE_SIZE = 50
MAX_LIMIT = 200


@dataclass(frozen=True)
class EventFilter:
    type: str = ""
    state: str = ""
    customer: str = ""
    start: date | None = None
    end: date | None = None  # inclusive

    @classmethod
    def parse(cls, type: str | None = None, state: str | None = None, customer: str | None = None,
              start: str | None = None, end: str | None = None) -> "EventFilter":
        state = filter_choice(state, STATES, "state")
        type_ = (type or "").strip()
        type_ = "" if type_ == "all" else type_
        customer = (customer or "").strip()
        if len(type_) > 100 or len(customer) > 255:
            raise AppError(ErrorCode.VALIDATION_ERROR, "That filter is too long.")
        refuse_control_characters(type_ + customer, "A filter")  # PostgreSQL refuses a NUL in a query

        def day(value: str | None, label: str) -> date | None:
            if not value:
                return None
            try:
                parsed = date.fromisoformat(value)
            except ValueError:
                raise AppError(ErrorCode.VALIDATION_ERROR, f"The {label} date must look like 2026-01-31.") from None
            if parsed >= date.max:
                raise AppError(ErrorCode.VALIDATION_ERROR, f"The {label} date is out of range.")
            return parsed

        result = cls(type_, state, customer, day(start, "from"), day(end, "to"))
        if result.start and result.end and result.start > result.end:
            raise AppError(ErrorCode.VALIDATION_ERROR, "The from date must be on or before the to date.")
        return result


_COLUMNS = [T.c[name] for name in EventSummary.__dataclass_fields__]


def _where(query, filters: EventFilter):
    if filters.type:
        query = query.where(T.c.type == filters.type)
    if filters.state:
        query = query.where(T.c.state == filters.state)
    if filters.customer:
        query = query.where(T.c.customer_id == filters.customer)
    if filters.start:
        query = query.where(T.c.received_at >= datetime.combine(filters.start, time.min, timezone.utc))
    if filters.end:
        query = query.where(T.c.received_at < datetime.combine(filters.end + timedelta(days=1), time.min, timezone.utc))
    return query


def list_events(filters: EventFilter, *, before_id: int | None = None, limit: int = PAGE_SIZE) -> tuple[list[EventSummary], int | None]:
    """Newest first; the id to pass as `before_id` for the next page, or None."""
    if not 1 <= limit <= MAX_LIMIT:
        raise AppError(ErrorCode.VALIDATION_ERROR, f"limit must be between 1 and {MAX_LIMIT}.")
    query = _where(select(*_COLUMNS), filters).order_by(T.c.id.desc()).limit(limit + 1)
    if before_id:
        query = query.where(T.c.id < before_id)
    with get_engine().connect() as connection:
        rows = [EventSummary(*row) for row in connection.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, rows[-1].id if more and rows else None


def event_types() -> list[str]:
    with get_engine().connect() as connection:
        return list(connection.execute(select(T.c.type).distinct().order_by(T.c.type).limit(200)).scalars())


def counts() -> dict[str, int]:
    found = eventlog.counts()
    return {state: found.get(state, 0) for state in STATES}


def replay_one(operator: Operator, event_id: int | str) -> None:
    """Queue one stored event again (any state); NOT_FOUND when there is no such event."""
    if not eventlog.replay(event_id):
        raise AppError(ErrorCode.NOT_FOUND, "No such event.")
    with session_scope() as session:
        audit.record(session, operator, audit.REPLAY, str(event_id))


def replay_failed(operator: Operator) -> int:
    """Queue every failed event again, in one statement; returns how many."""
    statement = update(T).where(T.c.state == FAILED).values(
        state=PENDING, attempts=0, next_attempt_at=None, claimed_until=None, processed_at=None)
    with session_scope() as session:
        count = session.execute(statement).rowcount
        audit.record(session, operator, audit.REPLAY_ALL_FAILED, "all failed events", f"{count} event(s) queued again")
    if count:
        notify()
    return count
