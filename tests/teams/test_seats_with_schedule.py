"""A seat change while a downgrade waits for the period end (a subscription schedule with a next
phase): the schedule's phases take the new quantity, so the phase change keeps the seats; a flat
plan's next phase stays one item. Through the real SDK and the sandbox's test clock."""

from __future__ import annotations

import pytest

from billing_app.auth import members
from billing_app.billing import seat_billing
from billing_app.billing.subscriptions import change_plan
from billing_app.billing.sync import sync_customer
from tests.billing.helpers import buy_on_clock, period_id
from tests.teams.helpers import join, mirror_quantity, quantity_at_stripe, stripe_subscription


def _schedule(org, sandbox):
    sub = stripe_subscription(org, sandbox)
    return sandbox.client.v1.subscription_schedules.retrieve(sub.schedule)


def _phase_quantities(org, sandbox) -> list[tuple[str, int]]:
    return [(p.items[0].price, p.items[0].quantity) for p in _schedule(org, sandbox).phases]


def _past_the_period_end(org, sandbox, clock, customer) -> None:
    end = stripe_subscription(org, sandbox)["items"].data[0].current_period_end
    sandbox.client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": end + 3600})
    sync_customer(customer.id)


def test_seats_bought_while_a_per_seat_downgrade_waits_survive_the_phase_change(org, stripe_env):
    clock, customer = buy_on_clock(org, stripe_env, plan="team")  # 2 members: 3 seats, monthly
    yearly = period_id("team", "YEARLY")
    assert change_plan(org.admin, yearly, preview=False).applied  # cheaper per month: at the period end
    monthly_price, yearly_price = (stripe_subscription(org, stripe_env)["items"].data[0].price.id,
                                   _schedule(org, stripe_env).phases[1].items[0].price)
    assert _phase_quantities(org, stripe_env) == [(monthly_price, 3), (yearly_price, 3)]

    seat_billing.change_seats(org.admin, 6, preview=False)
    assert quantity_at_stripe(org, stripe_env) == 6
    assert _phase_quantities(org, stripe_env) == [(monthly_price, 6), (yearly_price, 6)]
    # A member joining and one removed move the quantity the same way (6 covers 3; removing: max(3, 2)).
    carol = join(org, "carol@example.com")
    members.remove_member(org.admin, carol.user_id)
    assert quantity_at_stripe(org, stripe_env) == 3 and _phase_quantities(org, stripe_env)[1] == (yearly_price, 3)
    seat_billing.change_seats(org.admin, 5, preview=False)

    _past_the_period_end(org, stripe_env, clock, customer)
    sub = stripe_subscription(org, stripe_env)
    assert (sub["items"].data[0].price.id, sub["items"].data[0].quantity) == (yearly_price, 5)  # not back to 3
    assert mirror_quantity(org) == 5


def test_a_flat_plan_waiting_for_the_period_end_keeps_one_item(org, stripe_env):
    clock, customer = buy_on_clock(org, stripe_env, plan="team")
    starter = period_id("starter", "MONTHLY")
    change_plan(org.admin, starter, preview=False)  # $9 flat < 3 x $8: at the period end
    seat_billing.change_seats(org.admin, 4, preview=False)
    phases = _phase_quantities(org, stripe_env)
    assert [q for _, q in phases] == [4, 1]

    _past_the_period_end(org, stripe_env, clock, customer)
    assert quantity_at_stripe(org, stripe_env) == 1 and mirror_quantity(org) == 1


def test_a_schedule_gone_between_the_read_and_its_update_leaves_nothing_half_done(org, stripe_env, monkeypatch):
    """The downgrade is dropped (Keep current plan, another tab) after the seat change read the
    subscription: Stripe refuses the schedule's update, the quantity goes back, and a retry applies."""
    from billing_app.errors import ErrorCode
    from tests.billing.helpers import expect

    buy_on_clock(org, stripe_env, plan="team")
    change_plan(org.admin, period_id("team", "YEARLY"), preview=False)
    schedule_id = _schedule(org, stripe_env).id
    real_update = seat_billing._update

    def update_then_someone_keeps_the_plan(*args):
        real_update(*args)
        stripe_env.client.v1.subscription_schedules.release(schedule_id)

    monkeypatch.setattr(seat_billing, "_update", update_then_someone_keeps_the_plan)
    expect(ErrorCode.STRIPE_SEAT_UPDATE_FAILED, seat_billing.change_seats, org.admin, 6, preview=False)
    assert quantity_at_stripe(org, stripe_env) == 3 and mirror_quantity(org) == 3

    monkeypatch.setattr(seat_billing, "_update", real_update)
    seat_billing.change_seats(org.admin, 6, preview=False)  # no schedule any more: the subscription alone
    assert quantity_at_stripe(org, stripe_env) == 6 and stripe_subscription(org, stripe_env).schedule is None


