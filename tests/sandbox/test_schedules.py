"""Subscription schedules in the sandbox: made from a subscription, phased, released, canceled."""

import pytest
import stripe


@pytest.fixture
def subscribed(sandbox):
    c = sandbox.client
    clock = c.v1.test_helpers.test_clocks.create(params={"frozen_time": 1_767_225_600})
    cust = c.v1.customers.create(params={"email": "s@example.com", "test_clock": clock.id, "payment_method": "pm_card_visa",
                                         "invoice_settings": {"default_payment_method": "pm_card_visa"}})
    prod = c.v1.products.create(params={"name": "Plan"})
    big = c.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 5000, "recurring": {"interval": "month"}})
    small = c.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 1000, "recurring": {"interval": "month"}})
    sub = c.v1.subscriptions.create(params={"customer": cust.id, "items": [{"price": big.id}]})
    return c, clock, cust, sub, big, small


def _downgrade(c, sub, big, small, end_behavior="release"):
    """Big until the period end, then small for one period: the schedule the app writes."""
    schedule = c.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    phase = schedule.phases[0]
    c.v1.subscription_schedules.update(schedule.id, params={"end_behavior": end_behavior, "phases": [
        {"items": [{"price": big.id, "quantity": 1}], "start_date": phase.start_date, "end_date": phase.end_date},
        {"items": [{"price": small.id, "quantity": 1}], "proration_behavior": "none"},
    ]})
    return schedule, phase


def test_a_downgrade_phase_applies_at_the_period_end_then_releases_when_the_last_phase_ends(subscribed):
    """As on Stripe: the schedule stays active (past phases listed, current_phase the running one) through
    its last phase, and end_behavior applies only when that phase ends."""
    c, clock, _cust, sub, big, small = subscribed
    schedule, phase = _downgrade(c, sub, big, small)
    assert c.v1.subscriptions.retrieve(sub.id).schedule == schedule.id
    with pytest.raises(stripe.InvalidRequestError, match="managed by the subscription schedule"):
        c.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})

    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": phase.end_date + 3600})
    renewed = c.v1.subscriptions.retrieve(sub.id)
    assert renewed["items"].data[0].price.id == small.id and renewed.schedule == schedule.id
    running = c.v1.subscription_schedules.retrieve(schedule.id)
    assert running.status == "active" and running.current_phase.start_date == phase.end_date
    assert [p.start_date for p in running.phases] == [phase.start_date, phase.end_date]  # the past phase still listed
    last_end = running.phases[1].end_date
    assert running.current_phase.end_date == last_end == renewed["items"].data[0].current_period_end
    latest = c.v1.invoices.list(params={"subscription": sub.id, "limit": 1}).data[0]
    assert latest.amount_paid == 1000
    with pytest.raises(stripe.InvalidRequestError, match="managed by the subscription schedule"):
        c.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})  # still under the schedule

    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": last_end + 3600})
    released = c.v1.subscription_schedules.retrieve(schedule.id)
    assert (released.status, released.released_subscription, released.current_phase) == ("released", sub.id, None)
    after = c.v1.subscriptions.retrieve(sub.id)
    assert after.schedule is None and after.status == "active" and after["items"].data[0].price.id == small.id
    assert c.v1.invoices.list(params={"subscription": sub.id, "limit": 1}).data[0].amount_paid == 1000  # renewed by itself
    types = [e.type for e in c.v1.events.list(params={"limit": 100}).data]
    assert {"subscription_schedule.created", "subscription_schedule.updated", "subscription_schedule.released"} <= set(types)


def test_end_behavior_cancel_ends_the_subscription_when_the_last_phase_ends(subscribed):
    c, clock, _cust, sub, big, small = subscribed
    schedule, phase = _downgrade(c, sub, big, small, end_behavior="cancel")
    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": phase.end_date + 3600})
    assert c.v1.subscriptions.retrieve(sub.id).status == "active"
    last_end = c.v1.subscription_schedules.retrieve(schedule.id).current_phase.end_date
    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": last_end + 3600})
    assert c.v1.subscriptions.retrieve(sub.id).status == "canceled"
    done = c.v1.subscription_schedules.retrieve(schedule.id)
    assert (done.status, done.completed_at) == ("completed", last_end)
    assert "subscription_schedule.completed" in [e.type for e in c.v1.events.list(params={"limit": 100}).data]


