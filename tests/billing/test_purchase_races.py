"""At most one live purchase per organization, whatever arrives at once or before the webhook."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlmodel import select

from billing_app.billing import reservations
from billing_app.billing.checkout import start_checkout
from billing_app.billing.customers import customer_id_for
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import OrgSubscription, PurchaseReservation, utcnow
from tests.billing.helpers import buy, expect, period_id

LIVE_AT_STRIPE = {"active", "trialing", "past_due", "unpaid", "paused"}


def at_once(count: int, fn, *args_list):
    """Call fn(*args_list[i % len]) from `count` threads released together; results and errors."""
    args_list = args_list or [()]
    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(_capture, fn, *args_list[i % len(args_list)]) for i in range(count)]
        return [f.result() for f in futures]


def _capture(fn, *args):
    try:
        return fn(*args)
    except AppError as error:
        return error


def open_sessions(stripe_env, customer_id):
    return stripe_env.client.v1.checkout.sessions.list(params={"customer": customer_id, "status": "open", "limit": 100}).data


def live_subscriptions(stripe_env, customer_id):
    subs = stripe_env.client.v1.subscriptions.list(params={"customer": customer_id, "status": "all", "limit": 100}).data
    return [s for s in subs if s.status in LIVE_AT_STRIPE]


def pay_every_session(stripe_env, session_ids):
    paid = 0
    for session_id in set(session_ids):
        try:
            stripe_env.complete_checkout(session_id)
            paid += 1
        except Exception:  # an expired session cannot be paid: that is the point
            pass
    return paid


def test_twenty_concurrent_buys_share_one_session_and_make_one_subscription(org, stripe_env, db):
    results = at_once(20, start_checkout, (org.admin, period_id("starter", "MONTHLY")))
    assert all(not isinstance(r, AppError) for r in results), results
    assert len({r.session_id for r in results}) == 1 and len({r.url for r in results}) == 1
    customer = customer_id_for(org.id)
    assert [s.id for s in open_sessions(stripe_env, customer)] == [results[0].session_id]

    assert pay_every_session(stripe_env, [r.session_id for r in results]) == 1
    assert len(live_subscriptions(stripe_env, customer)) == 1
    # And the next buy, before any webhook, is refused on Stripe's word.
    expect(ErrorCode.SUBSCRIPTION_ALREADY_ACTIVE, start_checkout, org.admin, period_id("pro", "MONTHLY"))
    assert len(db.exec(select(OrgSubscription).where(OrgSubscription.org_id == org.id)).all()) == 1


def test_concurrent_buys_of_different_plans_leave_one_payable_session(org, stripe_env):
    periods = [(org.admin, period_id(plan, period)) for plan, period in
               [("starter", "MONTHLY"), ("pro", "MONTHLY"), ("business", "YEARLY"), ("business", "ALL_TIME")]]
    results = at_once(20, start_checkout, *periods)
    started = [r for r in results if not isinstance(r, AppError)]
    assert started and all(r.code == ErrorCode.SUBSCRIPTION_ALREADY_ACTIVE for r in results if isinstance(r, AppError))
    customer = customer_id_for(org.id)
    assert len(open_sessions(stripe_env, customer)) == 1
    assert pay_every_session(stripe_env, [r.session_id for r in started]) == 1


def test_lifetime_then_yearly_before_the_webhook_is_refused(org, stripe_env):
    lifetime = start_checkout(org.admin, period_id("business", "ALL_TIME"))
    stripe_env.complete_checkout(lifetime.session_id)  # paid; no webhook, no confirmation page yet
    error = expect(ErrorCode.SUBSCRIPTION_ALREADY_ACTIVE, start_checkout, org.admin, period_id("business", "YEARLY"))
    assert "lifetime" in error.message
    customer = customer_id_for(org.id)
    assert open_sessions(stripe_env, customer) == [] and live_subscriptions(stripe_env, customer) == []


def test_a_subscription_paid_a_moment_ago_blocks_the_next_buy(org, stripe_env):
    first = start_checkout(org.admin, period_id("starter", "MONTHLY"))
    stripe_env.complete_checkout(first.session_id)
    expect(ErrorCode.SUBSCRIPTION_ALREADY_ACTIVE, start_checkout, org.admin, period_id("pro", "YEARLY"))


def test_a_checkout_stripe_fails_to_expire_is_not_joined_by_a_second(org, stripe_env):
    """Another period asked for expires the open session first; when Stripe fails that (its retries
    too), a second session beside the first would let the buyer pay both: refused, nothing new made,
    and the next try (Stripe back) goes through with one payable session."""
    first = start_checkout(org.admin, period_id("starter", "MONTHLY"))
    stripe_env.configure(fail_next=["POST /v1/checkout/sessions/*/expire"] * 3)
    expect(ErrorCode.STRIPE_UNAVAILABLE, start_checkout, org.admin, period_id("starter", "YEARLY"))
    stripe_env.configure(fail_next=[])
    customer = customer_id_for(org.id)
    assert [s.id for s in open_sessions(stripe_env, customer)] == [first.session_id]
    second = start_checkout(org.admin, period_id("starter", "YEARLY"))
    assert [s.id for s in open_sessions(stripe_env, customer)] == [second.session_id]


def test_a_double_click_returns_the_same_checkout(org, stripe_env):
    first = start_checkout(org.admin, period_id("pro", "YEARLY"))
    again = start_checkout(org.admin, period_id("pro", "YEARLY"))
    assert (again.session_id, again.url) == (first.session_id, first.url)


def test_one_free_trial_under_racing_buys(org, stripe_env, db):
    pro = [(org.admin, period_id("pro", "MONTHLY")), (org.admin, period_id("pro", "YEARLY"))]
    started = [r for r in at_once(6, start_checkout, *pro) if not isinstance(r, AppError)]
    assert pay_every_session(stripe_env, [r.session_id for r in started]) == 1
    customer = customer_id_for(org.id)
    assert [s.status for s in live_subscriptions(stripe_env, customer)] == ["trialing"]


def test_a_buy_after_the_subscription_ended_is_allowed_without_a_second_trial(org, stripe_env):
    from billing_app.billing.subscriptions import cancel

    buy(org, "pro", "MONTHLY", sandbox=stripe_env)
    cancel(org.admin, at_period_end=False)
    again = start_checkout(org.admin, period_id("pro", "MONTHLY"))
    stripe_env.complete_checkout(again.session_id)
    assert [s.status for s in live_subscriptions(stripe_env, customer_id_for(org.id))] == ["active"]  # not trialing


def test_a_claim_left_by_a_dead_process_lapses(org, stripe_env, monkeypatch):
    with session_scope() as s:
        s.add(PurchaseReservation(org_id=org.id, claim_id="dead", claimed_until=utcnow() - timedelta(seconds=1)))
    assert start_checkout(org.admin, period_id("starter", "MONTHLY")).session_id


def test_a_claim_that_stays_held_gives_a_clear_conflict(org, stripe_env, monkeypatch):
    monkeypatch.setattr(reservations, "WAIT_SECONDS", 0.3)
    with session_scope() as s:
        s.add(PurchaseReservation(org_id=org.id, claim_id="busy", claimed_until=utcnow() + timedelta(minutes=1)))
    error = expect(ErrorCode.CHECKOUT_IN_PROGRESS, start_checkout, org.admin, period_id("starter", "MONTHLY"))
    assert "try again" in error.message


def test_a_holder_whose_claim_was_taken_over_goes_no_further(org, stripe_env):
    with pytest.raises(AppError) as info, reservations.purchase_claim(org.id) as reservation:
        with session_scope() as s:
            s.get(PurchaseReservation, org.id).claim_id = "someone-else"
        reservations.renew(reservation)
    assert info.value.code == ErrorCode.CHECKOUT_IN_PROGRESS


def test_a_claim_held_by_a_killed_process_of_this_host_is_taken_over_at_once(org, stripe_env, monkeypatch):
    import subprocess

    from billing_app import owners

    finished = subprocess.Popen(["true"])
    finished.wait()
    dead = owners.new_claim_token(owners.Owner(owners.this_process().host, finished.pid, "deadbeef"))
    monkeypatch.setattr(reservations, "WAIT_SECONDS", 0.3)  # it must not need to wait at all
    with session_scope() as s:
        s.add(PurchaseReservation(org_id=org.id, claim_id=dead, claimed_until=utcnow() + timedelta(hours=1)))
    assert start_checkout(org.admin, period_id("starter", "MONTHLY")).session_id
