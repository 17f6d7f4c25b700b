"""Cancel, reactivate and change an org's subscription. Each ends by re-syncing from Stripe."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from billing_app.auth.accounts import Actor
from billing_app.billing import gateway
from billing_app.billing.entitlements import current_subscription
from billing_app.billing.sync import resync_after_change
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import OrgSubscription, PeriodType, PlanPeriod, Role


def _manageable_subscription(org_id: int) -> OrgSubscription:
    with session_scope() as session:
        sub = current_subscription(session, org_id)
    if sub is None:
        raise AppError(ErrorCode.SUBSCRIPTION_NOT_FOUND, "Your organization has no subscription.")
    if sub.one_off:
        raise AppError(ErrorCode.LIFETIME_NOT_CHANGEABLE, "A lifetime plan is paid once: there is nothing to cancel or change.")
    if not sub.is_manageable:
        raise AppError(ErrorCode.SUBSCRIPTION_ALREADY_CANCELED, "This subscription has already ended. Subscribe again from the pricing page.")
    return sub


def _customer_id_of_org(org_id: int) -> str:
    from billing_app.billing.customers import customer_id_for

    return customer_id_for(org_id)


def _customer_of(subscription) -> str:
    customer = subscription["customer"]
    return customer if isinstance(customer, str) else customer["id"]


def cancel(actor: Actor, *, at_period_end: bool = True, reason: str | None = None) -> None:
    org_id = actor.require_role(Role.ADMIN)
    sub = _manageable_subscription(org_id)
    if at_period_end and sub.cancel_at_period_end:
        raise AppError(ErrorCode.SUBSCRIPTION_ALREADY_CANCELED, "This subscription is already set to cancel at the end of the period.")
    client = gateway.stripe_client()
    details = {"comment": reason[:500]} if reason else None
    try:
        # A pending downgrade's schedule would own the subscription; the cancellation replaces it.
        _release_schedule(client, sub)
        if at_period_end:
            params = {"cancel_at_period_end": True}
            if details:
                params["cancellation_details"] = details
            updated = gateway.call(client.v1.subscriptions.update, sub.stripe_id, params=params)
        else:
            params = {"cancellation_details": details} if details else {}
            updated = gateway.call(client.v1.subscriptions.cancel, sub.stripe_id, params=params)
    except gateway.StripeFailure:
        # A released schedule (a dropped downgrade) may already have changed at Stripe.
        if sub.stripe_schedule_id:
            resync_after_change(_customer_id_of_org(org_id))
        raise AppError(ErrorCode.STRIPE_CANCELLATION_FAILED, "We could not cancel the subscription. Please try again.") from None
    resync_after_change(_customer_of(updated))


def reactivate(actor: Actor) -> None:
    org_id = actor.require_role(Role.ADMIN)
    sub = _manageable_subscription(org_id)
    if not sub.cancel_at_period_end:
        raise AppError(ErrorCode.SUBSCRIPTION_NOT_CANCELING, "This subscription is not set to cancel.")
    try:
        updated = gateway.call(gateway.stripe_client().v1.subscriptions.update, sub.stripe_id, params={"cancel_at_period_end": False})
    except gateway.StripeFailure:
        raise AppError(ErrorCode.STRIPE_REACTIVATION_FAILED, "We could not reactivate the subscription. Please try again.") from None
    resync_after_change(_customer_of(updated))


def _release_schedule(client, sub: OrgSubscription) -> None:
    if sub.stripe_schedule_id:
        gateway.call(client.v1.subscription_schedules.release, sub.stripe_schedule_id)


def cancel_scheduled_change(actor: Actor) -> None:
    """Keep the current plan: drop a downgrade that was waiting for the period end."""
    org_id = actor.require_role(Role.ADMIN)
    sub = _manageable_subscription(org_id)
    if not sub.stripe_schedule_id:
        raise AppError(ErrorCode.VALIDATION_ERROR, "No plan change is scheduled.")
    try:
        _release_schedule(gateway.stripe_client(), sub)
        customer = _customer_of(gateway.call(gateway.stripe_client().v1.subscriptions.retrieve, sub.stripe_id))
    except gateway.StripeFailure:
        raise AppError(ErrorCode.STRIPE_PLAN_CHANGE_FAILED, "We could not keep your current plan. Please try again.") from None
    resync_after_change(customer)


@dataclass(frozen=True)
class PlanChange:
    from_plan: str
    to_plan: str
    upgrade: bool
    amount_due_now: int
    currency: str
    applied: bool
    # When it takes effect: now for an upgrade, the period end for a downgrade.
    effective_at: datetime | None = None


def _monthly_value(period: PlanPeriod) -> float:
    return period.amount / 12 if period.period_type == PeriodType.YEARLY.value else period.amount


def change_plan(actor: Actor, period_id: int, *, preview: bool) -> PlanChange:
    """Move to another recurring period. An upgrade applies now, billing the prorated difference."""
    org_id = actor.require_role(Role.ADMIN)
    sub = _manageable_subscription(org_id)
    with session_scope() as session:
        target = session.get(PlanPeriod, period_id)
        target_plan = target.plan if target else None
        current = session.get(OrgSubscription, sub.id).period
        current_plan = current.plan if current else None
    if target is None or not target.active or target_plan is None or not target_plan.active or not target.stripe_price_id:
        raise AppError(ErrorCode.SUBSCRIPTION_PERIOD_NOT_FOUND, "That plan or billing period is not available.")
    if target.period_type == PeriodType.ALL_TIME.value:
        raise AppError(ErrorCode.VALIDATION_ERROR, "A lifetime plan is bought once from the pricing page, not switched to.")
    if target_plan.legacy != bool(current_plan and current_plan.legacy):
        raise AppError(ErrorCode.SUBSCRIPTION_PERIOD_NOT_FOUND, "That plan is not available to your organization.")
    if sub.stripe_price_id == target.stripe_price_id:
        raise AppError(ErrorCode.SAME_PLAN, "You are already on this plan.")
    upgrade = current is None or _monthly_value(target) >= _monthly_value(current)
    client = gateway.stripe_client()
    try:
        stripe_sub = gateway.call(client.v1.subscriptions.retrieve, sub.stripe_id)
    except gateway.StripeFailure:
        raise AppError(ErrorCode.STRIPE_UNAVAILABLE, "We could not reach the payment provider. Please try again.") from None
    if not upgrade:
        return _schedule_downgrade(client, sub, stripe_sub, current_plan, target, target_plan, preview)
    item_id = stripe_sub["items"]["data"][0]["id"]
    items = [{"id": item_id, "price": target.stripe_price_id}]
    try:
        if preview:
            invoice = gateway.call(
                client.v1.invoices.create_preview,
                params={
                    "customer": _customer_of(stripe_sub),
                    "subscription": sub.stripe_id,
                    "subscription_details": {"items": items, "proration_behavior": "always_invoice"},
                },
            )
            amount_due = invoice["amount_due"]
        else:
            # A pending downgrade would switch the upgrade back at the period end: drop it first.
            _release_schedule(client, sub)
            gateway.call(
                client.v1.subscriptions.update, sub.stripe_id,
                # A declined card leaves the plan as it was (Stripe answers 402 and applies nothing).
                params={"items": items, "proration_behavior": "always_invoice", "payment_behavior": "error_if_incomplete"},
            )
            amount_due = 0
    except gateway.StripeFailure as failure:
        if sub.stripe_schedule_id and not preview:
            resync_after_change(_customer_id_of_org(org_id))  # the released schedule is gone at Stripe
        if failure.card_error:
            raise AppError(
                ErrorCode.STRIPE_PLAN_CHANGE_FAILED,
                "Your card was declined, so your plan was not changed. Update your payment method and try again.",
            ) from None
        raise AppError(ErrorCode.STRIPE_PLAN_CHANGE_FAILED, "We could not change the plan. Please try again.") from None
    if not preview:
        resync_after_change(_customer_of(stripe_sub))
    return PlanChange(
        from_plan=current_plan.name if current_plan else "", to_plan=target_plan.name, upgrade=upgrade,
        amount_due_now=amount_due, currency=target.currency, applied=not preview,
    )


def _schedule_downgrade(client, sub, stripe_sub, current_plan, target, target_plan, preview: bool) -> PlanChange:
    """A downgrade keeps what was paid for until the period end, then switches (a schedule's second phase)."""
    item = stripe_sub["items"]["data"][0]
    period_end = datetime.fromtimestamp(item["current_period_end"], tz=UTC)
    change = PlanChange(
        from_plan=current_plan.name if current_plan else "", to_plan=target_plan.name, upgrade=False,
        amount_due_now=0, currency=target.currency, applied=not preview, effective_at=period_end,
    )
    if preview:
        return change
    try:
        schedule_id = stripe_sub.get("schedule")
        if not schedule_id:
            schedule_id = gateway.call(client.v1.subscription_schedules.create, params={"from_subscription": sub.stripe_id})["id"]
        current_phase = gateway.call(client.v1.subscription_schedules.retrieve, schedule_id)["phases"][0]
        gateway.call(
            client.v1.subscription_schedules.update, schedule_id,
            params={
                "end_behavior": "release",
                "phases": [
                    {
                        "items": [{"price": item["price"]["id"], "quantity": 1}],
                        "start_date": current_phase["start_date"],
                        "end_date": current_phase["end_date"],
                    },
                    {"items": [{"price": target.stripe_price_id, "quantity": 1}], "proration_behavior": "none"},
                ],
            },
        )
    except gateway.StripeFailure:
        raise AppError(ErrorCode.STRIPE_PLAN_CHANGE_FAILED, "We could not schedule the plan change. Please try again.") from None
    resync_after_change(_customer_of(stripe_sub))
    return change
