"""Plan changes that must not cost twice or lose what was asked for: an upgrade waiting for 3-D Secure
clicked again (or left to lapse), a scheduled downgrade kept through a declined upgrade or a failed
cancel/reactivate, and an upgrade while paused refused as paused."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlmodel import select
from structlog.testing import capture_logs

from billing_app.billing import gateway, reservations, retention, set_aside
from billing_app.billing.checkout import checkout_status, start_checkout
from billing_app.billing.customers import customer_id_for
from billing_app.billing.seats import seat_claim
from billing_app.billing.subscriptions import (
    cancel,
    cancel_scheduled_change,
    change_plan,
    reactivate,
)
from billing_app.billing.sync import sync_customer
from billing_app.billing.views import billing_view, subscription_detail
from billing_app.db import session_scope
from billing_app.errors import ErrorCode
from billing_app.formatting import format_date
from billing_app.models import Payment, PlanPeriod, SeatClaim, SetAsideChange, utcnow
from billing_app.webhooks import eventlog
from billing_app.webhooks.worker import Worker
from tests.billing.helpers import (
    access,
    buy,
    advance,
    buy_on_clock,
    expect,
    period_id,
    subscription,
)
from tests.webhooks.helpers import row


def _bought_with_a_card_needing_3ds(org, stripe_env):
    """Starter bought with the card whose every payment needs the bank (approved at Checkout)."""
    started = start_checkout(org.admin, period_id("starter", "MONTHLY"))
    stripe_env.complete_checkout(started.session_id, payment_method="pm_card_authenticationRequired", authentication="approve")
    checkout_status(org.admin, started.session_id)


def _invoices(stripe_env, org, status: str) -> list:
    return stripe_env.client.v1.invoices.list(params={"customer": customer_id_for(org.id), "status": status}).data


@pytest.mark.parametrize("needs_3ds", [False, True])
def test_an_upgrade_stripe_made_before_answering_500_is_told_as_made(org, stripe_env, db, needs_3ds):
    """Stripe made the upgrade (charged it, or left it waiting for the bank), then answered 500, kept
    under the request's key so the SDK's retries get it too: the admin is told what happened, not
    "try again" (which would say "You are already on this plan"), and nothing is charged twice."""
    if needs_3ds:
        _bought_with_a_card_needing_3ds(org, stripe_env)
    else:
        buy(org, sandbox=stripe_env)
    stripe_env.configure(fail_next=["POST /v1/subscriptions/* after"])

    change = change_plan(org.admin, period_id("business", "MONTHLY"), preview=False)

    if needs_3ds:
        assert not change.applied and change.confirm_url == _invoices(stripe_env, org, "open")[0].hosted_invoice_url
    else:
        assert change.applied and change.to_plan == "Business" and access(org).plan_key == "business"
    assert len(_invoices(stripe_env, org, "paid")) == (1 if needs_3ds else 2)  # the first period, and the upgrade once


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


def _downgrade_scheduled(org, stripe_env, db, **checkout):
    """Team bought on a test clock (`checkout`: the card, as buy_on_clock takes it), a downgrade to
    Starter scheduled for the period end."""
    clock, customer = buy_on_clock(org, stripe_env, plan="team", **checkout)
    change_plan(org.admin, period_id("starter", "MONTHLY"), preview=False)
    assert subscription(db, org).scheduled_period_id == period_id("starter", "MONTHLY")
    return clock, customer


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
    _clock, customer = _downgrade_scheduled(org, stripe_env, db)
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
    _clock, customer = _downgrade_scheduled(org, stripe_env, db)
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


# --- a scheduled downgrade set aside for an upgrade that waits for 3-D Secure ------------------------

def _upgrade_awaiting_3ds_over_a_downgrade(org, stripe_env, db):
    """Team with a downgrade to Starter scheduled, then an upgrade to Business whose payment waits for
    the bank: the schedule is set aside (released) meanwhile, and nothing claims it is scheduled.
    Returns the clock, the customer, the upgrade's answer and when Stripe lets it lapse."""
    clock, customer = _downgrade_scheduled(org, stripe_env, db, payment_method="pm_card_authenticationRequired",
                                           authentication="approve")
    upgrade = change_plan(org.admin, period_id("business", "MONTHLY"), preview=False)
    assert upgrade.confirm_url and not upgrade.applied
    sub = subscription(db, org)
    at_stripe = stripe_env.client.v1.subscriptions.retrieve(sub.stripe_id)
    assert at_stripe.schedule is None and sub.scheduled_period_id is None
    with session_scope() as s:  # the REST answer claims no change Stripe has not scheduled; the page says when
        assert subscription_detail(s, org.id).scheduled_change is None  # it comes back (and offers Keep)
        assert billing_view(s, org.id).scheduled_change == (
            f"Changes to Starter (monthly) on {format_date(sub.current_period_end)} unless the upgrade's payment is confirmed")
    return clock, customer, upgrade, at_stripe.pending_update.expires_at


