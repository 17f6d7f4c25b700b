"""Downgrades wait for the period end (a Stripe subscription schedule), then switch."""

from datetime import datetime, timezone

from sqlmodel import select

from billing_app.billing.entitlements import entitlement
from billing_app.billing.subscriptions import cancel, cancel_scheduled_change, change_plan
from billing_app.billing.sync import sync_customer
from billing_app.billing.views import billing_view
from billing_app.db import session_scope
from billing_app.errors import ErrorCode
from billing_app.models import Payment, PlanPeriod
from tests.billing.helpers import advance, buy_on_clock, expect, period_id, subscription


def test_downgrade_preview_says_when_and_charges_nothing(org, stripe_env, db):
    buy_on_clock(org, stripe_env, plan="business")
    preview = change_plan(org.admin, period_id("starter", "MONTHLY"), preview=True)
    assert not preview.upgrade and preview.amount_due_now == 0 and not preview.applied
    assert preview.effective_at == subscription(db, org).current_period_end.replace(tzinfo=timezone.utc)
    assert subscription(db, org).stripe_schedule_id is None


def test_downgrade_is_scheduled_then_applies_at_the_period_end(org, stripe_env, db):
    clock, customer = buy_on_clock(org, stripe_env, plan="business")
    change_plan(org.admin, period_id("starter", "MONTHLY"), preview=False)
    sub = subscription(db, org)
    end = int(sub.current_period_end.timestamp())
    assert sub.stripe_schedule_id and sub.scheduled_change_at.timestamp() == end
    with session_scope() as s:
        assert entitlement(s, org.id).plan_key == "business"  # paid for until the period end
        assert billing_view(s, org.id).scheduled_change.startswith("Changes to Starter (monthly) on ")

    stripe_env.client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": end + 3600})
    sync_customer(customer.id)
    sub = subscription(db, org)
    assert sub.status == "active" and sub.scheduled_period_id is None
    with session_scope() as s:
        assert entitlement(s, org.id, now=datetime.fromtimestamp(end + 3600, tz=timezone.utc)).plan_key == "starter"
    renewal = db.exec(select(Payment).where(Payment.org_id == org.id).order_by(Payment.created.desc())).first()
    assert renewal.amount == 900  # the renewal bills the new, lower price


def test_keep_current_plan_drops_the_scheduled_downgrade(org, stripe_env, db):
    clock, customer = buy_on_clock(org, stripe_env, plan="business")
    change_plan(org.admin, period_id("starter", "MONTHLY"), preview=False)
    cancel_scheduled_change(org.admin)
    sub = subscription(db, org)
    assert sub.stripe_schedule_id is None and sub.scheduled_period_id is None
    stripe_env.client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": int(sub.current_period_end.timestamp()) + 3600})
    sync_customer(customer.id)
    with session_scope() as s:
        assert entitlement(s, org.id).plan_key == "business"
    expect(ErrorCode.NO_SCHEDULED_CHANGE, cancel_scheduled_change, org.admin)  # 409: nothing left to keep


def test_canceling_replaces_a_scheduled_downgrade(org, stripe_env, db):
    buy_on_clock(org, stripe_env, plan="business")
    change_plan(org.admin, period_id("starter", "MONTHLY"), preview=False)
    cancel(org.admin)
    sub = subscription(db, org)
    assert sub.cancel_at_period_end and sub.stripe_schedule_id is None


def test_schedules_are_real_at_stripe(org, stripe_env, db):
    buy_on_clock(org, stripe_env, plan="business")
    change_plan(org.admin, period_id("starter", "MONTHLY"), preview=False)
    sub = subscription(db, org)
    schedule = stripe_env.client.v1.subscription_schedules.retrieve(sub.stripe_schedule_id)
    assert schedule.subscription == sub.stripe_id and schedule.end_behavior == "release"
    assert len(schedule.phases) == 2 and schedule.phases[1]["items"][0]["price"] is not None


def test_a_downgrade_scheduled_during_a_trial_keeps_the_trial(org, stripe_env, db):
    """Pro starts with a 14-day trial: the downgrade waits for the trial's end, and the trial is not cut short."""
    clock, customer = buy_on_clock(org, stripe_env, plan="pro")
    before = subscription(db, org)
    assert before.status == "trialing" and before.trial_end
    change_plan(org.admin, period_id("starter", "MONTHLY"), preview=False)
    sub = subscription(db, org)
    assert sub.status == "trialing" and sub.trial_end == before.trial_end  # still on the free trial, to the same day
    assert sub.scheduled_change_at == before.trial_end
    with session_scope() as s:
        assert entitlement(s, org.id).plan_key == "pro"
    assert db.exec(select(Payment).where(Payment.org_id == org.id, Payment.amount > 0)).first() is None  # nothing charged

    end = int(before.trial_end.replace(tzinfo=timezone.utc).timestamp())
    advance(stripe_env, clock, end + 3600, customer)
    sub = subscription(db, org)
    assert sub.status == "active" and sub.scheduled_period_id is None
    with session_scope() as s:
        assert entitlement(s, org.id, now=datetime.fromtimestamp(end + 3600, tz=timezone.utc)).plan_key == "starter"
    first = db.exec(select(Payment).where(Payment.org_id == org.id, Payment.amount > 0)).one()
    assert first.amount == 900  # the first charge after the trial is the lower plan's price


