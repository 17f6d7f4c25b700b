"""POST /api/subscriptions/seats: the seats a per-seat plan pays for."""

from __future__ import annotations

from fastapi import APIRouter

from billing_app.api.rest.deps import Admin
from billing_app.api.rest.errors import ADMIN, STRIPE, error_responses
from billing_app.api.rest.routes.org import SEAT_CHANGE, _current_seats
from billing_app.api.rest.schemas import SeatChangeResponse, SeatsRequest
from billing_app.billing.seat_billing import change_seats
from billing_app.errors import ErrorCode as E

router = APIRouter(tags=["subscription"])


@router.post(
    "/subscriptions/seats", response_model=SeatChangeResponse,
    summary="Preview or change the seats a per-seat plan pays for (admins)",
    responses=error_responses(
        ADMIN, [E.SUBSCRIPTION_NOT_FOUND, E.LIFETIME_NOT_CHANGEABLE, E.NOT_PER_SEAT, E.SEATS_BELOW_MEMBERS], SEAT_CHANGE, STRIPE,
    ),
)
def seats(actor: Admin, body: SeatsRequest) -> SeatChangeResponse:
    change = change_seats(actor, body.seats, preview=body.preview)
    return SeatChangeResponse(
        fromSeats=change.from_seats, toSeats=change.to_seats, unitAmount=change.unit_amount, currency=change.currency,
        interval=change.interval, recurringAmount=change.recurring_amount, proratedAmount=change.prorated_amount,
        amountDueNow=change.amount_due_now, applied=change.applied, seats=_current_seats(actor.require_org()),
    )
