"""Invitations: how people join an organization, with their consent.

An admin invites an email address with a role. The invitation's link (`/invite/<token>`) is shown
once to the admin to pass on, and emailed to the invitee (billing_app/notifications); only the token's SHA-256
is stored. The invitee opens it, logs in or registers with that email, and accepts or declines.
An invitation expires after 7 days, can be revoked, and works once. Inviting says nothing about
whether the email has an account here: the answer is the same either way.

A pending invitation reserves a seat against the plan's cap; accepting takes it (billing/seats.py).
Whether the plan is billed per seat is decided on the price Stripe bills now (the mirror may lag
a Customer Portal switch). On a per-seat plan, accepting raises the Stripe quantity first and adds
the member only once Stripe agreed (billing/seat_billing.py): a refusal leaves the invitation
pending, nobody added, and the reason on the invitation for the admins to see.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, select

from billing_app import limits, routes
from billing_app.auth.accounts import Actor, _check_can_grant, actor_now, normalize_email
from billing_app.notifications import hooks as notification_hooks
from billing_app.auth.tokens import new_token, token_hash
from billing_app.billing.seat_billing import (
    CostPreview, invite_cost, per_seat_at_stripe, per_seat_switch_waiting, resync_if_changed, set_quantity, set_scheduled_seats, undone_on_failure,
)
from billing_app.billing.seats import (
    confirm_seat_claim, refuse_acceptance, refuse_invitation, required_quantity, seat_claim, seats_of,
)
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import Invitation, Membership, Organization, Role, User, utcnow
from billing_app.settings import get_settings

log = logging.getLogger(__name__)
INVITATION_DAYS = 7
TOKEN_PREFIX = "inv"


@dataclass(frozen=True)
class InvitationRow:
    id: int
    email: str
    role: Role
    created_at: datetime
    expires_at: datetime
    invited_by: str
    last_error: str | None


@dataclass(frozen=True)
class Invited:
    """A new invitation; `url` (holding the token) is shown once and never stored."""

    invitation: InvitationRow
    url: str
    cost: CostPreview | None


def invite_url(token: str) -> str:
    return get_settings().url(routes.invite_path(token))


def _row(session: Session, inv: Invitation) -> InvitationRow:
    inviter = session.get(User, inv.invited_by_id) if inv.invited_by_id else None
    return InvitationRow(inv.id, inv.email, Role(inv.role), inv.created_at, inv.expires_at,
                         (inviter.name or inviter.email) if inviter else "", inv.last_error)


def _pending_query(org_id: int, now: datetime):
    return select(Invitation).where(
        Invitation.org_id == org_id, Invitation.accepted_at.is_(None), Invitation.declined_at.is_(None),
        Invitation.revoked_at.is_(None), Invitation.expires_at > now,
    )


def list_invitations(session: Session, actor: Actor) -> list[InvitationRow]:
    """The org's pending invitations, newest first (any member may see them, as the members)."""
    org_id = actor.require_org()
    rows = session.exec(_pending_query(org_id, utcnow()).order_by(Invitation.created_at.desc(), Invitation.id.desc())).all()
    return [_row(session, inv) for inv in rows]


def _refuse_or_replace(session: Session, actor: Actor, org_id: int, email: str, role: Role, now: datetime) -> Actor:
    """What refuses inviting `email` as `session` reads the org now (the actor's role changed,
    ALREADY_MEMBER, the seat cap), once the email's pending invitation, which the new one replaces,
    is revoked. The actor as they are now."""
    actor = actor_now(session, actor, Role.ADMIN)
    _check_can_grant(actor, role)
    member = session.exec(
        select(Membership.id).join(User, User.id == Membership.user_id)
        .where(Membership.org_id == org_id, User.email == email)
    ).first()
    if member is not None:
        raise AppError(ErrorCode.ALREADY_MEMBER, f"{email} is already a member of this organization.")
    for old in session.exec(_pending_query(org_id, now).where(Invitation.email == email)).all():
        _withdraw(session, old, now)
    session.flush()
    refuse_invitation(session, seats_of(session, org_id))
    return actor