def _in_the_last_phase(org, stripe_env, db):
    """Business, downgraded to Pro, which has now begun: the schedule's last phase is running, and
    Stripe keeps the schedule (active, the Business phase still listed) until that phase ends."""
    clock, customer = buy_on_clock(org, stripe_env, plan="business")
    change_plan(org.admin, period_id("pro", "MONTHLY"), preview=False)
    before = subscription(db, org)
    t1 = int(before.current_period_end.timestamp())
    advance(stripe_env, clock, t1 + 3600, customer)
    sub = subscription(db, org)
    schedule = stripe_env.client.v1.subscription_schedules.retrieve(before.stripe_schedule_id)
    assert schedule.status == "active" and schedule.current_phase["start_date"] == t1 and len(schedule.phases) == 2
    assert sub.plan_period_id == period_id("pro", "MONTHLY")
    return clock, customer, schedule, int(sub.current_period_end.timestamp())


def test_in_the_last_phase_nothing_is_waiting(org, stripe_env, db):
    """The downgrade happened: the page shows no scheduled change, and there is nothing to keep."""
    clock, customer, schedule, t2 = _in_the_last_phase(org, stripe_env, db)
    sub = subscription(db, org)
    assert sub.scheduled_period_id is None and sub.scheduled_change_at is None
    with session_scope() as s:
        assert billing_view(s, org.id).scheduled_change == ""
    expect(ErrorCode.NO_SCHEDULED_CHANGE, cancel_scheduled_change, org.admin)
    assert stripe_env.client.v1.subscription_schedules.retrieve(schedule.id).status == "active"  # left as Stripe keeps it

    advance(stripe_env, clock, t2 + 3600, customer)  # the last phase ends: Stripe releases the schedule
    assert stripe_env.client.v1.subscription_schedules.retrieve(schedule.id).status == "released"
    sub = subscription(db, org)
    assert sub.stripe_schedule_id is None and sub.scheduled_period_id is None and sub.status == "active"
    renewal = db.exec(select(Payment).where(Payment.org_id == org.id).order_by(Payment.created.desc())).first()
    assert renewal.amount == 2900  # Pro carries on by itself


def test_a_second_downgrade_in_the_last_phase_waits_for_its_end(org, stripe_env, db):
    """Neither refused nor applied at once: the running Pro phase is kept, Starter follows it."""
    clock, customer, schedule, t2 = _in_the_last_phase(org, stripe_env, db)
    change = change_plan(org.admin, period_id("starter", "MONTHLY"), preview=False)
    assert change.applied and not change.upgrade and change.effective_at.timestamp() == t2
    sub = subscription(db, org)
    assert sub.plan_period_id == period_id("pro", "MONTHLY")  # still Pro, paid until t2
    assert (sub.scheduled_period_id, sub.scheduled_change_at.timestamp()) == (period_id("starter", "MONTHLY"), t2)
    with session_scope() as s:
        assert billing_view(s, org.id).scheduled_change.startswith("Changes to Starter (monthly) on ")
    phases = stripe_env.client.v1.subscription_schedules.retrieve(schedule.id).phases
    assert [(p["start_date"], p["items"][0]["price"]) for p in phases[1:]] == [
        (schedule.current_phase["start_date"], sub.stripe_price_id), (t2, db.get(PlanPeriod, period_id("starter", "MONTHLY")).stripe_price_id)]

    advance(stripe_env, clock, t2 + 3600, customer)
    sub = subscription(db, org)
    assert sub.plan_period_id == period_id("starter", "MONTHLY") and sub.scheduled_period_id is None
    renewal = db.exec(select(Payment).where(Payment.org_id == org.id).order_by(Payment.created.desc())).first()
    assert renewal.amount == 900


