"""/api/subscriptions/...: the organization's subscription: read it, buy, change, cancel, reactivate,
keep the current plan, pause and resume, the retention offer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path

from billing_app.api.rest.deps import Admin, Member
from billing_app.api.rest.errors import ADMIN, AUTH, STRIPE, error_responses
from billing_app.api.rest.schemas import (
    BuyRequest,
    CancelRequest,
    ChangeRequest,
    CheckoutStartedResponse,
    CheckoutStatusResponse,
    MySubscriptionResponse,
    PauseRequest,
    PlanChangeResponse,
    RetentionAcceptedResponse,
    RetentionOffer,
    RetentionOfferResponse,
    ScheduledChange,
    SubscriptionActionResponse,
    SubscriptionOut,
)
from billing_app.billing import checkout, retention, subscriptions, views
from billing_app.db import session_scope
from billing_app.errors import ErrorCode as E
from billing_app.models import Role

router = APIRouter(tags=["subscription"])

# The refusals of acting on the organization's subscription (cancel, reactivate, change).
MANAGE = (E.SUBSCRIPTION_NOT_FOUND, E.LIFETIME_NOT_CHANGEABLE, E.SUBSCRIPTION_ALREADY_CANCELED)


def _subscription_out(detail: views.SubscriptionDetail | None) -> SubscriptionOut | None:
    if detail is None:
        return None
    change = detail.scheduled_change
    return SubscriptionOut(
        id=detail.stripe_id,
        planKey=detail.plan_key,
        planName=detail.plan_name,
        periodType=detail.period_type,
        subscriptionPeriodId=detail.period_id,
        price=detail.price,
        currency=detail.currency,
        dateFrom=detail.date_from,
        dateTo=detail.date_to,
        status=detail.status,
        autoRenew=detail.auto_renew,
        cancelAtPeriodEnd=detail.cancel_at_period_end,
        cancelAt=detail.cancel_at,
        trialEndsAt=detail.trial_ends_at,
        access=detail.access,
        scheduledChange=ScheduledChange(
            subscriptionPeriodId=change.period_id, planKey=change.plan_key, periodType=change.period_type, at=change.at,
        ) if change else None,
        paused=detail.paused,
        pauseResumesAt=detail.pause_resumes_at,
    )


def _current(org_id: int) -> SubscriptionOut | None:
    with session_scope() as session:
        return _subscription_out(views.subscription_detail(session, org_id))


@router.get(
    "/subscriptions/my", response_model=MySubscriptionResponse,
    summary="The organization's subscription, or null", responses=error_responses(AUTH, validation=False),
)
def my_subscription(actor: Member) -> MySubscriptionResponse:
    return MySubscriptionResponse(subscription=_current(actor.require_org()))


@router.post(
    "/subscriptions/buy", response_model=CheckoutStartedResponse,
    summary="Start a Stripe Checkout for a plan period (admins)",
    responses=error_responses(
        ADMIN, [E.SUBSCRIPTION_PERIOD_NOT_FOUND, E.SUBSCRIPTION_ALREADY_ACTIVE, E.CHECKOUT_IN_PROGRESS,
                E.SEATS_BELOW_MEMBERS, E.SEAT_LIMIT_EXCEEDED, E.STRIPE_PRICE_MISMATCH, E.STRIPE_CHECKOUT_FAILED], STRIPE,
    ),
)
def buy(actor: Admin, body: BuyRequest) -> CheckoutStartedResponse:
    started = checkout.start_checkout(actor, body.subscriptionPeriodId, body.seats)
    return CheckoutStartedResponse(sessionId=started.session_id, checkoutUrl=started.url)


@router.get(
    "/subscriptions/checkout-session/{session_id}", response_model=CheckoutStatusResponse,
    summary="How a Checkout ended (syncs the organization's billing first)",
    responses=error_responses(AUTH, [E.INVALID_SESSION], STRIPE, path_params=True),
)
def checkout_session(
    actor: Member,
    session_id: Annotated[str, Path(description="The Checkout Session id (cs_...) from POST /api/subscriptions/buy.")],
) -> CheckoutStatusResponse:
    status = checkout.checkout_status(actor, session_id)
    return CheckoutStatusResponse(
        status=status.status, payment_status=status.payment_status,
        subscriptionId=status.subscription_id, mode=status.mode, outcome=status.outcome,
    )


@router.post(
    "/subscriptions/cancel", response_model=SubscriptionActionResponse,
    summary="Cancel at the period end (default) or now (admins)",
    responses=error_responses(ADMIN, MANAGE, [E.STRIPE_CANCELLATION_FAILED], STRIPE),
)
def cancel(actor: Admin, body: Annotated[CancelRequest | None, Body()] = None) -> SubscriptionActionResponse:
    """Confirming a cancellation while the retention offer stands declines the offer (GET
    /api/subscriptions/retention shows it first, as the app's cancellation flow does)."""
    body = body or CancelRequest()
    retention.cancel(actor, at_period_end=body.atPeriodEnd, feedback=body.feedback, comment=body.reason)
    return SubscriptionActionResponse(subscription=_current(actor.require_org()))


@router.post(
    "/subscriptions/reactivate", response_model=SubscriptionActionResponse,
    summary="Undo a cancellation at the period end (admins)",
    responses=error_responses(
        ADMIN, MANAGE, [E.SUBSCRIPTION_NOT_CANCELING, E.STRIPE_REACTIVATION_FAILED], STRIPE, validation=False,
    ),
)
def reactivate(actor: Admin) -> SubscriptionActionResponse:
    subscriptions.reactivate(actor)
    return SubscriptionActionResponse(subscription=_current(actor.require_org()))


@router.post(
    "/subscriptions/change", response_model=PlanChangeResponse,
    summary="Preview or make a plan change: upgrades apply now (prorated), downgrades at the period end (admins)",
    responses=error_responses(
        ADMIN, MANAGE, [E.SUBSCRIPTION_PERIOD_NOT_FOUND, E.SAME_PLAN, E.PLAN_CHANGE_PENDING, E.SUBSCRIPTION_CANCELING,
                        E.SUBSCRIPTION_PAUSED, E.SEAT_LIMIT_EXCEEDED, E.SEAT_CHANGE_IN_PROGRESS, E.STRIPE_PLAN_CHANGE_FAILED],
        STRIPE,
    ),
)
def change(actor: Admin, body: ChangeRequest) -> PlanChangeResponse:
    result = subscriptions.change_plan(actor, body.subscriptionPeriodId, preview=body.preview)
    return PlanChangeResponse(
        fromPlan=result.from_plan, toPlan=result.to_plan, upgrade=result.upgrade,
        amountDueNow=result.amount_due_now, currency=result.currency, applied=result.applied,
        effectiveAt=result.effective_at, confirmPaymentUrl=result.confirm_url,
        subscription=_current(actor.require_org()),
    )


@router.post(
    "/subscriptions/keep-current-plan", response_model=SubscriptionActionResponse,
    summary="Drop a plan change scheduled for the period end (or set aside for an upgrade awaiting payment), like the dashboard's Keep current plan (admins)",
    responses=error_responses(ADMIN, MANAGE, [E.NO_SCHEDULED_CHANGE, E.SEAT_CHANGE_IN_PROGRESS, E.STRIPE_PLAN_CHANGE_FAILED], STRIPE,
                              validation=False),
)
def keep_current_plan(actor: Admin) -> SubscriptionActionResponse:
    subscriptions.cancel_scheduled_change(actor)
    return SubscriptionActionResponse(subscription=_current(actor.require_org()))


@router.post(
    "/subscriptions/pause", response_model=SubscriptionActionResponse,
    summary="Pause instead of canceling: no charge for 1, 2 or 3 months, then it resumes by itself (admins)",
    responses=error_responses(
        ADMIN, MANAGE, [E.SUBSCRIPTION_PAUSED, E.SUBSCRIPTION_CANCELING, E.SUBSCRIPTION_NOT_PAUSABLE, E.STRIPE_PAUSE_FAILED], STRIPE,
    ),
)
def pause(actor: Admin, body: PauseRequest) -> SubscriptionActionResponse:
    retention.pause(actor, body.months)
    return SubscriptionActionResponse(subscription=_current(actor.require_org()))


@router.post(
    "/subscriptions/resume", response_model=SubscriptionActionResponse,
    summary="End a pause early: charging and access resume now (admins)",
    responses=error_responses(ADMIN, MANAGE, [E.SUBSCRIPTION_NOT_PAUSED, E.STRIPE_PAUSE_FAILED], STRIPE, validation=False),
)
def resume(actor: Admin) -> SubscriptionActionResponse:
    retention.resume(actor)
    return SubscriptionActionResponse(subscription=_current(actor.require_org()))


def _offer_out(coupon) -> RetentionOffer:
    return RetentionOffer(couponId=coupon.id, name=coupon.name, description=coupon.describe())


@router.get(
    "/subscriptions/retention", response_model=RetentionOfferResponse,
    summary="The retention offer the organization may accept before it cancels, or null (admins)",
    responses=error_responses(ADMIN, validation=False),
)
def retention_offer(actor: Admin) -> RetentionOfferResponse:
    with session_scope() as session:
        offer = retention.offer_for(session, actor.require_role(Role.ADMIN))
    return RetentionOfferResponse(offer=_offer_out(offer) if offer else None)


@router.post(
    "/subscriptions/retention/accept", response_model=RetentionAcceptedResponse,
    summary="Accept the retention offer: its coupon is applied to the subscription and nothing is canceled (admins)",
    responses=error_responses(
        ADMIN, MANAGE, [E.RETENTION_OFFER_UNAVAILABLE, E.RETENTION_OFFER_USED, E.SUBSCRIPTION_CANCELING, E.STRIPE_OFFER_FAILED],
        STRIPE, validation=False,
    ),
)
def accept_retention(actor: Admin) -> RetentionAcceptedResponse:
    coupon = retention.accept(actor)
    return RetentionAcceptedResponse(offer=_offer_out(coupon), subscription=_current(actor.require_org()))
