"""Seat changes racing a plan change: the quantity is decided on Stripe's plan, never on a mirror
that has not caught up (another tab's change, a Customer Portal switch whose webhook is not
processed yet). A flat plan is never billed more than once; a per-seat plan never adds a member
unbilled; a flat plan's seat cap still holds."""

from __future__ import annotations

from sqlmodel import select

from billing_app.auth import members
from billing_app.billing import seat_billing
from billing_app.billing.subscriptions import change_plan
from billing_app.db import session_scope
from billing_app.errors import ErrorCode
from billing_app.models import Membership, OrgSubscription, PlanPeriod
from tests.billing.helpers import expect, period_id
from tests.teams.helpers import (
    buy_team,
    join,
    mirror_quantity,
    quantity_at_stripe,
    stripe_subscription,
)


def member_ids(org_id):
    with session_scope() as s:
        return sorted(s.exec(select(Membership.user_id).where(Membership.org_id == org_id)).all())


def mirror_price(org) -> str:
    with session_scope() as s:
        return s.exec(select(OrgSubscription.stripe_price_id).where(OrgSubscription.org_id == org.id)).one()


def price_of(plan: str) -> str:
    with session_scope() as s:
        return s.get(PlanPeriod, period_id(plan, "MONTHLY")).stripe_price_id


def portal_switch(org, sandbox, plan: str, quantity: int = 1) -> None:
    """What a plan switch in Stripe's Customer Portal does; its webhook is not processed (the mirror lags)."""
    sub = stripe_subscription(org, sandbox)
    sandbox.client.v1.subscriptions.update(sub.id, params={
        "items": [{"id": sub.items.data[0].id, "price": price_of(plan), "quantity": quantity}],
        "proration_behavior": "create_prorations",
    })


def billed_at_stripe(org, sandbox) -> tuple[str, int]:
    item = stripe_subscription(org, sandbox).items.data[0]
    return item.price.id, item.quantity


def test_a_seat_purchase_racing_a_switch_to_a_flat_plan_does_not_multiply_the_flat_price(org, stripe_env, monkeypatch):
    buy_team(org, stripe_env)  # 3 seats at $8.00
    real, raced = seat_billing._prorated, []

    def then_another_tab_switches_plan(per_seat, quantity):
        result = real(per_seat, quantity)
        if not raced:  # after change_seats decided "per seat", before it takes the seat claim
            raced.append(change_plan(org.admin, period_id("business", "MONTHLY"), preview=False))  # $99 flat, at once
        return result

    monkeypatch.setattr(seat_billing, "_prorated", then_another_tab_switches_plan)
    error = expect(ErrorCode.SEAT_CHANGE_IN_PROGRESS, seat_billing.change_seats, org.admin, 10, preview=False)
    assert "nothing was changed" in error.message and "try again" in error.message
    assert billed_at_stripe(org, stripe_env) == (price_of("business"), 1)
    # Trying again decides on the plan the organization is on now.
    expect(ErrorCode.NOT_PER_SEAT, seat_billing.change_seats, org.admin, 10, preview=False)


def test_removing_a_member_after_a_portal_switch_to_a_flat_plan_does_not_multiply_it(org, stripe_env):
    buy_team(org, stripe_env)
    carol = join(org, "carol@example.com")
    portal_switch(org, stripe_env, "business")
    # Refused with nothing changed (the mirror is synced on the way), then done on the plan as it is now.
    expect(ErrorCode.SEAT_CHANGE_IN_PROGRESS, members.remove_member, org.admin, carol.user_id)
    assert billed_at_stripe(org, stripe_env) == (price_of("business"), 1)
    assert carol.user_id in member_ids(org.id)
    members.remove_member(org.admin, carol.user_id)
    assert carol.user_id not in member_ids(org.id)
    assert billed_at_stripe(org, stripe_env) == (price_of("business"), 1)
    assert quantity_at_stripe(org, stripe_env) == mirror_quantity(org) == 1
