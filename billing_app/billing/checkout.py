"""Starting a hosted Checkout and confirming how it ended."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from billing_app import routes
from billing_app.auth.accounts import Actor, admin_now
from billing_app.billing import gateway, payments, reservations
from billing_app.billing.catalog import price_matches_period
from billing_app.billing.customers import ensure_customer
from billing_app.billing.entitlements import count_members, current_subscription
from billing_app.billing.seats import refuse_plan_too_small, required_quantity
from billing_app.billing.sync import resync_after_change, sync_customer
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.formatting import plan_label
from billing_app.models import MANAGEABLE_STATUSES, PeriodType, Plan, PlanPeriod, Role
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


def _refuse_if_org_holds_a_plan(org_id: int) -> bool:
    """Refuse when the mirror shows a plan the org holds; else whether it ever had a subscription."""
    with session_scope() as session:
        current = current_subscription(session, org_id)
        if current is not None and current.is_lifetime_held:
            raise AppError(ErrorCode.SUBSCRIPTION_ALREADY_ACTIVE, "Your organization already holds a lifetime plan.")
        if current is not None and current.is_manageable:
            raise AppError(
                ErrorCode.SUBSCRIPTION_ALREADY_ACTIVE,
                "Your organization already has a subscription. Change or manage it from the billing page.",
            )
        if payments.awaiting_purchase(session, org_id) is not None:
            # Paid by a delayed method (SEPA, ACH): no access yet, but a second purchase would charge twice.
            raise AppError(ErrorCode.SUBSCRIPTION_ALREADY_ACTIVE, payments.AWAITING_PAYMENT_MESSAGE)
        return current is not None


# The most seats one Checkout offers to adjust to (Stripe's own maximum is far higher).
MAX_CHECKOUT_SEATS = 1000


def _seats_to_buy(session, org_id: int, plan: Plan, seats: int | None) -> tuple[int, int]:
    """(quantity, the least the buyer may adjust it to) for this plan: a per-seat plan charges for
    the chosen seats (default: the members, at least min_seats); a flat plan is one item whose seat
    cap must hold the members (SEAT_LIMIT_EXCEEDED)."""
    if not plan.per_seat:
        if seats is not None:
            raise AppError(ErrorCode.VALIDATION_ERROR, f"The {plan.name} plan is not billed per seat: leave seats out.")
        refuse_plan_too_small(session, org_id, plan)
        return 1, 1
    members = count_members(session, org_id)
    least = required_quantity(plan.min_seats, members)
    if seats is None:
        return least, least
    if seats < plan.min_seats:
        raise AppError(ErrorCode.VALIDATION_ERROR, f"The {plan.name} plan needs at least {plan.min_seats} seats.")
    if seats < members:
        raise AppError(ErrorCode.SEATS_BELOW_MEMBERS, f"Your organization has {members} members, so it needs at least {members} seats.")
    if seats > MAX_CHECKOUT_SEATS:
        raise AppError(ErrorCode.VALIDATION_ERROR, f"At most {MAX_CHECKOUT_SEATS} seats can be bought at once.")
    return seats, least


def start_checkout(actor: Actor, period_id: int, seats: int | None = None) -> CheckoutStarted:
    """A hosted Checkout for one plan period; at most one live purchase per org, by construction.

    Under the org's purchase claim: the org's open session is reused when the same period (and
    seats) is asked for again (a double click, a second tab), and expired before another is made;
    what Stripe says now (a completed checkout, a live subscription) decides, not the mirror alone.
    A per-seat plan charges for `seats` (default: the members, at least the plan's min_seats).
    """
    org_id = actor.require_role(Role.ADMIN)
    with session_scope() as session:
        period, plan = _period_on_sale(session, period_id)
        quantity, least = _seats_to_buy(session, org_id, plan, seats)
    _refuse_if_org_holds_a_plan(org_id)
    client = gateway.stripe_client()
    try:
        price = gateway.call(client.v1.prices.retrieve, period.stripe_price_id) if period.stripe_price_id else None
    except gateway.StripeFailure:
        raise gateway.unavailable() from None
    if price is None or not price_matches_period(price, period):
        raise AppError(ErrorCode.STRIPE_PRICE_MISMATCH, "This price is out of date. Please reload the pricing page.")

    with reservations.purchase_claim(org_id) as reservation:
        admin_now(actor)  # the role as it is now: the request may have waited for the claim
        try:
            customer_id = ensure_customer(org_id, actor.email)
            reused = _close_open_checkouts(client, reservation, customer_id, period.id, quantity)
            if reused is not None:
                return reused
            # Fresh truth: a purchase that completed a moment ago is live even if no webhook has landed.
            subscriptions = gateway.list_all(client.v1.subscriptions.list, {"customer": customer_id, "status": "all"})
        except gateway.StripeFailure:
            raise gateway.unavailable() from None
        if any(sub["status"] in MANAGEABLE_STATUSES for sub in subscriptions):
            resync_after_change(customer_id)
            raise AppError(
                ErrorCode.SUBSCRIPTION_ALREADY_ACTIVE,
                "Your organization already has a subscription. Change or manage it from the billing page.",
            )
        had_subscription = _refuse_if_org_holds_a_plan(org_id) or bool(subscriptions)
        # One free trial per organization: with one open session at a time, at most one trial can be paid.
        trial = bool(period.trial_days) and not had_subscription
        params = _checkout_params(org_id, customer_id, plan, period, price["id"], trial, quantity, least)
        reservations.renew(reservation)
        try:
            checkout = gateway.call(
                client.v1.checkout.sessions.create, params=params,
                # A retry of this very attempt (the SDK's own) makes no second session.
                options={"idempotency_key": f"checkout-{reservation.claim_id}-org-{org_id}"},
            )
        except gateway.StripeFailure:
            raise AppError(ErrorCode.STRIPE_CHECKOUT_FAILED, "We could not start the checkout. Please try again.") from None
        if not reservations.record_checkout(reservation, checkout["id"], period.id):
            # The create outlasted the claim and another request took it over (and may have made its
            # own session): this one is never handed out, so the org keeps one payable checkout.
            _expire(client, checkout["id"])
            raise reservations.taken_over()
    return CheckoutStarted(checkout["id"], checkout["url"])


# A session about to expire is not worth handing out again: the buyer needs time to pay.
REUSE_MIN_SECONDS_LEFT = 600


def _close_open_checkouts(client, reservation: reservations.Reservation, customer_id: str, period_id: int,
                          quantity: int = 1) -> CheckoutStarted | None:
    """Reuse the org's open session for the same period; expire every other open one.

    Raises SUBSCRIPTION_ALREADY_ACTIVE when a session of ours completed (paid, maybe not yet
    in the mirror) or completes while we try to expire it. Sessions made behind the app's back
    are expired too; one that still gets paid is caught by the sync (see sync.py).
    """
    ours = reservation.checkout_session_id
    if ours:
        session = gateway.call(client.v1.checkout.sessions.retrieve, ours)
        if session["status"] == "complete":
            _completed_purchase(reservation.org_id, session)
        elif (session["status"] == "open" and reservation.plan_period_id == period_id
              and (session.get("metadata") or {}).get("seats", "1") == str(quantity)
              and session["expires_at"] - time.time() > REUSE_MIN_SECONDS_LEFT):
            return CheckoutStarted(session["id"], session["url"])
    for stale in gateway.list_all(client.v1.checkout.sessions.list, {"customer": customer_id, "status": "open"}):
        if _expire(client, stale["id"]):
            continue
        # Refused (it stopped being open) or Stripe failed: find out where it stands.
        status = gateway.call(client.v1.checkout.sessions.retrieve, stale["id"])["status"]
        if status == "complete":
            _completed_purchase(reservation.org_id, stale)
        elif status == "open":  # still payable: another session now would let the buyer pay twice
            raise gateway.unavailable()
    if ours:
        reservations.record_checkout(reservation, None, None)  # a claim lost meanwhile: `renew` refuses next
    return None


def _expire(client, session_id: str) -> bool:
    """Expire an open Checkout session at Stripe; False when Stripe refused or could not be reached."""
    try:
        gateway.call(client.v1.checkout.sessions.expire, session_id)
    except gateway.StripeFailure:
        return False
    return True


def _completed_purchase(org_id: int, session: dict) -> None:
    """A checkout completed at Stripe: sync it, and refuse unless what it bought has ended since."""
    if session.get("customer"):
        resync_after_change(session["customer"])
    _refuse_if_org_holds_a_plan(org_id)


def _checkout_params(org_id: int, customer_id: str, plan: Plan, period: PlanPeriod, price_id: str, trial: bool,
                     quantity: int = 1, least: int = 1) -> dict:
    settings = get_settings()
    one_off = PeriodType(period.period_type) == PeriodType.ALL_TIME
    metadata = {
        "org_id": str(org_id), "plan_key": plan.key, "period_id": str(period.id),
        "description": plan_label(plan.name, period.period_type),
    }
    line_item = {"price": price_id, "quantity": quantity}
    if plan.per_seat:
        metadata["seats"] = str(quantity)
        metadata["description"] = plan_label(plan.name, period.period_type, f"{quantity} seats")
        # The buyer may add seats on the Checkout page, never go below the members (or min_seats).
        line_item["adjustable_quantity"] = {"enabled": True, "minimum": least, "maximum": max(MAX_CHECKOUT_SEATS, quantity)}
    params = {
        "mode": "payment" if one_off else "subscription",
        "customer": customer_id,
        "line_items": [line_item],
        "client_reference_id": str(org_id),
        "metadata": metadata,
        "success_url": settings.url(routes.BILLING_CONFIRM) + "?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": settings.url(routes.PRICING),
    }
    # Promotion codes, the billing address and a tax ID are asked on Checkout's page and saved on the
    # customer (customer_update), so invoices carry them; Stripe Tax when STRIPE_AUTOMATIC_TAX is on.
    params |= {
        "allow_promotion_codes": True,
        "billing_address_collection": "required",
        "tax_id_collection": {"enabled": True},
        "customer_update": {"address": "auto", "name": "auto"},
    }
    if settings.stripe_automatic_tax:
        params["automatic_tax"] = {"enabled": True}
    if one_off:
        params["payment_intent_data"] = {"metadata": metadata, "description": metadata["description"]}
    else:
        params["subscription_data"] = {"metadata": metadata}
        if trial:
            params["subscription_data"]["trial_period_days"] = period.trial_days
    return params


@dataclass(frozen=True)
class CheckoutStatus:
    status: str  # open | complete | expired
    payment_status: str  # paid | unpaid | no_payment_required
    subscription_id: str | None
    mode: str
    # How the purchase stands: open | expired | paid | clearing (complete, a delayed payment such
    # as SEPA or ACH still settling, for days) | failed (that payment bounced: no plan).
    outcome: str


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
        raise gateway.unavailable() from None
    if checkout.get("client_reference_id") != str(org_id):
        raise not_found  # another org's checkout: say nothing about it
    if checkout.get("customer"):
        try:
            sync_customer(checkout["customer"])
        except gateway.StripeFailure:
            # The session's own status is known; the mirror catches up from the webhook.
            pass
    return CheckoutStatus(checkout["status"], checkout["payment_status"], checkout.get("subscription"), checkout["mode"],
                          _outcome(org_id, checkout))


def _outcome(org_id: int, checkout: dict) -> str:
    if checkout["status"] != "complete":
        return checkout["status"]
    if checkout["payment_status"] in ("paid", "no_payment_required"):
        return "paid"
    # Complete but unpaid: clearing, or failed (the sync above read its payment intent, when Stripe answered).
    with session_scope() as session:
        failed = payments.payment_failed(session, org_id, checkout.get("payment_intent"))
    return "failed" if failed else "clearing"