def _schedules(stripe_env, customer) -> list:
    return stripe_env.client.v1.subscription_schedules.list(params={"customer": customer.id}).data


def test_a_downgrade_set_aside_for_an_upgrade_that_lapses_is_put_back(org, stripe_env, db):
    """The admin asked for Starter at the period end and never got the upgrade: renewing on Team would
    charge what they did not agree to."""
    clock, customer, _upgrade, expires_at = _upgrade_awaiting_3ds_over_a_downgrade(org, stripe_env, db)
    advance(stripe_env, clock, expires_at + 3600, customer)  # Stripe discards it; pending_update_expired re-syncs
    assert access(org).plan_key == "team"
    _kept(stripe_env, db, org)
    with session_scope() as s:
        assert billing_view(s, org.id).scheduled_change.startswith("Changes to Starter (monthly) on ")

    advance(stripe_env, clock, expires_at + 7200, customer)  # a later sync (the event delivered again)
    _kept(stripe_env, db, org)
    assert len(_schedules(stripe_env, customer)) == 2, "the released schedule and the one put back, no other"


# An admin's upgrade in a process of its own, which is killed the moment Stripe has made the update.
_UPGRADE_THEN_DIE = """
import json, os, signal, sys
from billing_app.auth.accounts import Actor
from billing_app.billing import gateway
from billing_app.billing.subscriptions import change_plan
from billing_app.models import Role

real = gateway.call
def call(fn, *args, **kwargs):
    answer = real(fn, *args, **kwargs)
    if fn.__name__ == "update" and type(fn.__self__).__name__ == "SubscriptionService":
        os.kill(os.getpid(), signal.SIGKILL)
    return answer
gateway.call = call
admin = json.loads(sys.argv[1])
change_plan(Actor(**{**admin, "role": Role(admin["role"])}), int(sys.argv[2]), preview=False)
"""


def test_a_downgrade_set_aside_survives_the_process_dying_after_the_upgrade(org, stripe_env, db):
    clock, customer = _downgrade_scheduled(org, stripe_env, db, payment_method="pm_card_authenticationRequired",
                                           authentication="approve")
    admin = json.dumps({**dataclasses.asdict(org.admin), "role": org.admin.role.value})
    died = subprocess.run([sys.executable, "-c", _UPGRADE_THEN_DIE, admin, str(period_id("business", "MONTHLY"))],
                          check=False, env=os.environ, capture_output=True, text=True, timeout=120)
    assert died.returncode == -signal.SIGKILL, died.stderr
    at_stripe = stripe_env.client.v1.subscriptions.retrieve(subscription(db, org).stripe_id)
    assert at_stripe.pending_update and at_stripe.schedule is None  # upgraded, downgrade released, nothing noted after
    advance(stripe_env, clock, at_stripe.pending_update.expires_at + 3600, customer)
    assert access(org).plan_key == "team"
    _kept(stripe_env, db, org)


def _makes_a_schedule(fn) -> bool:
    return getattr(fn, "__name__", "") == "create" and type(getattr(fn, "__self__", None)).__name__ == "SubscriptionScheduleService"


