"""The next invoice the dashboard shows is the one Stripe will send: once a downgrade waits for the
period end (a subscription schedule's next phase), it is the new plan's, on the day it takes effect."""

from __future__ import annotations

from billing_app.billing.checkout import checkout_status, start_checkout
from billing_app.billing.subscriptions import cancel_scheduled_change, change_plan
from tests.billing.helpers import period_id
from tests.dashboard.helpers import billing, dashboard


def _buy(org, stripe_env, plan: str, **complete) -> None:
    started = start_checkout(org.admin, period_id(plan, "MONTHLY"))
    stripe_env.complete_checkout(started.session_id, **complete)
    checkout_status(org.admin, started.session_id)  # syncs, as the confirmation page does


def test_a_scheduled_downgrade_shows_the_new_plans_price_on_the_day_it_takes_effect(acme, stripe_env):
    _buy(acme, stripe_env, "pro")  # a 14-day trial: the first charge is at its end
    before = dashboard(acme)
    assert before.next_amount == "$29.00"

    change_plan(acme.admin, period_id("starter", "MONTHLY"), preview=False)
    view = dashboard(acme)
    assert billing(acme).scheduled_change == f"Changes to Starter (monthly) on {view.next_date}"
    assert (view.next_amount, view.next_date) == ("$9.00", before.next_date)

    cancel_scheduled_change(acme.admin)  # Keep current plan: the renewal is Pro's again
    assert (dashboard(acme).next_amount, billing(acme).scheduled_change) == ("$29.00", "")


def test_a_per_seat_downgrade_shows_the_next_phases_seats_and_the_running_discount(acme, stripe_env):
    _buy(acme, stripe_env, "team", promotion_code="LAUNCH10")  # 2 members: 3 seats at $8, 10% off for 12 months
    assert dashboard(acme).next_amount == "$21.60"

    change_plan(acme.admin, period_id("team", "YEARLY"), preview=False)  # cheaper per month: at the period end
    view = dashboard(acme)
    assert billing(acme).scheduled_change.startswith("Changes to Team (yearly) on ")
    assert view.next_amount == "$216.00"  # 3 x $80 a year, less 10%
    assert {"Subtotal $240.00", "Discount −$24.00", "3 seats"} <= set(view.next_details)