def test_members_joining_or_leaving_before_a_scheduled_switch_to_per_seat_are_its_seats(org, stripe_env, monkeypatch):
    """A flat plan scheduled to become a per-seat one at the period end: the members who join (or
    leave) meanwhile are the per-seat phase's quantity, so the switch bills everyone, not the members
    counted when it was scheduled."""
    from billing_app.auth import invitations
    from tests.teams.helpers import invitee, token_of

    clock, customer = buy_on_clock(org, stripe_env, plan="business")  # $99 flat, unlimited seats, 2 members
    change = change_plan(org.admin, period_id("team", "MONTHLY"), preview=False)  # 3 seats x $8 < $99: at the period end
    assert not change.upgrade
    business_price = stripe_subscription(org, stripe_env)["items"].data[0].price.id
    team_price = _schedule(org, stripe_env).phases[1].items[0].price
    assert _phase_quantities(org, stripe_env) == [(business_price, 1), (team_price, 3)]  # min_seats

    carol, dave = join(org, "carol@example.com"), join(org, "dave@example.com")
    assert _phase_quantities(org, stripe_env) == [(business_price, 1), (team_price, 4)]
    erin_invite = invitations.invite(org.admin, email="erin@example.com")
    invitations.accept(invitee("erin@example.com"), token_of(erin_invite.url))
    assert _phase_quantities(org, stripe_env) == [(business_price, 1), (team_price, 5)]
    assert quantity_at_stripe(org, stripe_env) == 1  # the flat plan is still one item until the switch
    members.remove_member(org.admin, carol.user_id)
    members.remove_member(org.admin, dave.user_id)
    assert _phase_quantities(org, stripe_env) == [(business_price, 1), (team_price, 3)]
    # A database failure after Stripe agreed puts the phase's quantity back, as it does the subscription's.
    frank_invite = invitations.invite(org.admin, email="frank@example.com")
    frank = invitee("frank@example.com")
    with monkeypatch.context() as patched:
        patched.setattr(invitations, "_mark", lambda *_args, **_kwargs: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            invitations.accept(frank, token_of(frank_invite.url))
    assert _phase_quantities(org, stripe_env) == [(business_price, 1), (team_price, 3)]
    invitations.accept(frank, token_of(frank_invite.url))  # 4 members

    _past_the_period_end(org, stripe_env, clock, customer)
    sub = stripe_subscription(org, stripe_env)
    assert (sub["items"].data[0].price.id, sub["items"].data[0].quantity) == (team_price, 4)
    assert mirror_quantity(org) == 4


def test_acceptances_before_a_scheduled_switch_to_per_seat_count_against_the_orgs_stripe_limit(
        org, stripe_env, monkeypatch, fresh_limits):
    """As on a per-seat plan: each acceptance that calls Stripe for the seats (here the waiting
    per-seat phase's: a read, and a schedule write when the quantity moves) counts against
    RATE_LIMIT_STRIPE_ORG."""
    from billing_app.auth import invitations
    from billing_app.errors import ErrorCode
    from billing_app.settings import get_settings
    from tests.billing.helpers import buy, expect
    from tests.teams.helpers import invitee, token_of

    buy(org, "business", sandbox=stripe_env)
    assert not change_plan(org.admin, period_id("team", "MONTHLY"), preview=False).upgrade  # Team at the period end
    carol_invite = invitations.invite(org.admin, email="carol@example.com")
    dave_invite = invitations.invite(org.admin, email="dave@example.com")
    carol, dave = invitee("carol@example.com"), invitee("dave@example.com")
    monkeypatch.setenv("RATE_LIMIT_STRIPE_ORG", "1/minute")
    get_settings.cache_clear()
    invitations.accept(carol, token_of(carol_invite.url))
    expect(ErrorCode.RATE_LIMITED, invitations.accept, dave, token_of(dave_invite.url))
    assert _phase_quantities(org, stripe_env)[-1][1] == 3  # Dave refused: the phase still bills the 3 members


def test_a_scheduled_downgrades_seat_cap_holds_already_for_invitations_and_acceptances(org, stripe_env, client):
    """A downgrade to Starter (3 seats) waits for the period end: the members must still fit then, so
    inviting and accepting are judged against its cap already, by the one check the members page and
    the REST API share."""
    from billing_app.auth import invitations
    from billing_app.errors import ErrorCode
    from billing_app.formatting import format_date
    from billing_app.pages.members import MembersState
    from tests.api.helpers import add_membership, bearer, err, token_for
    from tests.aio import run_async
    from tests.billing.helpers import buy, expect
    from tests.pages import run_event, signed_in_page
    from tests.teams.helpers import invitee, token_of

    buy(org, "business", sandbox=stripe_env)  # no seat cap; 2 members
    change = change_plan(org.admin, period_id("starter", "MONTHLY"), preview=False)
    assert not change.upgrade and change.effective_at is not None
    when = format_date(change.effective_at)

    carol_invite = invitations.invite(org.admin, email="carol@example.com")  # the third seat Starter allows
    error = expect(ErrorCode.SEAT_LIMIT_REACHED, invitations.invite, org.admin, email="dave@example.com")
    assert error.message == (
        f"Your plan changes to Starter on {when}, which allows 3 seats, and all are taken (2 members and "
        "1 pending invitation). Keep your current plan (on the billing page) to add more members.")
    body = err(client.post("/api/org/invitations", json={"email": "dave@example.com"}, headers=bearer(token_for(org.admin))),
               409, "SEAT_LIMIT_REACHED")
    assert body["message"] == error.message
    tab = signed_in_page(MembersState, "admin@acme.example")
    run_async(run_event(MembersState.invite.fn(tab, {"email": "dave@example.com", "role": "member"})))
    assert tab.error == error.message

    add_membership(org.id, invitee("outsider@example.com").user_id)  # the third seat taken meanwhile
    carol = invitee("carol@example.com")
    error = expect(ErrorCode.SEAT_LIMIT_REACHED, invitations.accept, carol, token_of(carol_invite.url))
    assert error.message == (
        f"This organization's plan changes to Starter on {when}, which allows 3 seats, and all are taken "
        "(3 members). Ask an admin of the organization to keep the current plan (on the billing page) to add more members.")
    assert invitations.find(token_of(carol_invite.url)).status == "pending"


def test_members_joining_while_a_switch_waits_keep_the_retention_coupon_on_both_phases(org, stripe_env):
    """Each join re-sends the phases with the new seats: each phase keeps the discount it named, so the
    flat plan keeps its 20% off now and the per-seat plan has it after the switch."""
    from billing_app.billing import retention

    clock, customer = buy_on_clock(org, stripe_env, plan="business")
    retention.accept(org.admin)
    client = stripe_env.client
    [discount_id] = stripe_subscription(org, stripe_env).discounts
    change_plan(org.admin, period_id("team", "MONTHLY"), preview=False)
    join(org, "carol@example.com"), join(org, "dave@example.com")  # 4 members: the per-seat phase's seats
    sub = stripe_subscription(org, stripe_env)
    assert sub.discounts == [discount_id]
    assert [[d.discount for d in p.discounts] for p in _schedule(org, stripe_env).phases] == [[discount_id], [discount_id]]

    _past_the_period_end(org, stripe_env, clock, customer)
    sub = stripe_subscription(org, stripe_env)
    assert sub.discounts == [discount_id] and sub["items"].data[0].quantity == 4
    renewal = client.v1.invoices.list(params={"subscription": sub.id, "limit": 1}).data[0]
    assert (renewal.subtotal, renewal.total) == (3200, 2560)


def test_a_member_joining_keeps_a_plan_switched_in_the_portal_while_a_switch_to_per_seat_waits(org, stripe_env):
    """Business waits to become Team (per seat); the customer switches to Pro in the billing portal (the
    schedule's running phase still names Business). A member joining sets the Team phase's seats and
    re-sends the running phase as the subscription bills it now (Pro): Stripe applies a running phase at
    once, so Business is never put back."""
    from billing_app.db import session_scope
    from billing_app.models import PlanPeriod

    _clock, customer = buy_on_clock(org, stripe_env, plan="business")  # 2 members
    change_plan(org.admin, period_id("team", "MONTHLY"), preview=False)  # at the period end
    with session_scope() as s:
        pro, team = (s.get(PlanPeriod, period_id(k, "MONTHLY")).stripe_price_id for k in ("pro", "team"))
    sub = stripe_subscription(org, stripe_env)
    stripe_env.client.v1.subscriptions.update(sub.id, params={  # the portal's switch
        "items": [{"id": sub["items"].data[0].id, "price": pro}], "proration_behavior": "create_prorations"})
    sync_customer(customer.id)

    join(org, "carol@example.com")
    join(org, "dave@example.com")  # 4 members
    item = stripe_subscription(org, stripe_env)["items"].data[0]
    assert (item.price.id, item.quantity) == (pro, 1), "a member joining switched the plan back to Business"
    assert _phase_quantities(org, stripe_env) == [(pro, 1), (team, 4)]