def invite(actor: Actor, *, email: str, role: Role = Role.MEMBER) -> Invited:
    """Invite `email` with `role` (admins). A new invitation for an email replaces its pending one
    (whose link then stops working). Refused at the seat cap (409 SEAT_LIMIT_REACHED), and past
    RATE_LIMIT_INVITATION_ORG for the org or RATE_LIMIT_INVITATION_EMAIL for the address (429 RATE_LIMITED)."""
    org_id = actor.require_role(Role.ADMIN)
    role = Role(role)
    _check_can_grant(actor, role)
    email = normalize_email(email)
    # Each invitation emails the address (with names the inviter chose): a few an hour per address,
    # from any org, and a few dozen an hour per org, to any addresses (inviting then revoking keeps
    # the seats free, so only this stops an org mailing anyone). Only invitations that are sent
    # count: an org over its limit is refused first, without counting (it spends no address's);
    # then a dry run of the refusals (a bulk invite names current members), and only then the counts.
    # Counted before the seat claim, so a slow rate-limit store never holds it; the claim asks
    # again (an invitation refused by a change made in between has been counted).
    limits.check(limits.INVITATION_ORG, org_id)
    with session_scope() as session:
        _refuse_or_replace(session, actor, org_id, email, role, utcnow())
        session.rollback()  # a dry run: nothing of it is kept
    limits.hit(limits.INVITATION_EMAIL, email)
    limits.hit(limits.INVITATION_ORG, org_id)
    token = new_token(TOKEN_PREFIX)
    now = utcnow()
    with seat_claim(org_id):
        with session_scope() as session:
            actor = _refuse_or_replace(session, actor, org_id, email, role, now)  # as it is now: the request waited for the claim
            inv = Invitation(
                org_id=org_id, email=email, role=role.value, token_hash=token_hash(token), invited_by_id=actor.user_id,
                created_at=now, expires_at=now + timedelta(days=INVITATION_DAYS),
            )
            session.add(inv)
            session.flush()
            row = _row(session, inv)
            # The invitation email, in the invitation's own transaction (billing_app/notifications).
            notification_hooks.send_invitation(email, invite_url(token), org_name=actor.org_name, inviter=actor.name or actor.email,
                                               org_id=org_id, session=session, key=inv.token_hash)
    cost = None
    try:
        cost = invite_cost(org_id)
    except AppError as error:  # the invitation stands; only its price could not be read
        log.warning("cost preview for an invitation of org %s failed: %s", org_id, error.message)
    return Invited(row, invite_url(token), cost)


def revoke(actor: Actor, invitation_id: int) -> None:
    org_id = actor.require_role(Role.ADMIN)
    with session_scope() as session:
        actor_now(session, actor, Role.ADMIN)
        inv = session.get(Invitation, invitation_id) if isinstance(invitation_id, int) else None
        if inv is None or inv.org_id != org_id:
            raise AppError(ErrorCode.INVITATION_NOT_FOUND, "No such invitation.")
        _refuse_unless_open(inv, for_revoking=True)
        _withdraw(session, inv, utcnow())


def _withdraw(session: Session, inv: Invitation, now: datetime) -> None:
    """Revoke an invitation: its link stops working, and its email, if still waiting to go (SMTP
    down), is cancelled in this same transaction (a withdrawn link must not reach anyone)."""
    inv.revoked_at = now
    session.add(inv)
    notification_hooks.cancel_invitation(session, inv.email, inv.token_hash)


