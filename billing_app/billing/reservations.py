"""The per-org purchase reservation: one checkout at a time per organization, by construction.

Whoever starts a checkout first claims the org's `PurchaseReservation` row with a conditional
UPDATE (a value in the row, not a database lock, so no lock is held across Stripe calls). A
racing request waits for the claim to be released and then sees what the first one did: the
same open session (reused), or a completed purchase (refused). A claim left by a process of this
host that died is taken over at once (`owners.is_dead`); one from elsewhere lapses after
`CLAIM_SECONDS`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select, update

from billing_app import owners
from billing_app.db import insert_if_absent, session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import PurchaseReservation, utcnow

# Longer than the few Stripe calls a checkout makes; renewed (`renew`) right before the one that
# creates the session, so a holder whose claim lapsed never creates a second one. That one call
# takes at most `gateway.worst_case_call_seconds()` (94 s) when Stripe does not answer, but can
# still outlast the claim when an answer trickles in (the timeout bounds each read, not the whole
# answer). Another request may then have taken the claim over, so `record_checkout` says whether
# the row was still ours.
CLAIM_SECONDS = 120
# How long a racing request waits for the claim before answering CHECKOUT_IN_PROGRESS.
WAIT_SECONDS = 30
POLL_SECONDS = 0.05

T = PurchaseReservation.__table__


@dataclass(frozen=True)
class Reservation:
    """What the claim holder may read and change: the org's one open checkout."""

    org_id: int
    claim_id: str
    checkout_session_id: str | None
    plan_period_id: int | None


def _try_claim(org_id: int, claim_id: str, table=T) -> bool:
    now = utcnow()
    with session_scope() as session:
        insert_if_absent(session, table, ["org_id"], org_id=org_id)
        holder = session.execute(select(table.c.claim_id).where(table.c.org_id == org_id)).scalar_one()
        free = or_(table.c.claimed_until.is_(None), table.c.claimed_until < now)
        if holder and owners.is_dead(holder):
            free = or_(free, table.c.claim_id == holder)  # killed mid-checkout: no need to wait out its claim
        result = session.execute(
            update(table).where(table.c.org_id == org_id, free)
            .values(claim_id=claim_id, claimed_until=now + timedelta(seconds=CLAIM_SECONDS))
        )
        return result.rowcount == 1


@contextlib.contextmanager
def org_claim(table, org_id: int, busy: AppError, wait_seconds: float = WAIT_SECONDS) -> Iterator[str]:
    """Hold the org's row of `table` (org_id, claim_id, claimed_until) for the block; the claim token.

    Waits up to `wait_seconds` for a racing holder, then raises `busy`. Also used for seat changes
    (billing/seats.py), on a row of their own.
    """
    claim_id = owners.new_claim_token()
    deadline = time.monotonic() + wait_seconds
    while not _try_claim(org_id, claim_id, table):
        if time.monotonic() > deadline:
            raise busy
        time.sleep(POLL_SECONDS)
    try:
        yield claim_id
    finally:
        with session_scope() as session:
            session.execute(update(table).where(table.c.org_id == org_id, table.c.claim_id == claim_id)
                            .values(claim_id=None, claimed_until=None))


def purchase_busy() -> AppError:
    return AppError(
        ErrorCode.CHECKOUT_IN_PROGRESS,
        "Another checkout for your organization is being started. Please try again in a moment.",
    )


@contextlib.contextmanager
def purchase_claim(org_id: int) -> Iterator[Reservation]:
    """Hold the org's reservation for the duration of the block (waits for a racing holder)."""
    with org_claim(T, org_id, purchase_busy()) as claim_id:
        with session_scope() as session:
            row = session.get(PurchaseReservation, org_id)
            reservation = Reservation(org_id, claim_id, row.checkout_session_id, row.plan_period_id)
        yield reservation


def still_ours(session, table, org_id: int, claim_id: str) -> bool:
    """Extend the claim in the caller's transaction, if it is still `claim_id`'s; False when it lapsed
    and another request took it over. On PostgreSQL the row stays locked until that transaction ends,
    so nobody takes the claim over before what the caller writes there is committed."""
    result = session.execute(
        update(table).where(table.c.org_id == org_id, table.c.claim_id == claim_id)
        .values(claimed_until=utcnow() + timedelta(seconds=CLAIM_SECONDS))
    )
    return result.rowcount == 1


def renew(reservation: Reservation) -> None:
    """Extend the claim; refuse to go on if it lapsed and another request holds it now."""
    with session_scope() as session:
        ours = still_ours(session, T, reservation.org_id, reservation.claim_id)
    if not ours:
        raise taken_over()


def taken_over() -> AppError:
    """The refusal for a holder whose claim lapsed and was taken over by another request."""
    return AppError(ErrorCode.CHECKOUT_IN_PROGRESS, "Another checkout for your organization was started meanwhile. Please try again.")


def record_checkout(reservation: Reservation, session_id: str | None, period_id: int | None) -> bool:
    """Remember the org's one open checkout (None once it is closed); False if the claim is no longer ours."""
    return _write(reservation.org_id, reservation.claim_id, checkout_session_id=session_id, plan_period_id=period_id)


def _write(org_id: int, holder: str, **values) -> bool:
    # Only the holder writes; a holder whose claim lapsed and was taken over changes nothing, and is told so.
    with session_scope() as session:
        result = session.execute(update(T).where(T.c.org_id == org_id, T.c.claim_id == holder).values(**values))
    return result.rowcount == 1