def test_an_update_in_the_last_phase_starts_at_the_current_phase_and_keeps_the_past_one(subscribed):
    """Past phases can be omitted (the SDK's update params say so); the sandbox refuses them, so a phase
    list that starts in the past (rewriting what already happened) fails here first."""
    c, clock, _cust, sub, big, small = subscribed
    schedule, phase = _downgrade(c, sub, big, small)
    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": phase.end_date + 3600})
    current = c.v1.subscription_schedules.retrieve(schedule.id).current_phase
    with pytest.raises(stripe.InvalidRequestError, match="start_date of the current phase"):
        c.v1.subscription_schedules.update(schedule.id, params={"phases": [
            {"items": [{"price": small.id}], "start_date": phase.start_date, "end_date": phase.end_date},
            {"items": [{"price": big.id}]},
        ]})
    updated = c.v1.subscription_schedules.update(schedule.id, params={"phases": [
        {"items": [{"price": small.id}], "start_date": current.start_date, "end_date": current.end_date},
        {"items": [{"price": big.id}], "proration_behavior": "none"},
    ]})
    assert [p.start_date for p in updated.phases] == [phase.start_date, current.start_date, current.end_date]
    assert updated.phases[0]["items"][0].price == big.id  # the past phase as it was
    assert updated.current_phase.start_date == current.start_date


def test_release_keeps_the_subscription_and_cancel_ends_it(subscribed):
    c, clock, cust, sub, big, small = subscribed
    schedule = c.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    with pytest.raises(stripe.InvalidRequestError, match="already attached to a schedule"):
        c.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    released = c.v1.subscription_schedules.release(schedule.id)
    assert released.status == "released" and released.released_subscription == sub.id
    assert c.v1.subscriptions.retrieve(sub.id).status == "active"
    again = c.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    assert c.v1.subscription_schedules.cancel(again.id).status == "canceled"
    assert c.v1.subscriptions.retrieve(sub.id).status == "canceled"


def test_bad_schedule_requests_get_stripe_errors(subscribed):
    c, clock, cust, sub, big, small = subscribed
    with pytest.raises(stripe.InvalidRequestError) as info:
        c.v1.subscription_schedules.create(params={})
    assert info.value.param == "from_subscription"
    with pytest.raises(stripe.InvalidRequestError) as info:
        c.v1.subscription_schedules.retrieve("sub_sched_missing")
    assert info.value.http_status == 404
    schedule = c.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    with pytest.raises(stripe.InvalidRequestError, match="start_date of the current phase"):
        c.v1.subscription_schedules.update(schedule.id, params={"phases": [{"items": [{"price": small.id}], "start_date": 1}]})


@pytest.fixture
def trialing(subscribed):
    c, clock, cust, _, big, small = subscribed
    sub = c.v1.subscriptions.create(params={"customer": cust.id, "items": [{"price": big.id}], "trial_period_days": 14})
    assert sub.status == "trialing"
    return c, clock, sub, big, small


def test_a_schedule_made_during_a_trial_keeps_it_in_its_first_phase(trialing):
    c, clock, sub, big, small = trialing
    schedule = c.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    assert schedule.phases[0].trial_end == sub.trial_end == schedule.phases[0].end_date


def test_a_downgrade_scheduled_during_a_trial_starts_when_the_trial_ends(trialing):
    c, clock, sub, big, small = trialing
    schedule = c.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    phase = schedule.phases[0]
    c.v1.subscription_schedules.update(schedule.id, params={"end_behavior": "release", "phases": [
        {"items": [{"price": big.id}], "start_date": phase.start_date, "end_date": phase.end_date, "trial_end": phase.trial_end},
        {"items": [{"price": small.id}], "proration_behavior": "none"},
    ]})
    still = c.v1.subscriptions.retrieve(sub.id)
    assert still.status == "trialing" and still.trial_end == sub.trial_end
    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": sub.trial_end + 3600})
    after = c.v1.subscriptions.retrieve(sub.id)
    assert after.status == "active" and after["items"].data[0].price.id == small.id and after.schedule == schedule.id
    assert c.v1.invoices.list(params={"subscription": sub.id, "limit": 1}).data[0].amount_paid == 1000
    last_end = c.v1.subscription_schedules.retrieve(schedule.id).current_phase.end_date
    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": last_end + 3600})
    assert c.v1.subscriptions.retrieve(sub.id).schedule is None  # released when its last phase ended


