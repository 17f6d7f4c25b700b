"""Plan changes that must not cost twice or lose what was asked for: an upgrade waiting for 3-D Secure
clicked again (or left to lapse), a scheduled downgrade kept through a declined upgrade or a failed
cancel/reactivate, and an upgrade while paused refused as paused."""

from __future__ import annotations

import httpx
from structlog.testing import capture_logs

from billing_app.billing import gateway, retention
from billing_app.billing.checkout import checkout_status, start_checkout
from billing_app.billing.customers import customer_id_for
from billing_app.billing.subscriptions import cancel, change_plan, reactivate
from billing_app.billing.sync import sync_customer
from billing_app.billing.views import billing_view
from billing_app.db import session_scope
from billing_app.errors import ErrorCode
from billing_app.models import PlanPeriod
from tests.billing.helpers import (
    access,
    advance,
    buy_on_clock,
    expect,
    period_id,
    subscription,
)


def _bought_with_a_card_needing_3ds(org, stripe_env):
    """Starter bought with the card whose every payment needs the bank (approved at Checkout)."""
    started = start_checkout(org.admin, period_id("starter", "MONTHLY"))
    stripe_env.complete_checkout(started.session_id, payment_method="pm_card_authenticationRequired", authentication="approve")
    checkout_status(org.admin, started.session_id)


def _invoices(stripe_env, org, status: str) -> list:
    return stripe_env.client.v1.invoices.list(params={"customer": customer_id_for(org.id), "status": status}).data


def test_an_upgrade_awaiting_3ds_clicked_twice_is_charged_once(org, stripe_env, db):
    _bought_with_a_card_needing_3ds(org, stripe_env)
    first = change_plan(org.admin, period_id("pro", "MONTHLY"), preview=False)  # waits for the bank
    assert first.confirm_url and not first.applied
    second = change_plan(org.admin, period_id("pro", "MONTHLY"), preview=False)  # the same click again (other tab)
    assert not second.applied and second.confirm_url == first.confirm_url  # the same page, not a second bill
    assert len(_invoices(stripe_env, org, "open")) == 1

    assert httpx.post(f"{first.confirm_url}/authenticate", data={"authentication": "approve"}).status_code == 303
    charged = [i.amount_paid for i in _invoices(stripe_env, org, "paid") if i.amount_paid > 0]
    assert len(charged) == 2, f"the purchase and one upgrade, charged: {charged}"
    sync_customer(customer_id_for(org.id))
    assert access(org).plan_key == "pro"


def test_another_plan_while_an_upgrade_awaits_3ds_is_refused(org, stripe_env, db):
    _bought_with_a_card_needing_3ds(org, stripe_env)
    first = change_plan(org.admin, period_id("pro", "MONTHLY"), preview=False)
    error = expect(ErrorCode.PLAN_CHANGE_PENDING, change_plan, org.admin, period_id("business", "MONTHLY"), preview=False)
    assert "Pro" in error.message and "confirm" in error.message
    expect(ErrorCode.PLAN_CHANGE_PENDING, change_plan, org.admin, period_id("business", "MONTHLY"), preview=True)
    assert [i.hosted_invoice_url for i in _invoices(stripe_env, org, "open")] == [first.confirm_url]
    at_stripe = stripe_env.client.v1.subscriptions.retrieve(subscription(db, org).stripe_id)
    assert at_stripe.pending_update.subscription_items[0].price.id == db.get(PlanPeriod, period_id("pro", "MONTHLY")).stripe_price_id


