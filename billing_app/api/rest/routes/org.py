"""/api/org/...: the organization's members, invitations and seats."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from billing_app.api.rest.deps import Admin, Member
from billing_app.api.rest.errors import ADMIN, AUTH, STRIPE, error_responses
from billing_app.api.rest.schemas import (
    MAX_ID,
    CostPreviewOut,
    InvitationCreatedResponse,
    InvitationOut,
    InvitationRequest,
    MemberOut,
    MembersResponse,
    SeatsChangedResponse,
    SeatsOut,
)
from billing_app.auth import invitations, members
from billing_app.billing.seats import Seats, seats_of
from billing_app.billing.team_views import team_view
from billing_app.db import session_scope
from billing_app.errors import ErrorCode as E
from billing_app.models import Role

router = APIRouter(tags=["organization"])

# Changing a per-seat plan's quantity at Stripe can refuse like any subscription change.
SEAT_CHANGE = (E.SEAT_CHANGE_IN_PROGRESS, E.STRIPE_SEAT_UPDATE_FAILED, E.SUBSCRIPTION_ALREADY_CANCELED)


def seats_out(seats: Seats) -> SeatsOut:
    return SeatsOut(used=seats.used, limit=seats.limit, purchased=seats.purchased)


def _current_seats(org_id: int) -> SeatsOut:
    with session_scope() as session:
        return seats_out(seats_of(session, org_id))


def _invitation_out(row: invitations.InvitationRow) -> InvitationOut:
    return InvitationOut(id=row.id, email=row.email, role=row.role, expiresAt=row.expires_at)


@router.get(
    "/org/members", response_model=MembersResponse,
    summary="Members, pending invitations and seats of the organization", responses=error_responses(AUTH, validation=False),
)
def list_members(actor: Member) -> MembersResponse:
    with session_scope() as session:
        view = team_view(session, actor)
    return MembersResponse(
        members=[MemberOut(userId=m.user_id, email=m.email, name=m.name, role=m.role) for m in view.members],
        invitations=[_invitation_out(row) for row in view.invitations],
        seats=seats_out(view.seats),
    )


@router.post(
    "/org/invitations", response_model=InvitationCreatedResponse,
    summary="Invite an email with a role; the link is shown once (admins)",
    responses=error_responses(ADMIN, [E.ALREADY_MEMBER, E.SEAT_LIMIT_REACHED, E.SEAT_CHANGE_IN_PROGRESS]),
)
def create_invitation(actor: Admin, body: InvitationRequest) -> InvitationCreatedResponse:
    invited = invitations.invite(actor, email=body.email, role=Role(body.role))
    cost = invited.cost
    return InvitationCreatedResponse(
        invitation=_invitation_out(invited.invitation),
        inviteUrl=invited.url,
        costPreview=CostPreviewOut(
            seatsAdded=cost.seats_added, amount=cost.amount, currency=cost.currency, interval=cost.interval,
            proratedAmount=cost.prorated, message=cost.message,
        ) if cost else None,
    )


@router.delete(
    "/org/invitations/{id}", response_model=SeatsChangedResponse,
    summary="Revoke a pending invitation: its link stops working and its seat is free again (admins)",
    responses=error_responses(ADMIN, [E.INVITATION_NOT_FOUND, E.INVITATION_USED, E.INVITATION_REVOKED], path_params=True),
)
def revoke_invitation(actor: Admin, id: Annotated[int, Path(ge=1, le=MAX_ID, description="The invitation's id.")]) -> SeatsChangedResponse:  # noqa: A002
    invitations.revoke(actor, id)
    return SeatsChangedResponse(seats=_current_seats(actor.require_org()))


@router.delete(
    "/org/members/{userId}", response_model=SeatsChangedResponse,
    summary="Remove a member; a per-seat plan's quantity follows (admins)",
    responses=error_responses(ADMIN, [E.USER_NOT_FOUND, E.LAST_ADMIN], SEAT_CHANGE, STRIPE, path_params=True),
)
def remove_member(actor: Admin, userId: Annotated[int, Path(ge=1, le=MAX_ID, description="The member's userId.")]) -> SeatsChangedResponse:  # noqa: N803
    members.remove_member(actor, userId)
    return SeatsChangedResponse(seats=_current_seats(actor.require_org()))