def test_a_current_phase_given_without_its_trial_ends_the_trial_now(trialing):
    """As on Stripe: the phases replace the schedule, and a current phase without trial_end has no trial."""
    c, clock, sub, big, small = trialing
    schedule = c.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    phase = schedule.phases[0]
    c.v1.subscription_schedules.update(schedule.id, params={"phases": [
        {"items": [{"price": big.id}], "start_date": phase.start_date, "end_date": phase.end_date},
        {"items": [{"price": small.id}]},
    ]})
    ended = c.v1.subscriptions.retrieve(sub.id)
    assert ended.status == "active" and ended.trial_end == phase.start_date
    assert c.v1.invoices.list(params={"subscription": sub.id, "limit": 1}).data[0].amount_paid == 5000


def test_a_later_phase_can_start_with_a_trial(subscribed):
    c, clock, cust, sub, big, small = subscribed
    schedule = c.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    phase = schedule.phases[0]
    c.v1.subscription_schedules.update(schedule.id, params={"end_behavior": "release", "phases": [
        {"items": [{"price": big.id}], "start_date": phase.start_date, "end_date": phase.end_date},
        {"items": [{"price": small.id}], "trial": True, "end_date": phase.end_date + 7 * 86400},
        {"items": [{"price": small.id}]},
    ]})
    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": phase.end_date + 3600})
    trial = c.v1.subscriptions.retrieve(sub.id)
    assert trial.status == "trialing" and trial.trial_end == phase.end_date + 7 * 86400
    assert c.v1.invoices.list(params={"subscription": sub.id, "limit": 1}).data[0].amount_due == 0
    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": phase.end_date + 8 * 86400})
    paid = c.v1.subscriptions.retrieve(sub.id)
    assert paid.status == "active" and paid.schedule == schedule.id  # in its last phase
    assert c.v1.invoices.list(params={"subscription": sub.id, "limit": 1}).data[0].amount_paid == 1000
    last_end = c.v1.subscription_schedules.retrieve(schedule.id).current_phase.end_date
    assert last_end == paid["items"].data[0].current_period_end
    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": last_end + 3600})
    assert c.v1.subscriptions.retrieve(sub.id).schedule is None


def test_a_schedules_preview_is_the_invoice_its_next_phase_sends(subscribed):
    """create_preview with `schedule` (Stripe's way to preview a schedule's next invoice): the phase that
    begins at the renewal, with its quantity and the discounts it keeps (still running then), is what the
    renewal charges."""
    c, clock, _cust, sub, big, small = subscribed
    coupon = c.v1.coupons.create(params={"percent_off": 10, "duration": "forever"})
    c.v1.subscriptions.update(sub.id, params={"discounts": [{"coupon": coupon.id}]})
    schedule = c.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    phase = schedule.phases[0]
    kept = [{"discount": phase.discounts[0].discount}]
    c.v1.subscription_schedules.update(schedule.id, params={"phases": [
        {"items": [{"price": big.id, "quantity": 1}], "start_date": phase.start_date, "end_date": phase.end_date,
         "discounts": kept},
        {"items": [{"price": small.id, "quantity": 3}], "proration_behavior": "none", "discounts": kept},  # e.g. a per-seat plan's seats
    ]})
    preview = c.v1.invoices.create_preview(params={"schedule": schedule.id})
    [line] = preview.lines.data
    assert (line.pricing.price_details.price, line.quantity, line.amount) == (small.id, 3, 3000)
    assert (preview.subtotal, preview.amount_due, preview.created) == (3000, 2700, phase.end_date)
    assert line.period.end == c.v1.subscription_schedules.retrieve(schedule.id).phases[1].end_date

    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": phase.end_date + 3600})
    assert c.v1.invoices.list(params={"subscription": sub.id, "limit": 1}).data[0].amount_paid == 2700
    # In its last phase the schedule's next invoice is that phase's renewal; released, it has none.
    assert c.v1.invoices.create_preview(params={"schedule": schedule.id}).amount_due == 2700
    c.v1.subscription_schedules.release(schedule.id)
    with pytest.raises(stripe.InvalidRequestError) as info:
        c.v1.invoices.create_preview(params={"schedule": schedule.id})
    assert info.value.code == "invoice_upcoming_none"


def test_a_schedules_preview_of_a_phase_that_begins_with_a_trial_is_free(subscribed):
    c, _clock, _cust, sub, big, small = subscribed
    schedule = c.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    phase = schedule.phases[0]
    c.v1.subscription_schedules.update(schedule.id, params={"phases": [
        {"items": [{"price": big.id}], "start_date": phase.start_date, "end_date": phase.end_date},
        {"items": [{"price": small.id}], "trial": True, "end_date": phase.end_date + 7 * 86400},
    ]})
    preview = c.v1.invoices.create_preview(params={"schedule": schedule.id})
    assert (preview.amount_due, preview.lines.data[0].period.end) == (0, phase.end_date + 7 * 86400)