def test_an_upgrade_that_lapsed_unconfirmed_leaves_the_plan_free_to_choose(org, stripe_env, db):
    """Stripe discards a pending update at its expires_at (23 h) and voids its invoice, so the upgrade
    can never be paid any more; the org is on its plan as before and may choose another."""
    clock, customer = buy_on_clock(org, stripe_env, payment_method="pm_card_authenticationRequired", authentication="approve")
    first = change_plan(org.admin, period_id("pro", "MONTHLY"), preview=False)
    assert first.confirm_url and not first.applied
    expect(ErrorCode.PLAN_CHANGE_PENDING, change_plan, org.admin, period_id("business", "MONTHLY"), preview=False)
    with session_scope() as s:
        assert billing_view(s, org.id).confirm_payment_url == first.confirm_url
    expires_at = stripe_env.client.v1.subscriptions.retrieve(subscription(db, org).stripe_id).pending_update.expires_at

    advance(stripe_env, clock, expires_at + 3600, customer)
    assert stripe_env.client.v1.subscriptions.retrieve(subscription(db, org).stripe_id).pending_update is None
    lapsed = [i for i in _invoices(stripe_env, org, "void") if i.hosted_invoice_url == first.confirm_url]
    assert lapsed and lapsed[0].billing_reason == "subscription_update" and lapsed[0].amount_paid == 0
    assert access(org).plan_key == "starter"
    with session_scope() as s:
        assert billing_view(s, org.id).confirm_payment_url == ""  # no "confirm the payment" banner left
    assert httpx.post(f"{first.confirm_url}/authenticate", data={"authentication": "approve"}).status_code == 400

    again = change_plan(org.admin, period_id("business", "MONTHLY"), preview=False)  # not PLAN_CHANGE_PENDING
    assert again.confirm_url and again.confirm_url != first.confirm_url and not again.applied


def _downgrade_scheduled(org, stripe_env, db):
    _clock, customer = buy_on_clock(org, stripe_env, plan="team")
    change_plan(org.admin, period_id("starter", "MONTHLY"), preview=False)
    assert subscription(db, org).scheduled_period_id == period_id("starter", "MONTHLY")
    return customer


def _kept(stripe_env, db, org) -> None:
    """The downgrade to Starter is still scheduled, at Stripe and in the mirror."""
    sub = subscription(db, org)
    assert sub.scheduled_period_id == period_id("starter", "MONTHLY"), "the scheduled downgrade was dropped"
    at_stripe = stripe_env.client.v1.subscriptions.retrieve(sub.stripe_id)
    schedule = stripe_env.client.v1.subscription_schedules.retrieve(at_stripe.schedule)
    assert schedule.end_behavior == "release" and len(schedule.phases) == 2
    assert schedule.phases[0]["end_date"] == int(sub.current_period_end.timestamp())
    assert schedule.phases[0]["items"][0]["price"] == at_stripe["items"].data[0].price.id  # Team until then
    assert schedule.phases[1]["items"][0]["price"] != at_stripe["items"].data[0].price.id  # then Starter


def _failing_subscription_update(monkeypatch, when) -> None:
    """Stripe answers 500 to the subscription update whose params match `when`."""
    real = gateway.call

    def call(fn, *args, **kwargs):
        owner = type(getattr(fn, "__self__", None)).__name__
        if getattr(fn, "__name__", "") == "update" and owner == "SubscriptionService" and when(kwargs.get("params") or {}):
            raise gateway.StripeFailure("api_error", status=500)
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(gateway, "call", call)


def test_declined_upgrade_keeps_the_scheduled_downgrade(org, stripe_env, db):
    """'Your plan was not changed' also means the downgrade the admin scheduled still stands."""
    customer = _downgrade_scheduled(org, stripe_env, db)
    failing = stripe_env.client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": customer.id})
    stripe_env.client.v1.subscriptions.update(subscription(db, org).stripe_id, params={"default_payment_method": failing.id})
    error = expect(ErrorCode.STRIPE_PLAN_CHANGE_FAILED, change_plan, org.admin, period_id("business", "MONTHLY"), preview=False)
    assert "declined" in error.message and "not changed" in error.message
    _kept(stripe_env, db, org)
    assert access(org).plan_key == "team"


