"""Removing a member (admins) and leaving an organization (anyone, never its last admin).

On a per-seat plan the Stripe quantity follows: max(min_seats, members left), set before the
membership is deleted and put back if the database then fails, under the org's seat claim.
"""

from __future__ import annotations

from sqlmodel import delete, select

from billing_app.auth.accounts import Actor, MemberRow
from billing_app.billing.seat_billing import (
    per_seat_at_stripe,
    resync_if_changed,
    set_quantity,
    undone_on_failure,
)
from billing_app.billing.seats import required_quantity, seat_claim
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import Membership, Role, User


def remove_member(actor: Actor, user_id: int) -> MemberRow:
    """Remove a member (admins; only a super admin removes a super admin)."""
    org_id = actor.require_role(Role.ADMIN)
    return _remove(actor, org_id, user_id, leaving=False)


def leave(actor: Actor) -> MemberRow:
    """Leave the actor's current organization."""
    org_id = actor.require_org()
    return _remove(actor, org_id, actor.user_id, leaving=True)


def _remove(actor: Actor, org_id: int, user_id: int, *, leaving: bool) -> MemberRow:
    with seat_claim(org_id):
        with session_scope() as session:
            memberships = session.exec(select(Membership).where(Membership.org_id == org_id)).all()
            target = next((m for m in memberships if m.user_id == user_id), None) if isinstance(user_id, int) else None
            if target is None:
                raise AppError(ErrorCode.USER_NOT_FOUND, "That user is not a member of this organization.")
            if not leaving and Role(target.role) == Role.SUPER_ADMIN and actor.role != Role.SUPER_ADMIN:
                raise AppError(ErrorCode.FORBIDDEN, "Only a super admin can remove a super admin.")
            admins_left = sum(1 for m in memberships if m is not target and Role(m.role).at_least(Role.ADMIN))
            if Role(target.role).at_least(Role.ADMIN) and admins_left == 0:
                raise AppError(
                    ErrorCode.LAST_ADMIN,
                    ("You are" if user_id == actor.user_id else "They are")
                    + " the organization's last admin. Make someone else an admin first.",
                )
            user = session.get(User, user_id)
            row = MemberRow(user.id, user.email, user.name, Role(target.role))
            members_left = len(memberships) - 1
        change = None
        per_seat = per_seat_at_stripe(org_id)  # as Stripe bills now: a portal switch may not be mirrored yet
        if per_seat is not None:
            needed = required_quantity(per_seat.plan.min_seats, members_left)
            change = set_quantity(per_seat, lambda _current: needed)
        with undone_on_failure(change), session_scope() as session:
            session.exec(delete(Membership).where(Membership.org_id == org_id, Membership.user_id == user_id))
    resync_if_changed(change)
    return row