def _lapsed_not_yet_synced(org, stripe_env, db):
    """`_upgrade_awaiting_3ds_over_a_downgrade`, then the upgrade lapses; its event is not handled yet."""
    clock, customer, _upgrade, expires_at = _upgrade_awaiting_3ds_over_a_downgrade(org, stripe_env, db)
    stripe_env.client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": expires_at + 3600})
    return clock, customer, subscription(db, org)


def test_two_syncs_at_once_put_a_lapsed_downgrade_back_once(org, stripe_env, db, monkeypatch):
    _clock, customer, _sub = _lapsed_not_yet_synced(org, stripe_env, db)
    real, created = gateway.call, []

    def call(fn, *args, **kwargs):  # writing the schedule takes a while: the other sync decides meanwhile
        if _makes_a_schedule(fn):
            created.append(kwargs)
            time.sleep(0.5)
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(gateway, "call", call)
    with capture_logs() as logs, ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: sync_customer(customer.id), range(2)))
    assert len(created) == 1
    assert not [e for e in logs if e["event"] == "billing.scheduled_change_lost"]
    _kept(stripe_env, db, org)


def _pays_without_3ds(stripe_env, customer, sub) -> None:
    """The subscription's card is now one whose payments go through at once."""
    visa = stripe_env.client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    stripe_env.client.v1.subscriptions.update(sub.stripe_id, params={"default_payment_method": visa.id})


def _on_business_with_nothing_scheduled(stripe_env, db, org, clock, customer) -> None:
    """Stripe bills Business and will go on doing so: no schedule switches it back, now or at the period end."""
    with session_scope() as s:
        business = s.get(PlanPeriod, period_id("business", "MONTHLY")).stripe_price_id
    sub = subscription(db, org)
    at_stripe = stripe_env.client.v1.subscriptions.retrieve(sub.stripe_id, params={"expand": ["schedule"]})
    phases = [[i.price for i in p["items"]] for p in at_stripe.schedule.phases] if at_stripe.schedule else []
    assert at_stripe["items"].data[0].price.id == business and all(prices == [business] for prices in phases), (
        f"Business was paid for, yet Stripe has {at_stripe['items'].data[0].price.id} with phases {phases}")
    assert sub.scheduled_period_id is None
    advance(stripe_env, clock, at_stripe["items"].data[0].current_period_end + 3600, customer)
    assert access(org).plan_key == "business"


def _until(done) -> None:
    deadline = time.monotonic() + 60
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_an_upgrade_paid_while_a_sync_puts_the_lapsed_downgrade_back_is_not_switched_back(org, stripe_env, db, monkeypatch):
    """The admin sees the upgrade lapsed and upgrades again with a card that needs no 3-D Secure (charged
    and applied at once) while the lapse's sync, having read the subscription as it was, puts the
    downgrade back: the admin's request reads the subscription before the sync makes its schedule and
    upgrades right after. On Stripe the schedule's current phase (Team) would switch the paid-for
    Business back at once: the two wait for each other (the org's seat claim), and Business stays."""
    clock, customer, sub = _lapsed_not_yet_synced(org, stripe_env, db)
    _pays_without_3ds(stripe_env, customer, sub)
    real_call, real_try_claim = gateway.call, reservations._try_claim
    upgrades, at_update, schedule_made, upgrade_waits = [], threading.Event(), threading.Event(), threading.Event()

    def try_claim(org_id, claim_id, table=reservations.T):
        taken = real_try_claim(org_id, claim_id, table)
        if not taken and table is SeatClaim.__table__:
            upgrade_waits.set()  # the admin's request waits for the sync
        return taken

    def call(fn, *args, **kwargs):
        upgrading = getattr(fn, "__name__", "") == "update" and type(getattr(fn, "__self__", None)).__name__ == "SubscriptionService" \
            and "items" in (kwargs.get("params") or {})
        if upgrading:  # the admin's upgrade, decided on the subscription read before the schedule was made
            at_update.set()
            schedule_made.wait(60)
        if upgrading or not _makes_a_schedule(fn) or upgrades:
            return real_call(fn, *args, **kwargs)
        upgrades.append(admin.submit(change_plan, org.admin, period_id("business", "MONTHLY"), preview=False))
        _until(lambda: at_update.is_set() or upgrade_waits.is_set())
        made = real_call(fn, *args, **kwargs)
        schedule_made.set()
        _until(lambda: upgrades[0].done() or upgrade_waits.is_set())
        return made

    monkeypatch.setattr(reservations, "_try_claim", try_claim)
    monkeypatch.setattr(gateway, "call", call)
    with ThreadPoolExecutor(1) as admin:
        sync_customer(customer.id)  # customer.subscription.pending_update_expired
        assert upgrades and upgrades[0].result(timeout=120).applied, "the second upgrade was charged and applied"
    monkeypatch.setattr(gateway, "call", real_call)
    _on_business_with_nothing_scheduled(stripe_env, db, org, clock, customer)