def test_a_cancel_that_stripe_fails_keeps_the_scheduled_downgrade(org, stripe_env, db, monkeypatch):
    _downgrade_scheduled(org, stripe_env, db)
    _failing_subscription_update(monkeypatch, lambda params: "cancel_at_period_end" in params)
    error = expect(ErrorCode.STRIPE_CANCELLATION_FAILED, cancel, org.admin, at_period_end=True)
    assert "could not cancel" in error.message
    _kept(stripe_env, db, org)
    assert not subscription(db, org).cancel_at_period_end


def test_a_reactivation_that_stripe_fails_keeps_the_scheduled_change(org, stripe_env, db, monkeypatch):
    """A schedule made at Stripe while the subscription was set to cancel (the dashboard, the portal)."""
    customer = _downgrade_scheduled(org, stripe_env, db)
    sub = subscription(db, org)
    schedule = stripe_env.client.v1.subscription_schedules.retrieve(sub.stripe_schedule_id)
    stripe_env.client.v1.subscription_schedules.release(schedule.id)
    stripe_env.client.v1.subscriptions.update(sub.stripe_id, params={"cancel_at_period_end": True})
    new = stripe_env.client.v1.subscription_schedules.create(params={"from_subscription": sub.stripe_id})
    stripe_env.client.v1.subscription_schedules.update(new.id, params={"end_behavior": "release", "phases": [
        {"items": [{"price": p["items"][0]["price"], "quantity": p["items"][0]["quantity"]}],
         **({"start_date": p["start_date"], "end_date": p["end_date"]} if i == 0 else {"proration_behavior": "none"})}
        for i, p in enumerate(schedule.phases)]})
    sync_customer(customer.id)
    _kept(stripe_env, db, org)
    _failing_subscription_update(monkeypatch, lambda params: params.get("cancel_at_period_end") is False)
    expect(ErrorCode.STRIPE_REACTIVATION_FAILED, reactivate, org.admin)
    _kept(stripe_env, db, org)


def test_a_restore_that_fails_too_is_logged_and_the_mirror_tells_the_truth(org, stripe_env, db, monkeypatch):
    _downgrade_scheduled(org, stripe_env, db)
    _failing_subscription_update(monkeypatch, lambda params: "cancel_at_period_end" in params)
    real = gateway.call

    def call(fn, *args, **kwargs):  # ...and Stripe fails the schedule's re-creation as well
        if getattr(fn, "__name__", "") == "create" and type(getattr(fn, "__self__", None)).__name__ == "SubscriptionScheduleService":
            raise gateway.StripeFailure("api_error", status=500)
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(gateway, "call", call)
    with capture_logs() as logs:
        expect(ErrorCode.STRIPE_CANCELLATION_FAILED, cancel, org.admin, at_period_end=True)
    lost = [e for e in logs if e["event"] == "billing.scheduled_change_lost"]
    assert lost and lost[0]["log_level"] == "error" and lost[0]["subscription"] == subscription(db, org).stripe_id
    sub = subscription(db, org)
    assert sub.stripe_schedule_id is None and sub.scheduled_period_id is None  # as Stripe has it: no hidden promise


def test_an_upgrade_while_paused_is_refused_as_paused_not_as_a_declined_card(org, stripe_env, db):
    buy_on_clock(org, stripe_env, plan="starter")
    retention.pause(org.admin, 1)
    invoices_before = len(_invoices(stripe_env, org, "void")) + len(_invoices(stripe_env, org, "open"))
    for preview in (True, False):
        error = expect(ErrorCode.SUBSCRIPTION_PAUSED, change_plan, org.admin, period_id("business", "MONTHLY"), preview=preview)
        assert "declined" not in error.message and "Resume" in error.message
    at_stripe = stripe_env.client.v1.subscriptions.retrieve(subscription(db, org).stripe_id)
    assert at_stripe.pending_update is None and at_stripe["items"].data[0].price.id == subscription(db, org).stripe_price_id
    assert len(_invoices(stripe_env, org, "void")) + len(_invoices(stripe_env, org, "open")) == invoices_before