def revoke_made_by(session: Session, org_id: int, inviter_id: int, *, inviter_role: Role | None = None) -> int:
    """Revoke the pending invitations `inviter_id` made in the org that `inviter_role` could not make
    now (all of them when they are no longer a member: None); returns how many.

    An invitation stands on its inviter's authority: the caller removes or demotes them in this
    same transaction, so no link outlives the authority that made it.
    """
    may_invite = inviter_role is not None and inviter_role.at_least(Role.ADMIN)  # as invite() requires
    still_grantable = [r.value for r in Role if may_invite and inviter_role.at_least(r)]
    now = utcnow()
    stale = session.exec(
        _pending_query(org_id, now).where(Invitation.invited_by_id == inviter_id, Invitation.role.not_in(still_grantable))
    ).all()
    for inv in stale:
        _withdraw(session, inv, now)
    return len(stale)


# --- the invitee's side: /invite/<token> -----------------------------------------------------------------


@dataclass(frozen=True)
class InvitationView:
    """What the invitation page shows to whoever holds the link."""

    org_id: int
    org_name: str
    email: str
    role: Role
    invited_by: str
    expires_at: datetime
    status: str  # pending | expired | revoked | accepted | declined


def _status(inv: Invitation, now: datetime) -> str:
    if inv.accepted_at is not None:
        return "accepted"
    if inv.declined_at is not None:
        return "declined"
    if inv.revoked_at is not None:
        return "revoked"
    return "pending" if inv.expires_at > now else "expired"


def _by_token(session: Session, token: str) -> Invitation:
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX + "_") or len(token) > 200:
        raise AppError(ErrorCode.INVITATION_NOT_FOUND, "This invitation link is not valid.")
    inv = session.exec(select(Invitation).where(Invitation.token_hash == token_hash(token))).first()
    if inv is None:
        raise AppError(ErrorCode.INVITATION_NOT_FOUND, "This invitation link is not valid.")
    return inv


def find(token: str) -> InvitationView:
    with session_scope() as session:
        inv = _by_token(session, token)
        row = _row(session, inv)
        org = session.get(Organization, inv.org_id)
        return InvitationView(inv.org_id, org.name, inv.email, Role(inv.role), row.invited_by, inv.expires_at, _status(inv, utcnow()))


# What the invitee is told of an invitation that is no longer open (the refusal and the invite page).
# Revoked covers an admin's revoke and the inviter's leaving, removal or demotion (revoke_made_by).
CLOSED_MESSAGES = {
    "accepted": "This invitation was already accepted.",
    "declined": "This invitation was declined.",
    "revoked": "This invitation was withdrawn. Ask an admin of the organization for a new one.",
    "expired": "This invitation has expired. Ask an admin of the organization for a new one.",
}


def _refuse_unless_open(inv: Invitation, *, for_revoking: bool = False) -> None:
    status = _status(inv, utcnow())
    if status in ("accepted", "declined"):
        raise AppError(ErrorCode.INVITATION_USED, CLOSED_MESSAGES[status])
    if status == "revoked":
        raise AppError(ErrorCode.INVITATION_REVOKED, CLOSED_MESSAGES[status])
    if status == "expired" and not for_revoking:
        raise AppError(ErrorCode.INVITATION_EXPIRED, CLOSED_MESSAGES[status])


def _refuse_other_user(inv: Invitation, actor: Actor) -> None:
    if actor.email.lower() != inv.email:
        raise AppError(
            ErrorCode.INVITATION_WRONG_USER,
            f"This invitation is for {inv.email}. Log in with that email (or sign up with it) to accept it.",
        )


def _open_for(session: Session, token: str, actor: Actor) -> Invitation:
    inv = _by_token(session, token)
    _refuse_unless_open(inv)
    _refuse_other_user(inv, actor)
    return inv


def _mark(session: Session, inv: Invitation, **values) -> bool:
    """Set values on the invitation only while it is still open (a conditional UPDATE)."""
    t = Invitation.__table__
    result = session.execute(
        update(t).where(
            t.c.id == inv.id, t.c.accepted_at.is_(None), t.c.declined_at.is_(None), t.c.revoked_at.is_(None),
            t.c.expires_at > utcnow(),
        ).values(**values)
    )
    return result.rowcount == 1