def test_a_plan_changed_in_the_portal_while_a_sync_puts_the_downgrade_back_stands(org, stripe_env, db, monkeypatch):
    """The customer switches to Business in the billing portal (no seat claim there) between the sync's
    read and its schedule: the schedule, made from Business, is not the subscription the put-back was
    decided on, so it is released and the customer's later choice stands."""
    clock, customer, sub = _lapsed_not_yet_synced(org, stripe_env, db)
    _pays_without_3ds(stripe_env, customer, sub)
    with session_scope() as s:
        business = s.get(PlanPeriod, period_id("business", "MONTHLY")).stripe_price_id
    real, switched = gateway.call, []

    def call(fn, *args, **kwargs):
        if _makes_a_schedule(fn) and not switched:
            item = stripe_env.client.v1.subscriptions.retrieve(sub.stripe_id)["items"].data[0]
            switched.append(stripe_env.client.v1.subscriptions.update(sub.stripe_id, params={
                "items": [{"id": item.id, "price": business}], "proration_behavior": "always_invoice"}))
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(gateway, "call", call)
    with capture_logs() as logs:
        sync_customer(customer.id)
    monkeypatch.setattr(gateway, "call", real)
    assert switched and [e["event"] for e in logs if e["event"].startswith("billing.scheduled_change")] == [
        "billing.scheduled_change_superseded"]
    assert [s.status for s in _schedules(stripe_env, customer)].count("released") == 2  # the set-aside one, this one
    _on_business_with_nothing_scheduled(stripe_env, db, org, clock, customer)


# The lapse's sync in a process of its own, killed the moment Stripe has made the schedule it puts the
# downgrade back on (before it writes the phases).
_SYNC_THEN_DIE = """
import os, signal, sys
from billing_app.billing import gateway
from billing_app.billing.sync import sync_customer

real = gateway.call
def call(fn, *args, **kwargs):
    answer = real(fn, *args, **kwargs)
    if getattr(fn, "__name__", "") == "create" and type(getattr(fn, "__self__", None)).__name__ == "SubscriptionScheduleService":
        os.kill(os.getpid(), signal.SIGKILL)
    return answer
gateway.call = call
sync_customer(sys.argv[1])
"""


def _finished_by_the_next_sync(stripe_env, db, org, customer) -> None:
    """The half-made schedule is the put-back's own: the next sync writes its phases, makes no other,
    and nothing is lost (the org does not renew on the plan it asked to leave)."""
    with capture_logs() as logs:
        sync_customer(customer.id)  # the event delivered again, to another worker
    assert not [e for e in logs if e["event"] == "billing.scheduled_change_lost"]
    _kept(stripe_env, db, org)
    assert len(_schedules(stripe_env, customer)) == 2, "the released schedule and the one put back, no other"


def test_a_sync_killed_while_putting_the_downgrade_back_is_finished_by_the_next(org, stripe_env, db):
    _clock, customer, _sub = _lapsed_not_yet_synced(org, stripe_env, db)
    died = subprocess.run([sys.executable, "-c", _SYNC_THEN_DIE, customer.id], check=False, env=os.environ,
                          capture_output=True, text=True, timeout=120)
    assert died.returncode == -signal.SIGKILL, died.stderr
    _finished_by_the_next_sync(stripe_env, db, org, customer)


