"""Seats: who counts, what the org's plan allows, and one seat change at a time per org.

Seats used are the org's members. A pending invitation reserves a seat against a cap (so an
admin cannot invite past it), and is not billed until it is accepted. Caps come from the one
entitlement rule (`entitlements.grants`): the live plan's `limits.seats`, else the free tier's;
a downgrade waiting for the period end to a plan with a smaller cap holds already (the members
must fit it then).
A per-seat plan bills the members as the Stripe quantity, never below `min_seats`
(billing/seat_billing.py makes those Stripe calls); this module reads the mirror only.

Every change that adds or removes a seat (an invitation, an acceptance, a removal, a seat
purchase, a plan change) runs under the org's seat claim (`seat_claim`: the checkout's claim
logic, on a row of its own in `seatclaim`), so two of them never decide on the same count. The claim
lapses after CLAIM_SECONDS, which a slow Stripe call can outlast: the transaction writing the members
confirms it is still held (`confirm_seat_claim`), or writes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from sqlalchemy import func
from sqlmodel import Session, select

from billing_app.billing import reservations
from billing_app.billing.entitlements import (
    Grants,
    count_members,
    current_subscription,
    grants,
)
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.formatting import format_date
from billing_app.models import Invitation, Plan, SeatClaim, utcnow

FREE_PLAN_NAME = "Free"


@dataclass(frozen=True)
class ScheduledCap:
    """A plan change waiting for the period end to a plan with a seat cap: the members must fit it then."""

    plan_name: str
    limit: int
    at: datetime


@dataclass(frozen=True)
class Seats:
    """An org's seats as the mirror has them."""

    used: int  # members
    pending: int  # pending invitations, each reserving a seat against the cap
    limit: int | None  # the cap; None = unlimited
    purchased: int | None  # a per-seat plan's quantity at Stripe; None otherwise
    per_seat: bool
    min_seats: int
    plan_key: str | None  # None on the free tier
    plan_name: str
    scheduled: ScheduledCap | None = None  # a scheduled downgrade's cap, judged already now

    @property
    def below_members(self) -> bool:
        """A per-seat plan paying for fewer seats than it has members (lowered in the portal)."""
        return self.per_seat and self.purchased is not None and self.purchased < self.used

    @property
    def spare(self) -> int:
        """Seats paid for and not yet taken by a member or a pending invitation (per-seat plans)."""
        if not self.per_seat or self.purchased is None:
            return 0
        return max(self.purchased - self.used - self.pending, 0)


def count_pending(session: Session, org_id: int, now: datetime | None = None) -> int:
    now = now or utcnow()
    return session.exec(
        select(func.count()).select_from(Invitation).where(
            Invitation.org_id == org_id, Invitation.accepted_at.is_(None), Invitation.declined_at.is_(None),
            Invitation.revoked_at.is_(None), Invitation.expires_at > now,
        )
    ).one()


def _scheduled_cap(session: Session, org_id: int) -> ScheduledCap | None:
    sub = current_subscription(session, org_id)
    plan = sub.scheduled_period.plan if sub is not None and sub.scheduled_period is not None else None
    if plan is None or plan.per_seat or plan.seat_cap is None or sub.scheduled_change_at is None:
        return None
    return ScheduledCap(plan.name, plan.seat_cap, sub.scheduled_change_at)


def seats_of(session: Session, org_id: int, granted: Grants | None = None) -> Seats:
    granted = granted or grants(session, org_id)
    return Seats(
        used=count_members(session, org_id),
        pending=count_pending(session, org_id),
        limit=granted.seat_cap,
        purchased=granted.purchased_seats,
        per_seat=granted.per_seat,
        min_seats=granted.min_seats,
        plan_key=granted.plan_key,
        plan_name=granted.plan_name or FREE_PLAN_NAME,
        scheduled=_scheduled_cap(session, org_id),
    )


def required_quantity(min_seats: int, members: int) -> int:
    """What a per-seat plan bills for this many members."""
    return max(min_seats, members, 1)


def _lifting_plan(session: Session, needed: int, current_key: str | None) -> Plan | None:
    """The first plan on sale (display order) that allows `needed` members: per seat or a cap high enough."""
    plans = session.exec(
        select(Plan).where(Plan.active == True, Plan.legacy == False).order_by(Plan.display_order, Plan.id)  # noqa: E712
    ).all()
    for plan in plans:
        if plan.key != current_key and (plan.seat_cap is None or plan.seat_cap >= needed):
            return plan
    return None


def _how_to_lift(session: Session, seats: Seats, needed: int) -> str:
    plan = _lifting_plan(session, needed, seats.plan_key)
    if plan is None:
        return "Remove a member or revoke a pending invitation first."
    if plan.per_seat:
        return f"The {plan.name} plan lifts it: billed per seat, with no cap."
    if plan.seat_cap is None:
        return f"The {plan.name} plan lifts it: unlimited seats."
    return f"The {plan.name} plan lifts it: up to {plan.seat_cap} seats."


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _seats_word(n: int) -> str:
    return _count(n, "seat")


def _taken(seats: Seats) -> str:
    return _count(seats.used, "member") + (f" and {_count(seats.pending, 'pending invitation')}" if seats.pending else "")


