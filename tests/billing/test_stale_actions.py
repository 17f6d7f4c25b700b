"""Admin actions decide on what Stripe says now, not on a mirror a webhook behind.

Each test changes the subscription directly at Stripe (as a dashboard user would) and sends no
webhook, so the mirror still shows the old state; the action must answer the right 409.
"""

from billing_app.billing.subscriptions import cancel, cancel_scheduled_change, change_plan, reactivate
from billing_app.errors import ErrorCode
from tests.billing.helpers import buy, expect, period_id, subscription


def stripe_sub(stripe_env, db, org):
    return stripe_env.client.v1.subscriptions.retrieve(subscription(db, org).stripe_id, params={"expand": ["schedule"]})


def test_canceled_in_the_dashboard_then_cancel_reactivate_or_change_is_a_409(org, stripe_env, db):
    buy(org, "pro", "MONTHLY", sandbox=stripe_env)
    sub_id = subscription(db, org).stripe_id
    stripe_env.client.v1.subscriptions.cancel(sub_id)
    assert subscription(db, org).status == "trialing"  # the mirror has not heard yet

    error = expect(ErrorCode.SUBSCRIPTION_ALREADY_CANCELED, cancel, org.admin)
    assert "already ended" in error.message
    assert subscription(db, org).status == "canceled"  # and the refusal brought the mirror up to date


def test_set_to_cancel_in_the_dashboard_then_cancel_again_is_a_409(org, stripe_env, db):
    buy(org, sandbox=stripe_env)
    stripe_env.client.v1.subscriptions.update(subscription(db, org).stripe_id, params={"cancel_at_period_end": True})
    expect(ErrorCode.SUBSCRIPTION_ALREADY_CANCELED, cancel, org.admin)
    # A downgrade on a subscription that is ending is refused too, saying why.
    error = expect(ErrorCode.SUBSCRIPTION_CANCELING, change_plan, org.admin, period_id("starter", "YEARLY"), preview=False)
    assert "Reactivate" in error.message
    assert stripe_sub(stripe_env, db, org).schedule is None


def test_reactivated_in_the_dashboard_then_reactivate_is_a_409(org, stripe_env, db):
    buy(org, sandbox=stripe_env)
    cancel(org.admin)
    stripe_env.client.v1.subscriptions.update(subscription(db, org).stripe_id, params={"cancel_at_period_end": False})
    assert subscription(db, org).cancel_at_period_end
    expect(ErrorCode.SUBSCRIPTION_NOT_CANCELING, reactivate, org.admin)
    assert not subscription(db, org).cancel_at_period_end


def test_cancel_releases_a_schedule_the_mirror_never_heard_of(org, stripe_env, db):
    buy(org, "business", "MONTHLY", sandbox=stripe_env)
    sub_id = subscription(db, org).stripe_id
    stripe_env.client.v1.subscription_schedules.create(params={"from_subscription": sub_id})  # made in the dashboard
    assert subscription(db, org).stripe_schedule_id is None
    cancel(org.admin)
    assert stripe_sub(stripe_env, db, org).cancel_at_period_end
    assert subscription(db, org).cancel_at_period_end


def test_reactivate_releases_a_schedule_left_on_a_canceling_subscription(org, stripe_env, db):
    buy(org, "business", "MONTHLY", sandbox=stripe_env)
    sub_id = subscription(db, org).stripe_id
    stripe_env.client.v1.subscriptions.update(sub_id, params={"cancel_at_period_end": True})
    stripe_env.client.v1.subscription_schedules.create(params={"from_subscription": sub_id})
    reactivate(org.admin)
    fresh = stripe_sub(stripe_env, db, org)
    assert not fresh.cancel_at_period_end and fresh.schedule is None


def test_keep_current_plan_after_the_schedule_was_released_elsewhere_is_a_409(org, stripe_env, db):
    buy(org, "business", "MONTHLY", sandbox=stripe_env)
    change_plan(org.admin, period_id("starter", "MONTHLY"), preview=False)
    schedule_id = subscription(db, org).stripe_schedule_id
    assert schedule_id
    stripe_env.client.v1.subscription_schedules.release(schedule_id)
    error = expect(ErrorCode.NO_SCHEDULED_CHANGE, cancel_scheduled_change, org.admin)
    assert "stays on its current plan" in error.message
    assert subscription(db, org).stripe_schedule_id is None


def test_a_plan_change_after_a_dashboard_cancellation_is_a_409_not_a_502(org, stripe_env, db):
    buy(org, sandbox=stripe_env)
    stripe_env.client.v1.subscriptions.cancel(subscription(db, org).stripe_id)
    expect(ErrorCode.SUBSCRIPTION_ALREADY_CANCELED, change_plan, org.admin, period_id("pro", "MONTHLY"), preview=False)
    expect(ErrorCode.SUBSCRIPTION_ALREADY_CANCELED, reactivate, org.admin)  # the mirror now knows: no Stripe call needed
