"""Starting a hosted Checkout and confirming how it ended."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlmodel import select

from billing_app import routes
from billing_app.auth.accounts import Actor
from billing_app.billing import gateway
from billing_app.billing.catalog import price_matches_period
from billing_app.billing.customers import ensure_customer
from billing_app.billing.entitlements import current_subscription
from billing_app.billing.sync import sync_customer
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import OrgSubscription, PeriodType, Plan, PlanPeriod, Role
from billing_app.settings import get_settings

SESSION_ID_RE = re.compile(r"^cs_[A-Za-z0-9_]{1,250}$")


@dataclass(frozen=True)
class CheckoutStarted:
    session_id: str
    url: str


def _period_on_sale(session, period_id: int) -> tuple[PlanPeriod, Plan]:
    period = session.get(PlanPeriod, period_id)
    plan = period.plan if period else None
    if period is None or not period.active or plan is None or not plan.active or plan.legacy:
        raise AppError(ErrorCode.SUBSCRIPTION_PERIOD_NOT_FOUND, "That plan or billing period is not available.")
    return period, plan


def start_checkout(actor: Actor, period_id: int) -> CheckoutStarted:
    org_id = actor.require_role(Role.ADMIN)
    with session_scope() as session:
        period, plan = _period_on_sale(session, period_id)
        current = current_subscription(session, org_id)
        if current is not None and current.is_lifetime_held:
            raise AppError(ErrorCode.SUBSCRIPTION_ALREADY_ACTIVE, "Your organization already holds a lifetime plan.")
        if current is not None and current.is_manageable:
            raise AppError(
                ErrorCode.SUBSCRIPTION_ALREADY_ACTIVE,
                "Your organization already has a subscription. Change or manage it from the billing page.",
            )
        had_subscription = session.exec(select(OrgSubscription.id).where(OrgSubscription.org_id == org_id)).first() is not None
    client = gateway.stripe_client()
    try:
        price = gateway.call(client.v1.prices.retrieve, period.stripe_price_id) if period.stripe_price_id else None
    except gateway.StripeFailure:
        raise AppError(ErrorCode.STRIPE_UNAVAILABLE, "We could not reach the payment provider. Please try again.") from None
    if price is None or not price_matches_period(price, period):
        raise AppError(ErrorCode.STRIPE_PRICE_MISMATCH, "This price is out of date. Please reload the pricing page.")

    settings = get_settings()
    one_off = PeriodType(period.period_type) == PeriodType.ALL_TIME
    label = {"MONTHLY": "monthly", "YEARLY": "yearly", "ALL_TIME": "lifetime"}[period.period_type]
    metadata = {
        "org_id": str(org_id), "plan_key": plan.key, "period_id": str(period.id),
        "description": f"{plan.name} ({label})",
    }
    params = {
        "mode": "payment" if one_off else "subscription",
        "customer": None,
        "line_items": [{"price": price["id"], "quantity": 1}],
        "client_reference_id": str(org_id),
        "metadata": metadata,
        "success_url": settings.url(routes.BILLING_CONFIRM) + "?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": settings.url(routes.PRICING),
    }
    if one_off:
        params["payment_intent_data"] = {"metadata": metadata, "description": metadata["description"]}
    else:
        params["subscription_data"] = {"metadata": metadata}
        # One free trial per organization.
        if period.trial_days and not had_subscription:
            params["subscription_data"]["trial_period_days"] = period.trial_days
    try:
        params["customer"] = ensure_customer(org_id, actor.email)
        # An older checkout left open in another tab could be paid too: one subscription per org.
        for stale in gateway.list_all(client.v1.checkout.sessions.list, {"customer": params["customer"], "status": "open"}):
            try:
                gateway.call(client.v1.checkout.sessions.expire, stale["id"])
            except gateway.StripeFailure:
                pass  # completed or expired meanwhile (another tab, a racing request): nothing to close

        checkout = gateway.call(client.v1.checkout.sessions.create, params=params)
    except gateway.StripeFailure:
        raise AppError(ErrorCode.STRIPE_CHECKOUT_FAILED, "We could not start the checkout. Please try again.") from None
    return CheckoutStarted(checkout["id"], checkout["url"])


@dataclass(frozen=True)
class CheckoutStatus:
    status: str  # open | complete | expired
    payment_status: str  # paid | unpaid | no_payment_required
    subscription_id: str | None
    mode: str


def checkout_status(actor: Actor, session_id: str) -> CheckoutStatus:
    """The session's state, after syncing its customer so the answer need not wait for the webhook."""
    org_id = actor.require_org()
    not_found = AppError(ErrorCode.INVALID_SESSION, "We could not find this checkout.")
    if not isinstance(session_id, str) or not SESSION_ID_RE.match(session_id):
        raise not_found
    try:
        checkout = gateway.call(gateway.stripe_client().v1.checkout.sessions.retrieve, session_id)
    except gateway.StripeFailure as failure:
        if failure.status == 404:
            raise not_found from None
        raise AppError(ErrorCode.STRIPE_UNAVAILABLE, "We could not reach the payment provider. Please try again.") from None
    if checkout.get("client_reference_id") != str(org_id):
        raise not_found  # another org's checkout: say nothing about it
    if checkout.get("customer"):
        try:
            sync_customer(checkout["customer"])
        except gateway.StripeFailure:
            # The session's own status is known; the mirror catches up from the webhook.
            pass
    return CheckoutStatus(checkout["status"], checkout["payment_status"], checkout.get("subscription"), checkout["mode"])