def _changes_to(later: ScheduledCap) -> str:
    return f"{later.plan_name} on {format_date(later.at)}, which allows {_seats_word(later.limit)}"


def refuse_invitation(session: Session, seats: Seats) -> None:
    """Inviting one more: refused at the cap (members and pending invitations), at a scheduled
    downgrade's cap (they must all fit it then), or while a per-seat plan pays for fewer seats than
    it has members."""
    if seats.limit is not None and seats.used + seats.pending + 1 > seats.limit:
        raise AppError(
            ErrorCode.SEAT_LIMIT_REACHED,
            f"Your {seats.plan_name} plan allows {_seats_word(seats.limit)}, and all are taken ({_taken(seats)}). "
            + _how_to_lift(session, seats, seats.used + seats.pending + 1),
        )
    later = seats.scheduled
    if later is not None and seats.used + seats.pending + 1 > later.limit:
        raise AppError(
            ErrorCode.SEAT_LIMIT_REACHED,
            f"Your plan changes to {_changes_to(later)}, and all are taken ({_taken(seats)}). "
            "Keep your current plan (on the billing page) to add more members.",
        )
    if seats.below_members:
        raise AppError(
            ErrorCode.SEAT_LIMIT_REACHED,
            f"Your {seats.plan_name} plan pays for {_seats_word(seats.purchased)} but has {_count(seats.used, 'member')}. "
            "Buy seats for everyone (Seats on the billing page, or the billing portal) before inviting more.",
        )


def refuse_acceptance(session: Session, seats: Seats) -> None:
    """Accepting an invitation (whose own seat was reserved): refused when the members fill the cap,
    or a scheduled downgrade's."""
    if seats.limit is not None and seats.used + 1 > seats.limit:
        raise AppError(
            ErrorCode.SEAT_LIMIT_REACHED,
            f"This organization's {seats.plan_name} plan allows {_seats_word(seats.limit)}, and all are taken. "
            "Ask an admin of the organization to upgrade: " + _how_to_lift(session, seats, seats.used + 1),
        )
    later = seats.scheduled
    if later is not None and seats.used + 1 > later.limit:
        raise AppError(
            ErrorCode.SEAT_LIMIT_REACHED,
            f"This organization's plan changes to {_changes_to(later)}, and all are taken ({_count(seats.used, 'member')}). "
            "Ask an admin of the organization to keep the current plan (on the billing page) to add more members.",
        )


def refuse_plan_too_small(session: Session, org_id: int, plan: Plan) -> None:
    """A plan change (or purchase) whose seat cap is below the current members: 409 SEAT_LIMIT_EXCEEDED."""
    cap = plan.seat_cap
    if cap is None or plan.per_seat:
        return
    members = count_members(session, org_id)
    if members > cap:
        raise AppError(
            ErrorCode.SEAT_LIMIT_EXCEEDED,
            f"The {plan.name} plan allows {_seats_word(cap)}, and your organization has {_count(members, 'member')}. "
            f"Remove {members - cap} first, or choose a plan with more seats.",
        )


# The orgs whose seat claim this thread holds, with its token: the re-sync a change runs under its
# claim judges set-aside changes (billing/set_aside.py), which takes the claim too.
_held: ContextVar[Mapping[int, str]] = ContextVar("seat_claims_held", default=MappingProxyType({}))


def _busy(message: str) -> AppError:
    return AppError(ErrorCode.SEAT_CHANGE_IN_PROGRESS, message)


@contextlib.contextmanager
def seat_claim(org_id: int, wait_seconds: float = reservations.WAIT_SECONDS) -> Iterator[None]:
    """Hold the org's seat claim while deciding on its seats (waits for a racing holder, then
    SEAT_CHANGE_IN_PROGRESS); a holder taking it again just goes on."""
    if org_id in _held.get():
        yield
        return
    busy = _busy("Another change to your organization's seats or plan is in progress. Please try again in a moment.")
    with reservations.org_claim(SeatClaim.__table__, org_id, busy, wait_seconds) as claim_id:
        token = _held.set({**_held.get(), org_id: claim_id})
        try:
            yield
        finally:
            _held.reset(token)


def confirm_seat_claim(session: Session, org_id: int) -> None:
    """In the transaction that writes a seat change's members: the seat claim is still this request's
    (renewed until the commit). A claim lapses after CLAIM_SECONDS, which a slow Stripe call can
    outlast; another change may then have taken it and decided on the same seats. Refused (409
    SEAT_CHANGE_IN_PROGRESS) then: the caller puts its Stripe change back (seat_billing.undo)."""
    if not reservations.still_ours(session, SeatClaim.__table__, org_id, _held.get()[org_id]):
        raise _busy("Another change to your organization's seats was made while this one waited for the payment "
                    "provider, so nothing was changed. Please try again.")


def renew_seat_claim(org_id: int) -> None:
    """Right before a Stripe write: the claim held a full CLAIM_SECONDS from here (the reads and
    previews before it took some), refused as `confirm_seat_claim` is when it lapsed meanwhile."""
    with session_scope() as session:
        confirm_seat_claim(session, org_id)
