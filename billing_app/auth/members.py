"""Changing an organization's members: removing one (admins), leaving (anyone), changing a role
(admins). The organization never loses its last admin, and the pending invitations a member made
go with their authority to make them (revoked when they leave, are removed or demoted), as do the
API tokens they made in the organization when they leave or are removed.

All three run under the org's seat claim, one after the other, so no check is decided on members
another of them is changing, nor on an acting admin's role from before the wait (accounts.actor_now:
a request whose sender was demoted or removed meanwhile is refused). On a per-seat plan the Stripe
quantity follows a removal down to max(min_seats, members left) (never up: seats lowered in the
billing portal below the members stay as they are), set before the membership is deleted and
put back if the database then fails (so does a per-seat plan's that a flat one switches to at the
period end).
"""

from __future__ import annotations

from sqlmodel import Session, delete, select

from billing_app.auth import api_tokens, invitations
from billing_app.auth.accounts import Actor, MemberRow, _check_can_grant, actor_now
from billing_app.billing.seat_billing import (
    per_seat_at_stripe,
    resync_if_changed,
    set_quantity,
    set_scheduled_seats,
    undone_on_failure,
)
from billing_app.billing.seats import confirm_seat_claim, required_quantity, seat_claim
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import Membership, Role, User

ADMIN_ROLES = [r.value for r in Role if r.at_least(Role.ADMIN)]
NOT_A_MEMBER = "That user is not a member of this organization."


def remove_member(actor: Actor, user_id: int) -> MemberRow:
    """Remove a member (admins; only a super admin removes a super admin)."""
    org_id = actor.require_role(Role.ADMIN)
    return _remove(actor, org_id, user_id, leaving=False)


def leave(actor: Actor) -> MemberRow:
    """Leave the actor's current organization."""
    org_id = actor.require_org()
    return _remove(actor, org_id, actor.user_id, leaving=True)


def change_role(actor: Actor, *, user_id: int, role: Role) -> MemberRow:
    """Change a member's role (admins only); the organization always keeps an admin."""
    org_id = actor.require_role(Role.ADMIN)
    _check_can_grant(actor, role)
    with seat_claim(org_id), session_scope() as session:
        memberships = _locked_memberships(session, org_id)
        actor = actor_now(session, actor, Role.ADMIN)
        _check_can_grant(actor, role)
        target = _member(memberships, user_id)
        if Role(target.role) == Role.SUPER_ADMIN and actor.role != Role.SUPER_ADMIN:
            raise AppError(ErrorCode.FORBIDDEN, "Only a super admin can change a super admin's role.")
        admins_after = sum(
            1 for m in memberships if Role(role.value if m is target else m.role).at_least(Role.ADMIN)
        )
        if admins_after == 0:
            raise AppError(ErrorCode.LAST_ADMIN, "The organization needs at least one admin. Make someone else an admin first.")
        target.role = role.value
        invitations.revoke_made_by(session, org_id, user_id, inviter_role=role)
        user = session.get(User, user_id)
        return MemberRow(user.id, user.email, user.name, role)


def _locked_memberships(session: Session, org_id: int) -> list[Membership]:
    """The org's memberships, locked until the transaction ends (PostgreSQL; SQLite has one writer)."""
    return list(session.exec(select(Membership).where(Membership.org_id == org_id).with_for_update()).all())


def _member(memberships: list[Membership], user_id: int) -> Membership:
    target = next((m for m in memberships if m.user_id == user_id), None) if isinstance(user_id, int) else None
    if target is None:
        raise AppError(ErrorCode.USER_NOT_FOUND, NOT_A_MEMBER)
    return target


def _last_admin(actor: Actor, user_id: int) -> AppError:
    return AppError(
        ErrorCode.LAST_ADMIN,
        ("You are" if user_id == actor.user_id else "They are")
        + " the organization's last admin. Make someone else an admin first.",
    )


def _remove(actor: Actor, org_id: int, user_id: int, *, leaving: bool) -> MemberRow:
    with seat_claim(org_id):
        with session_scope() as session:
            memberships = session.exec(select(Membership).where(Membership.org_id == org_id)).all()
            if not leaving:
                actor = actor_now(session, actor, Role.ADMIN)
            target = _member(memberships, user_id)
            if not leaving and Role(target.role) == Role.SUPER_ADMIN and actor.role != Role.SUPER_ADMIN:
                raise AppError(ErrorCode.FORBIDDEN, "Only a super admin can remove a super admin.")
            admins_left = sum(1 for m in memberships if m is not target and Role(m.role).at_least(Role.ADMIN))
            if Role(target.role).at_least(Role.ADMIN) and admins_left == 0:
                raise _last_admin(actor, user_id)
            user = session.get(User, user_id)
            row = MemberRow(user.id, user.email, user.name, Role(target.role))
            members_left = len(memberships) - 1
        per_seat = per_seat_at_stripe(org_id)  # as Stripe bills now: a portal switch may not be mirrored yet
        if per_seat is not None:
            needed = required_quantity(per_seat.plan.min_seats, members_left)
            # Lowered, never raised: seats lowered in the billing portal below the members stay as they are.
            change = set_quantity(per_seat, lambda current: min(current, needed))
        else:
            change = set_scheduled_seats(org_id, members_left)  # a switch to a per-seat plan waiting for the period end
        with undone_on_failure(change), session_scope() as session:
            confirm_seat_claim(session, org_id)  # not lapsed during the Stripe call
            # Decided again on the rows as they are now: the check above was another transaction.
            _locked_memberships(session, org_id)
            if not leaving:
                actor_now(session, actor, Role.ADMIN)
            removed = session.execute(
                delete(Membership).where(Membership.org_id == org_id, Membership.user_id == user_id).returning(Membership.role)
            ).scalar_one_or_none()
            if removed is None:
                raise AppError(ErrorCode.USER_NOT_FOUND, NOT_A_MEMBER)
            admins_left = session.exec(
                select(Membership.id).where(Membership.org_id == org_id, Membership.role.in_(ADMIN_ROLES))
            ).first()
            if Role(removed).at_least(Role.ADMIN) and admins_left is None:
                raise _last_admin(actor, user_id)
            invitations.revoke_made_by(session, org_id, user_id)
            api_tokens.revoke_in_org(session, user_id, org_id)
    resync_if_changed(change)
    return row