def test_a_sync_stopped_while_putting_the_downgrade_back_is_finished_by_the_next(org, stripe_env, db, monkeypatch):
    """SystemExit (a worker told to stop) lets go of the row on its way out; the put-back is still noted."""
    _clock, customer, _sub = _lapsed_not_yet_synced(org, stripe_env, db)
    real = gateway.call

    def call(fn, *args, **kwargs):
        answer = real(fn, *args, **kwargs)
        if _makes_a_schedule(fn):
            raise SystemExit(0)
        return answer

    monkeypatch.setattr(gateway, "call", call)
    with pytest.raises(SystemExit):
        sync_customer(customer.id)
    monkeypatch.setattr(gateway, "call", real)
    _finished_by_the_next_sync(stripe_env, db, org, customer)


def test_a_confirmed_upgrade_forgets_the_downgrade_set_aside(org, stripe_env, db):
    """The admin chose Business: the downgrade to Starter does not come back when the lapse time passes."""
    clock, customer, upgrade, expires_at = _upgrade_awaiting_3ds_over_a_downgrade(org, stripe_env, db)
    assert httpx.post(f"{upgrade.confirm_url}/authenticate", data={"authentication": "approve"}).status_code == 303
    advance(stripe_env, clock, expires_at + 3600, customer)  # pending_update_applied re-syncs
    assert access(org).plan_key == "business"
    sub = subscription(db, org)
    assert sub.scheduled_period_id is None and stripe_env.client.v1.subscriptions.retrieve(sub.stripe_id).schedule is None
    assert len(_schedules(stripe_env, customer)) == 1  # only the released one


def test_a_downgrade_set_aside_stays_dropped_when_the_subscription_was_set_to_cancel_meanwhile(org, stripe_env, db):
    clock, customer, _upgrade, expires_at = _upgrade_awaiting_3ds_over_a_downgrade(org, stripe_env, db)
    cancel(org.admin, at_period_end=True)
    with capture_logs() as logs:
        advance(stripe_env, clock, expires_at + 3600, customer)
    sub = subscription(db, org)
    assert sub.cancel_at_period_end and sub.scheduled_period_id is None
    assert stripe_env.client.v1.subscriptions.retrieve(sub.stripe_id).schedule is None
    assert not [e for e in logs if e["event"] == "billing.scheduled_change_lost"]


def test_a_downgrade_whose_period_ended_before_the_upgrade_lapsed_is_reported_not_rescheduled(org, stripe_env, db):
    """An upgrade made in the period's last day lapses at the period end, when Team has renewed: a schedule
    now would move the downgrade to the wrong period, so an operator is told instead."""
    clock, customer = _downgrade_scheduled(org, stripe_env, db, payment_method="pm_card_authenticationRequired",
                                           authentication="approve")
    period_end = int(subscription(db, org).current_period_end.timestamp())
    advance(stripe_env, clock, period_end - 3600, customer)
    change_plan(org.admin, period_id("business", "MONTHLY"), preview=False)
    sub = subscription(db, org)
    assert stripe_env.client.v1.subscriptions.retrieve(sub.stripe_id).pending_update.expires_at == period_end
    with capture_logs() as logs:
        advance(stripe_env, clock, period_end + 60, customer)
    lost = [e for e in logs if e["event"] == "billing.scheduled_change_lost"]
    assert lost and lost[0]["log_level"] == "error" and lost[0]["subscription"] == sub.stripe_id
    sub = subscription(db, org)
    assert sub.current_period_start == datetime.fromtimestamp(period_end, tz=UTC)  # renewed on Team
    assert sub.scheduled_period_id is None and stripe_env.client.v1.subscriptions.retrieve(sub.stripe_id).schedule is None