def test_a_schedule_is_previewed_alone(subscribed):
    """`schedule` cannot be combined with `subscription` or `subscription_details` (the SDK's params say so)."""
    c, _clock, _cust, sub, _big, _small = subscribed
    schedule = c.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    for extra in ({"subscription": sub.id}, {"subscription_details": {"proration_behavior": "none"}}):
        with pytest.raises(stripe.InvalidRequestError, match="only specify one of these parameters") as info:
            c.v1.invoices.create_preview(params={"schedule": schedule.id, **extra})
        assert info.value.param == "schedule"


def test_a_current_phase_updated_to_other_items_changes_the_subscription_now(subscribed):
    """As on Stripe, the current phase is the subscription: new items or quantities for it apply at once
    (prorated as the update asks), not at the next phase boundary."""
    c, _clock, _cust, sub, big, small = subscribed
    schedule = c.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    phase = schedule.phases[0]
    c.v1.subscription_schedules.update(schedule.id, params={"proration_behavior": "always_invoice", "phases": [
        {"items": [{"price": big.id, "quantity": 2}], "start_date": phase.start_date, "end_date": phase.end_date},
    ]})
    now = c.v1.subscriptions.retrieve(sub.id)
    assert (now["items"].data[0].price.id, now["items"].data[0].quantity) == (big.id, 2)
    latest = c.v1.invoices.retrieve(now.latest_invoice)
    assert (latest.billing_reason, latest.amount_paid) == ("subscription_update", 5000)  # the second seat, whole period

    c.v1.subscription_schedules.update(schedule.id, params={"proration_behavior": "none", "phases": [
        {"items": [{"price": small.id, "quantity": 1}], "start_date": phase.start_date, "end_date": phase.end_date},
    ]})
    now = c.v1.subscriptions.retrieve(sub.id)
    assert (now["items"].data[0].price.id, now["items"].data[0].quantity) == (small.id, 1)
    assert now.latest_invoice == latest.id  # nothing prorated


# --- a phase's discounts ------------------------------------------------------------------------------------


def _discounted(c, sub, duration="forever"):
    coupon = c.v1.coupons.create(params={"percent_off": 20, "duration": duration,
                                         **({"duration_in_months": 3} if duration == "repeating" else {})})
    c.v1.subscriptions.update(sub.id, params={"discounts": [{"coupon": coupon.id}]})
    return coupon, c.v1.subscriptions.retrieve(sub.id).discounts[0]


def test_a_schedule_from_a_discounted_subscription_lists_its_discounts_on_the_phase(subscribed):
    """As on Stripe: the phase made from the subscription names the subscription's discounts (by id)."""
    c, _clock, _cust, sub, _big, _small = subscribed
    _coupon, discount_id = _discounted(c, sub)
    schedule = c.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    assert [(d.coupon, d.discount, d.promotion_code) for d in schedule.phases[0].discounts] == [(None, discount_id, None)]


def test_a_discount_named_on_each_phase_runs_on_after_the_phase_change(subscribed):
    """Re-sent by its id, the same discount runs on the current phase and into the next one: the renewal
    bills the new price with it, and the discount is the same object (its months not restarted)."""
    c, clock, _cust, sub, big, small = subscribed
    _coupon, discount_id = _discounted(c, sub, "repeating")
    schedule = c.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    phase = schedule.phases[0]
    kept = [{"discount": discount_id}]
    updated = c.v1.subscription_schedules.update(schedule.id, params={"phases": [
        {"items": [{"price": big.id, "quantity": 1}], "start_date": phase.start_date, "end_date": phase.end_date,
         "discounts": kept, "metadata": {"plan": "big"}},
        {"items": [{"price": small.id, "quantity": 1}], "proration_behavior": "none", "discounts": kept,
         "metadata": {"plan": "small"}},
    ]})
    assert [d.discount for d in updated.phases[1].discounts] == [discount_id]
    assert updated.phases[1].metadata.to_dict() == {"plan": "small"}
    assert c.v1.subscriptions.retrieve(sub.id).discounts == [discount_id]
    preview = c.v1.invoices.create_preview(params={"schedule": schedule.id})
    assert preview.total == 800  # the next phase's price, with its discount

    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": phase.end_date + 3600})
    after = c.v1.subscriptions.retrieve(sub.id)
    assert after.discounts == [discount_id] and after.metadata["plan"] == "small"
    latest = c.v1.invoices.list(params={"subscription": sub.id, "limit": 1}).data[0]
    assert (latest.subtotal, latest.total) == (1000, 800)