def test_an_upgrade_in_the_last_phase_applies_and_stays(org, stripe_env, db):
    """The schedule (nothing waiting in it) is released first, so its end cannot undo the upgrade."""
    clock, customer, _schedule, t2 = _in_the_last_phase(org, stripe_env, db)
    change = change_plan(org.admin, period_id("business", "MONTHLY"), preview=False)
    assert change.applied and change.upgrade and change.confirm_url is None
    assert stripe_env.client.v1.subscriptions.retrieve(subscription(db, org).stripe_id).schedule is None
    advance(stripe_env, clock, t2 + 3600, customer)
    sub = subscription(db, org)
    assert sub.plan_period_id == period_id("business", "MONTHLY") and sub.status == "active"
    renewal = db.exec(select(Payment).where(Payment.org_id == org.id).order_by(Payment.created.desc())).first()
    assert renewal.amount == 9900


def test_canceling_in_the_last_phase_releases_the_schedule_first(org, stripe_env, db):
    """Stripe refuses cancel_at_period_end under a schedule, in its last phase too."""
    clock, customer, schedule, t2 = _in_the_last_phase(org, stripe_env, db)
    cancel(org.admin)
    sub = subscription(db, org)
    assert sub.cancel_at_period_end and sub.stripe_schedule_id is None
    assert stripe_env.client.v1.subscription_schedules.retrieve(schedule.id).status == "released"
    advance(stripe_env, clock, t2 + 3600, customer)
    assert subscription(db, org).status == "canceled"


def test_a_retention_coupon_still_running_applies_after_a_scheduled_downgrade(org, stripe_env, db):
    """The schedule's phases are re-sent wholesale (Stripe keeps no discount a phase does not name): the
    current phase and the downgrade's phase both keep the subscription's discount, so the renewal on the
    new plan still has the retention offer's 20% off, the same discount running on (not restarted)."""
    from billing_app.billing import retention

    clock, customer = buy_on_clock(org, stripe_env, plan="business")
    retention.accept(org.admin)
    client = stripe_env.client
    sub = subscription(db, org)
    [discount_id] = client.v1.subscriptions.retrieve(sub.stripe_id).discounts
    change_plan(org.admin, period_id("starter", "MONTHLY"), preview=False)
    sub = subscription(db, org)
    assert client.v1.subscriptions.retrieve(sub.stripe_id).discounts == [discount_id]  # not ended now
    schedule = client.v1.subscription_schedules.retrieve(sub.stripe_schedule_id)
    assert [[d.discount for d in p.discounts] for p in schedule.phases] == [[discount_id], [discount_id]]

    advance(stripe_env, clock, int(sub.current_period_end.timestamp()) + 3600, customer)
    assert client.v1.subscriptions.retrieve(sub.stripe_id).discounts == [discount_id]
    renewal = client.v1.invoices.list(params={"subscription": sub.stripe_id, "limit": 1}).data[0]
    assert (renewal.subtotal, renewal.total) == (900, 720)


def test_the_retention_offer_keeps_a_plan_switched_in_the_portal_while_a_downgrade_waits(org, stripe_env, db):
    """Business waits to become Starter; the customer switches to Pro in the billing portal (the schedule's
    running phase still names Business). Accepting the retention offer names its discount on the phases:
    the running phase is re-sent as the subscription bills it now (Pro), since Stripe applies a running
    phase at once, so Business is never put back and nothing is prorated; Starter still waits, discounted."""
    from billing_app.billing import retention

    _clock, customer = buy_on_clock(org, stripe_env, plan="business")
    change_plan(org.admin, period_id("starter", "MONTHLY"), preview=False)
    client = stripe_env.client
    sub = subscription(db, org)
    with session_scope() as s:
        pro, starter = (s.get(PlanPeriod, period_id(k, "MONTHLY")).stripe_price_id for k in ("pro", "starter"))
    item = client.v1.subscriptions.retrieve(sub.stripe_id)["items"].data[0]
    client.v1.subscriptions.update(sub.stripe_id, params={  # the portal's switch
        "items": [{"id": item.id, "price": pro}], "proration_behavior": "create_prorations"})
    sync_customer(customer.id)
    pending = len(client.v1.invoice_items.list(params={"customer": customer.id}).data)

    retention.accept(org.admin)
    at_stripe = client.v1.subscriptions.retrieve(sub.stripe_id)
    assert at_stripe["items"].data[0].price.id == pro, "accepting a coupon switched the plan back to Business"
    assert len(client.v1.invoice_items.list(params={"customer": customer.id}).data) == pending  # nothing prorated
    [discount_id] = at_stripe.discounts
    schedule = client.v1.subscription_schedules.retrieve(sub.stripe_schedule_id)
    assert [(p.items[0].price, [d.discount for d in p.discounts]) for p in schedule.phases] == \
        [(pro, [discount_id]), (starter, [discount_id])]
    sub = subscription(db, org)
    assert (sub.plan_period_id, sub.scheduled_period_id) == (period_id("pro", "MONTHLY"), period_id("starter", "MONTHLY"))
