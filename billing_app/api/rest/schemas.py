"""Request and response bodies of the REST API: the validation and the OpenAPI document come from these.

Field names are the JSON names of the API (camelCase, as the issue specifies them; the checkout
status and the billing summary keep their snake_case names). Request bodies are strict and
closed: a string where a boolean belongs, or an unknown field, is a 422, not a guess.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

from billing_app.billing.entitlements import AccessReason
from billing_app.billing.portal import FLOWS
from billing_app.billing.subscriptions import CANCELLATION_FEEDBACK
from billing_app.formatting import api_time
from billing_app.models import MAX_ID, PaymentStatus, PeriodType, Role

PortalFlow = Literal[FLOWS]  # type: ignore[valid-type]
CancellationFeedback = Literal[CANCELLATION_FEEDBACK]  # type: ignore[valid-type]


def _json_integer(value: Any) -> Any:
    """A JSON integer: 7 or 7.0 (JSON Schema counts both), never "7" or true."""
    if isinstance(value, (str, bool)):
        raise ValueError("must be a JSON integer")
    return value


# Lax only where JSON Schema is (7.0 is an integer); the rest of a request body is strict.
Id = Annotated[int, Field(strict=False), Ge(1), Le(MAX_ID), BeforeValidator(_json_integer)]
MAX_SEATS = 10_000
# Every time the API answers, in one format (formatting.api_time).
ApiTime = Annotated[datetime, PlainSerializer(api_time, when_used="json"), WithJsonSchema({"type": "string", "format": "date-time"})]
SeatCount = Annotated[int, Field(strict=False), Ge(1), Le(MAX_SEATS), BeforeValidator(_json_integer)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Response(BaseModel):
    success: Literal[True] = True


# --- requests --------------------------------------------------------------------------------------


class BuyRequest(_Request):
    subscriptionPeriodId: Id = Field(description="A period `id` from GET /api/subscriptions.")  # noqa: N815
    seats: SeatCount | None = Field(
        default=None,
        description="Per-seat plans only: the seats to buy (default: the members, at least the plan's minSeats). "
        "The buyer may raise it on the Checkout page.",
    )


class SeatsRequest(_Request):
    seats: SeatCount = Field(description="The seats to pay for: at least the members and the plan's minSeats.")
    preview: bool = Field(default=False, description="true: only price the change (nothing is applied).")


class InvitationRequest(_Request):
    email: str = Field(
        min_length=3, max_length=254,
        description="Who to invite (checked as the sign-up form checks it: 422 otherwise). Whether it has an account "
        "here is never revealed.",
    )
    role: Literal["member", "admin", "super_admin"] = Field(
        default="member", description="The role on joining (super_admin only by a super admin)."
    )


class ChangeRequest(_Request):
    subscriptionPeriodId: Id = Field(description="The recurring period to move to.")  # noqa: N815
    preview: bool = Field(default=False, description="true: only price the change (nothing is applied).")


class CancelRequest(_Request):
    atPeriodEnd: bool = Field(  # noqa: N815
        default=True, description="true: keep access until the period ends; false: end the subscription now."
    )
    reason: str | None = Field(default=None, max_length=500, description="Optional comment, passed to Stripe.")
    feedback: CancellationFeedback | None = Field(  # type: ignore[valid-type]
        default=None, description="Why: one of Stripe's cancellation reasons (cancellation_details.feedback).")


class PauseRequest(_Request):
    months: Annotated[int, Field(strict=False), Ge(1), Le(3), BeforeValidator(_json_integer)] = Field(
        description="How long to stop charging: 1, 2 or 3 months; then the subscription resumes by itself.")


class PortalRequest(_Request):
    flow: PortalFlow | None = Field(  # type: ignore[valid-type]
        default=None, description="Open the portal on one task instead of its home page."
    )


# --- responses -------------------------------------------------------------------------------------


class PeriodOut(BaseModel):
    id: int = Field(description="The subscriptionPeriodId to buy or change to.")
    periodType: PeriodType  # noqa: N815
    price: int = Field(description="In the currency's minor unit (cents).")
    currency: str
    interval: Literal["month", "year"] | None = Field(description="Stripe's billing interval; null for ALL_TIME (paid once).")
    trialDays: int | None  # noqa: N815


class PlanOut(BaseModel):
    key: str
    name: str
    description: str
    features: list[str] = Field(description="The marketing lines shown on the pricing page.")
    limits: dict[str, Any] = Field(description="Numeric limits, e.g. seats; -1 is unlimited.")
    featureFlags: dict[str, bool] = Field(  # noqa: N815
        default_factory=dict, description="What the plan unlocks, by feature key (see GET /api/billing/entitlements)."
    )
    perSeat: bool = Field(default=False, description="Billed per seat: each period's price is per seat.")  # noqa: N815
    minSeats: int = Field(default=1, description="The fewest seats a per-seat plan bills.")  # noqa: N815
    mostPopular: bool  # noqa: N815
    periods: list[PeriodOut]


class PlansResponse(_Response):
    plans: list[PlanOut]


class ScheduledChange(BaseModel):
    subscriptionPeriodId: int | None  # noqa: N815
    planKey: str | None  # noqa: N815
    periodType: PeriodType | None  # noqa: N815
    at: ApiTime | None = Field(description="When the switch happens (the current period's end).")


class SubscriptionOut(BaseModel):
    id: str = Field(description="Stripe's id (sub_... for subscriptions; pi_/cs_... for a lifetime purchase).")
    planKey: str | None  # noqa: N815
    planName: str | None  # noqa: N815
    periodType: PeriodType | None  # noqa: N815
    subscriptionPeriodId: int | None  # noqa: N815
    price: int | None = Field(description="In the currency's minor unit (cents).")
    currency: str | None
    dateFrom: ApiTime | None  # noqa: N815
    dateTo: ApiTime | None = Field(description="End of the current period; null for ALL_TIME.")  # noqa: N815
    status: str = Field(description="Stripe's status: trialing, active, past_due, unpaid, canceled, paused, incomplete, ...")
    autoRenew: bool  # noqa: N815
    cancelAtPeriodEnd: bool  # noqa: N815
    cancelAt: ApiTime | None = Field(
        default=None, description="When it ends by itself (set to cancel: at the period end or on a chosen date); null while it renews.")
    trialEndsAt: ApiTime | None  # noqa: N815
    access: bool = Field(description="Whether the organization may use the product now.")
    scheduledChange: ScheduledChange | None = Field(  # noqa: N815
        default=None, description="A downgrade waiting for the period end, or null."
    )
    paused: bool = Field(default=False, description="Charging is paused (no access meanwhile).")
    pauseResumesAt: ApiTime | None = Field(  # noqa: N815
        default=None, description="When a pause ends by itself; null when not paused or paused with no end.")


class MySubscriptionResponse(_Response):
    subscription: SubscriptionOut | None


class CheckoutStartedResponse(_Response):
    sessionId: str  # noqa: N815
    checkoutUrl: str  # noqa: N815


class CheckoutStatusResponse(_Response):
    status: Literal["open", "complete", "expired"]
    payment_status: Literal["paid", "unpaid", "no_payment_required"]
    subscriptionId: str | None  # noqa: N815
    mode: Literal["subscription", "payment", "setup"]
    outcome: Literal["open", "expired", "paid", "clearing", "failed"] = Field(
        description="How the purchase stands. `clearing`: complete, but a delayed payment (SEPA, ACH) is still "
                    "settling, which can take days; `failed`: that payment bounced and no plan was started "
                    "(both have payment_status `unpaid`).")


class PortalResponse(_Response):
    url: str


class PaymentOut(BaseModel):
    id: str = Field(description="Stripe's id: in_... (invoice), pi_... (one-off payment), cs_... (expired checkout) or "
                                "sub_... (a cancellation, status CANCELLED, amount 0).")
    status: PaymentStatus
    amount: int = Field(description="In the currency's minor unit (cents).")
    currency: str
    created: ApiTime
    description: str
    invoiceUrl: str | None  # noqa: N815
    receiptUrl: str | None  # noqa: N815
    pdfUrl: str | None  # noqa: N815
    subtotal: int | None = Field(default=None, description="Before discounts and tax (minor units); null where Stripe gives none.")
    discount: int = Field(default=0, description="Discounts taken off (minor units).")
    tax: int = Field(default=0, description="Tax added (minor units).")
    amountRefunded: int = Field(default=0, description="Refunded so far (minor units): a partial refund leaves the "  # noqa: N815
                                "status COMPLETED, a full one makes it REFUNDED.")


class PaymentsResponse(_Response):
    payments: list[PaymentOut]
    nextCursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null on the last page.")  # noqa: N815


class PlanChangeResponse(_Response):
    fromPlan: str  # noqa: N815
    toPlan: str  # noqa: N815
    upgrade: bool
    amountDueNow: int = Field(description="Prorated amount billed now for an upgrade (preview), in minor units; 0 once applied and for downgrades.")  # noqa: N815
    currency: str
    applied: bool = Field(description="false for a preview, or while an upgrade waits for the customer at `confirmPaymentUrl`; "
                                      "true once an upgrade is made or a downgrade is scheduled.")
    effectiveAt: ApiTime | None = Field(  # noqa: N815
        default=None, description="When a downgrade takes effect (the period end); an upgrade applies at once (null or now)."
    )
    confirmPaymentUrl: str | None = Field(  # noqa: N815
        default=None,
        description="An upgrade whose payment needs the customer's bank (3-D Secure): Stripe's hosted invoice page, "
                    "where the customer confirms it; the change applies once they do (`applied` is false until then). "
                    "The same link the billing page shows. null otherwise.",
    )
    subscription: SubscriptionOut | None


class SubscriptionActionResponse(_Response):
    subscription: SubscriptionOut | None


class SummaryPlan(BaseModel):
    key: str
    name: str
    periodType: PeriodType | None  # noqa: N815
    limits: dict[str, Any]


class SummaryResponse(_Response):
    status: str | None = Field(description="The subscription's Stripe status; null without one.")
    trial_ends_at: ApiTime | None
    activated_at: ApiTime | None
    plan: SummaryPlan | None
    current_period_end: ApiTime | None
    access: bool
    reason: AccessReason = Field(description="Why access is granted or not (the app's one access rule).")


# --- teams: entitlements, members, invitations, seats ------------------------------------------------------


class EntitlementPlan(BaseModel):
    key: str
    name: str


class LimitOut(BaseModel):
    limit: int | None = Field(description="The most allowed; null is unlimited.")
    used: int | None = Field(description="How much is used (seats: the members); null when not counted here.")


class EntitlementsResponse(_Response):
    plan: EntitlementPlan | None = Field(description="The live plan whose grants apply; null on the free tier.")
    access: bool = Field(description="Whether the organization has a live plan (the app's one access rule).")
    features: dict[str, bool] = Field(description="Every feature key the catalog names, and whether the organization has it.")
    limits: dict[str, LimitOut] = Field(description="Every limit key the catalog names: the limit and its use.")


class MemberOut(BaseModel):
    userId: int  # noqa: N815
    email: str
    name: str
    role: Role


class InvitationOut(BaseModel):
    id: int
    email: str
    role: Role
    expiresAt: ApiTime  # noqa: N815


class SeatsOut(BaseModel):
    used: int = Field(description="Members.")
    limit: int | None = Field(description="The plan's (or the free tier's) seat cap; null is unlimited.")
    purchased: int | None = Field(description="Seats paid for on a per-seat plan (the Stripe quantity); null otherwise.")


class MembersResponse(_Response):
    members: list[MemberOut]
    invitations: list[InvitationOut] = Field(description="Pending invitations; each reserves a seat against the cap.")
    seats: SeatsOut


class CostPreviewOut(BaseModel):
    seatsAdded: int = Field(description="Seats the invitation adds once accepted (0: it takes an unused paid seat).")  # noqa: N815
    amount: int = Field(description="Added to each period's bill (after the discounts, with tax), in minor units.")
    currency: str
    interval: Literal["month", "year"]
    proratedAmount: int = Field(description="This change alone, for the rest of the current period (with tax), in minor units.")  # noqa: N815
    message: str = Field(description="e.g. 'adds $8.00 a month; $2.40 now, prorated (on the next invoice)'.")


class InvitationCreatedResponse(_Response):
    invitation: InvitationOut
    inviteUrl: str = Field(description="The link to pass on; shown once (only its hash is stored).")  # noqa: N815
    costPreview: CostPreviewOut | None = Field(description="What accepting costs on a per-seat plan; null on a flat plan or the free tier.")  # noqa: N815


class SeatsChangedResponse(_Response):
    seats: SeatsOut


class SeatChangeResponse(_Response):
    fromSeats: int  # noqa: N815
    toSeats: int  # noqa: N815
    unitAmount: int = Field(description="Price of one seat per period, in minor units.")  # noqa: N815
    currency: str
    interval: Literal["month", "year"]
    recurringAmount: int = Field(description="Each period's bill for toSeats seats (after the discounts, with tax).")  # noqa: N815
    proratedAmount: int = Field(description="This change alone: its prorated difference for the rest of this period, with tax (negative: a credit).")  # noqa: N815
    amountDueNow: int = Field(description="Billed at once (SEAT_PRORATION=always_invoice), with whatever is pending on the subscription and less any account credit; otherwise 0 and the proration lands on the next invoice.")  # noqa: N815
    applied: bool
    seats: SeatsOut


class RetentionOffer(BaseModel):
    couponId: str = Field(description="The Stripe coupon (plans.toml [retention]).")  # noqa: N815
    name: str
    description: str = Field(description='What it gives, e.g. "20% off for 3 months".')


class RetentionOfferResponse(_Response):
    offer: RetentionOffer | None = Field(description="The offer the organization may still accept before it cancels, or null.")


class RetentionAcceptedResponse(_Response):
    offer: RetentionOffer
    subscription: SubscriptionOut | None
