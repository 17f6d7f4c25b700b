"""What the members page, the billing dashboard's seats bar and the REST API show about an org's
team and its entitlements: from the database only (never a Stripe call)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from billing_app.auth import accounts, invitations
from billing_app.auth.accounts import Actor
from billing_app.billing.entitlements import Grants, Limit, grants, known_keys, limit_of
from billing_app.billing.seats import Seats, seats_of


@dataclass(frozen=True)
class TeamView:
    members: list[accounts.MemberRow]
    invitations: list[invitations.InvitationRow]
    seats: Seats


def team_view(session: Session, actor: Actor) -> TeamView:
    """Members, pending invitations and seats of the actor's organization (any member may read)."""
    org_id = actor.require_org()
    return TeamView(accounts.list_members(session, actor), invitations.list_invitations(session, actor), seats_of(session, org_id))


@dataclass(frozen=True)
class EntitlementsView:
    granted: Grants
    features: dict[str, bool]  # every feature key the catalog names
    limits: dict[str, Limit]  # every limit key the catalog names


def entitlements_view(session: Session, org_id: int) -> EntitlementsView:
    granted = grants(session, org_id)
    feature_keys, limit_keys = known_keys(session)
    return EntitlementsView(
        granted,
        {key: bool(granted.features.get(key, False)) for key in feature_keys},
        {key: limit_of(session, org_id, key, granted) for key in limit_keys},
    )


def seats_summary(seats: Seats) -> str:
    """'2 of 3 seats used', '4 seats used (5 paid)', '4 seats used (unlimited)'."""
    pending = f" · {seats.pending} invited" if seats.pending else ""
    if seats.per_seat:
        return f"{seats.used} of {seats.purchased} paid seats used{pending}"
    if seats.limit is None:
        return f"{seats.used} seats used (unlimited){pending}"
    return f"{seats.used} of {seats.limit} seats used{pending}"


def seats_cap(seats: Seats) -> int:
    """The seats bar's maximum: a per-seat plan's paid seats, else the plan's cap; 0 when unlimited (no bar)."""
    return (seats.purchased if seats.per_seat else seats.limit) or 0


def seat_warning(seats: Seats) -> str:
    """The dashboard's warning when a per-seat plan pays for fewer seats than it has members (the
    quantity was lowered in the billing portal). Nobody is removed; new invitations wait."""
    if not seats.below_members:
        return ""
    return (
        f"Your plan pays for {seats.purchased} seats, but your organization has {seats.used} members. "
        "Nobody was removed; new invitations are paused until the seats cover everyone."
    )


def removal_note(seats: Seats) -> str:
    """What removing a member does to a per-seat plan's seats, said in the removal dialog: they go down
    to the members left (not below min_seats), but are never raised, so seats lowered in the billing
    portal below the members stay as they are."""
    if not seats.per_seat:
        return ""
    if seats.below_members:
        return (f" Your plan pays for {seats.purchased} seats, fewer than its {seats.used} members (lowered in the "
                f"billing portal): the paid seats stay at {seats.purchased}, and so does the bill.")
    return " Your plan is billed per seat: the paid seats go down to the members left (not below the plan's minimum), and so does the bill."