def test_phases_updated_without_their_discounts_drop_them(subscribed):
    """Stripe replaces the phases: a current phase sent without the discount ends it now, and a next phase
    without it starts without it ("the coupon would be removed")."""
    c, clock, _cust, sub, big, small = subscribed
    _coupon, discount_id = _discounted(c, sub)
    schedule = c.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    phase = schedule.phases[0]
    c.v1.subscription_schedules.update(schedule.id, params={"phases": [
        {"items": [{"price": big.id, "quantity": 1}], "start_date": phase.start_date, "end_date": phase.end_date,
         "discounts": [{"discount": discount_id}]},
        {"items": [{"price": small.id, "quantity": 1}], "proration_behavior": "none"},
    ]})
    assert c.v1.subscriptions.retrieve(sub.id).discounts == [discount_id]  # the current phase keeps it
    assert c.v1.invoices.create_preview(params={"schedule": schedule.id}).total == 1000
    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": phase.end_date + 3600})
    assert c.v1.subscriptions.retrieve(sub.id).discounts == []
    assert c.v1.invoices.list(params={"subscription": sub.id, "limit": 1}).data[0].total == 1000

    running = c.v1.subscription_schedules.retrieve(schedule.id)
    c.v1.subscription_schedules.update(schedule.id, params={"phases": [
        {"items": [{"price": small.id, "quantity": 1}], "start_date": running.current_phase.start_date,
         "end_date": running.current_phase.end_date}]})
    assert c.v1.subscriptions.retrieve(sub.id).discounts == []


def test_a_current_phase_sent_without_its_discount_ends_it_now(subscribed):
    c, _clock, _cust, sub, big, _small = subscribed
    _discounted(c, sub)
    schedule = c.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    phase = schedule.phases[0]
    c.v1.subscription_schedules.update(schedule.id, params={"phases": [
        {"items": [{"price": big.id, "quantity": 1}], "start_date": phase.start_date, "end_date": phase.end_date}]})
    assert c.v1.subscriptions.retrieve(sub.id).discounts == []
    assert c.v1.subscription_schedules.retrieve(schedule.id).phases[0].discounts == []
    assert "customer.discount.deleted" in [e.type for e in c.v1.events.list(params={"limit": 20}).data]


def test_a_coupon_on_a_later_phase_is_redeemed_when_it_begins(subscribed):
    c, clock, _cust, sub, big, small = subscribed
    coupon = c.v1.coupons.create(params={"percent_off": 50, "duration": "forever"})
    schedule = c.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    phase = schedule.phases[0]
    updated = c.v1.subscription_schedules.update(schedule.id, params={"phases": [
        {"items": [{"price": big.id, "quantity": 1}], "start_date": phase.start_date, "end_date": phase.end_date},
        {"items": [{"price": small.id, "quantity": 1}], "proration_behavior": "none", "discounts": [{"coupon": coupon.id}]},
    ]})
    assert [(d.coupon, d.discount) for d in updated.phases[1].discounts] == [(coupon.id, None)]
    assert c.v1.subscriptions.retrieve(sub.id).discounts == []
    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": phase.end_date + 3600})
    assert len(c.v1.subscriptions.retrieve(sub.id).discounts) == 1
    assert c.v1.invoices.list(params={"subscription": sub.id, "limit": 1}).data[0].total == 500


def test_a_discount_added_to_the_subscription_under_a_schedule_shows_on_its_current_phase(subscribed):
    """The current phase is the subscription: a discount applied to it directly (the retention offer)
    is listed there, so the phases re-sent as read keep it."""
    c, _clock, _cust, sub, _big, _small = subscribed
    schedule = c.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    _coupon, discount_id = _discounted(c, sub)
    assert [d.discount for d in c.v1.subscription_schedules.retrieve(schedule.id).phases[0].discounts] == [discount_id]


def test_a_phase_may_not_name_another_subscriptions_discount(subscribed):
    c, _clock, cust, sub, big, _small = subscribed
    other = c.v1.subscriptions.create(params={"customer": cust.id, "items": [{"price": big.id}]})
    _coupon, foreign = _discounted(c, other)
    schedule = c.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    phase = schedule.phases[0]
    with pytest.raises(stripe.InvalidRequestError) as info:
        c.v1.subscription_schedules.update(schedule.id, params={"phases": [
            {"items": [{"price": big.id, "quantity": 1}], "start_date": phase.start_date, "end_date": phase.end_date,
             "discounts": [{"discount": foreign}]}]})
    assert info.value.param == "phases[0][discounts][0][discount]"