def _note_failure(invitation_id: int, message: str) -> None:
    with session_scope() as session:
        session.execute(update(Invitation.__table__).where(Invitation.__table__.c.id == invitation_id)
                        .values(last_error=message[:500]))


def open_invitation_org(actor: Actor, token: str) -> int:
    """The organization of `actor`'s open invitation `token` (refused as accepting it would be)."""
    with session_scope() as session:
        return _open_for(session, token, actor).org_id


def accept(actor: Actor, token: str) -> int:
    """Join the invitation's organization with its role; returns the org's id.

    Under the org's seat claim: the cap is checked on the members now, a per-seat plan's Stripe
    quantity is raised first, and the member is added only once Stripe agreed (the quantity is put
    back if the database then fails). Two acceptances at once are decided one after the other; one
    whose claim lapsed during a slow Stripe call is refused there (409 SEAT_CHANGE_IN_PROGRESS), so
    two never share the seat it bought.
    """
    org_id = open_invitation_org(actor, token)
    with seat_claim(org_id):
        with session_scope() as session:
            inv = _open_for(session, token, actor)
            org_name = session.get(Organization, org_id).name
            already = session.exec(
                select(Membership.id).where(Membership.org_id == org_id, Membership.user_id == actor.user_id)
            ).first()
            if already is not None:
                _mark(session, inv, accepted_at=utcnow(), accepted_by_id=actor.user_id, last_error=None)
                return org_id
            invitation_id, role = inv.id, inv.role
        # Per seat or not as Stripe bills now: a portal switch may not be mirrored yet. The mirror
        # (synced when it differed) then gives the cap checked here.
        per_seat = per_seat_at_stripe(org_id)
        with session_scope() as session:
            seats = seats_of(session, org_id)
            refuse_acceptance(session, seats)
            members_after = seats.used + 1
        try:
            # Counted here, where Stripe is called for the seats (a per-seat plan's, or a waiting switch
            # to one): a repeated acceptance that fails earlier costs the organization's billing nothing.
            if per_seat is not None or per_seat_switch_waiting(org_id):
                limits.hit(limits.STRIPE_ORG, org_id)
            if per_seat is not None:
                needed = required_quantity(per_seat.plan.min_seats, members_after)
                change = set_quantity(per_seat, lambda current: max(current, needed))
            else:
                # A flat plan switching to a per-seat one at the period end: the switch bills them too.
                change = set_scheduled_seats(org_id, members_after)
        except AppError as error:
            if error.code == ErrorCode.SEAT_CHANGE_IN_PROGRESS:
                raise  # the plan changed meanwhile: nothing for the admins to fix, trying again works
            _note_failure(invitation_id, f"{actor.email} could not join: {error.message}")
            raise AppError(
                error.code,
                f"We could not add you to {org_name}: the payment provider did not accept the extra seat. "
                "Nothing was changed, and the organization's admins can see why on their members page.",
            ) from None
        with undone_on_failure(change), session_scope() as session:
            confirm_seat_claim(session, org_id)  # not lapsed during the Stripe call, and another acceptance given this seat
            if not _mark(session, inv, accepted_at=utcnow(), accepted_by_id=actor.user_id, last_error=None):
                _refuse_unless_open(session.get(Invitation, invitation_id))
                raise AppError(ErrorCode.INVITATION_USED, "This invitation can no longer be used.")
            session.add(Membership(user_id=actor.user_id, org_id=org_id, role=role))
            session.flush()
    resync_if_changed(change)
    return org_id


def decline(actor: Actor, token: str) -> None:
    with session_scope() as session:
        inv = _open_for(session, token, actor)
        if not _mark(session, inv, declined_at=utcnow()):
            raise AppError(ErrorCode.INVITATION_USED, "This invitation can no longer be used.")