def test_keep_current_plan_while_a_downgrade_is_set_aside_drops_it_for_good(org, stripe_env, db):
    """The admin's "keep my plan" while the upgrade waits for 3-D Secure: the downgrade it set aside does
    not come back when the upgrade lapses (it did, overriding the admin, and Keep answered 409)."""
    clock, customer, _upgrade, expires_at = _upgrade_awaiting_3ds_over_a_downgrade(org, stripe_env, db)
    cancel_scheduled_change(org.admin)  # not 409 NO_SCHEDULED_CHANGE
    expect(ErrorCode.NO_SCHEDULED_CHANGE, cancel_scheduled_change, org.admin)  # nothing is left to drop
    with session_scope() as s:
        assert billing_view(s, org.id).scheduled_change == ""  # nor offered
    with capture_logs() as logs:
        advance(stripe_env, clock, expires_at + 3600, customer)  # the upgrade lapses
    assert access(org).plan_key == "team"
    sub = subscription(db, org)
    assert sub.scheduled_period_id is None and stripe_env.client.v1.subscriptions.retrieve(sub.stripe_id).schedule is None
    assert len(_schedules(stripe_env, customer)) == 1  # only the released one
    assert not [e for e in logs if e["event"].startswith("billing.scheduled_change")]


def test_keep_current_plan_waits_its_turn_while_a_sync_judges_the_set_aside_downgrade(org, stripe_env, db):
    """A sync holding the set-aside change may be putting it back this moment: Keep is refused, to be
    clicked again (then dropping what the sync put back), never answered "nothing is scheduled"."""
    _upgrade_awaiting_3ds_over_a_downgrade(org, stripe_env, db)
    sub = subscription(db, org)
    assert set_aside._claim(sub.id) is not None  # a sync judging it (alive: its lease runs)
    expect(ErrorCode.SEAT_CHANGE_IN_PROGRESS, cancel_scheduled_change, org.admin)
    with session_scope() as s:
        assert s.get(SetAsideChange, sub.id) is not None  # still there for the sync to judge


def test_a_lapse_whose_judgment_waits_for_a_seat_change_is_retried_by_the_worker_and_put_back(org, stripe_env, db, monkeypatch):
    """A change holding the org's seat claim past the sync's wait that makes no re-sync of its own (a role
    change; a member removed on a flat plan): the lapse's event is not recorded processed with its downgrade
    still set aside, but retried after its backoff, once the claim is free, and the downgrade put back."""
    monkeypatch.setattr(set_aside, "SEAT_WAIT_SECONDS", 0.2)  # the 5 s wait, shortened (same code path)
    _clock, customer, sub = _lapsed_not_yet_synced(org, stripe_env, db)
    holding, done = threading.Event(), threading.Event()

    def seat_change():
        with seat_claim(org.id):
            holding.set()
            done.wait(30)

    holder = threading.Thread(target=seat_change)
    holder.start()
    assert holding.wait(10)
    lapse = {"id": "evt_lapse", "object": "event", "type": "customer.subscription.pending_update_expired",
             "created": int(time.time()), "data": {"object": {"id": sub.stripe_id, "object": "subscription",
                                                             "customer": customer.id}}}
    assert eventlog.store_events([(lapse, json.dumps(lapse))]) == [True]
    reports = []

    def sync(customer_id):
        reports.append(sync_customer(customer_id))
        return reports[-1]

    try:
        deferred = Worker(sync, ingest_busy=None, concurrency=1).run_once()
    finally:
        done.set()
        holder.join()

    assert deferred.failed == [customer.id]
    with session_scope() as s:  # the mirror was written all the same: the upgrade's invoice waits no more
        assert not s.exec(select(Payment).where(Payment.org_id == org.id, Payment.action_required)).all()
    stored = row("evt_lapse")
    assert (stored.state, stored.attempts) == ("pending", 1) and "deferred" in stored.last_error
    assert Worker(sync, ingest_busy=None, concurrency=1).run_once().claimed == 0  # its backoff first
    later = Worker(sync, ingest_busy=None, concurrency=1, clock=lambda: utcnow() + timedelta(minutes=1)).run_once()
    assert later.synced == [customer.id] and row("evt_lapse").state == "processed"
    with session_scope() as s:
        assert s.get(SetAsideChange, sub.id) is None
    _kept(stripe_env, db, org)
