"""Seat changes racing a plan change: the quantity is decided on Stripe's plan, never on a mirror
that has not caught up (another tab's change, a Customer Portal switch whose webhook is not
processed yet). A flat plan is never billed more than once; a per-seat plan never adds a member
unbilled; a flat plan's seat cap still holds."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlmodel import select

from billing_app.auth import invitations, members
from billing_app.billing import seat_billing, subscriptions
from billing_app.billing.subscriptions import change_plan
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import (
    OrgSubscription,
    PlanPeriod,
    SeatClaim,
    utcnow,
)
from tests.api.helpers import add_membership
from tests.billing.helpers import buy, expect, period_id
from tests.teams.helpers import buy_team, invitee, join, member_ids, mirror_quantity, quantity_at_stripe, stripe_subscription, token_of


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
    real, raced = seat_billing._seat_prices, []

    def then_another_tab_switches_plan(per_seat, quantity, per_period_of):
        result = real(per_seat, quantity, per_period_of)
        if not raced:  # after change_seats decided "per seat", before it takes the seat claim
            raced.append(change_plan(org.admin, period_id("business", "MONTHLY"), preview=False))  # $99 flat, at once
        return result

    monkeypatch.setattr(seat_billing, "_seat_prices", then_another_tab_switches_plan)
    error = expect(ErrorCode.SEAT_CHANGE_IN_PROGRESS, seat_billing.change_seats, org.admin, 10, preview=False)
    assert "nothing was changed" in error.message and "try again" in error.message
    assert billed_at_stripe(org, stripe_env) == (price_of("business"), 1)
    # Trying again decides on the plan the organization is on now.
    expect(ErrorCode.NOT_PER_SEAT, seat_billing.change_seats, org.admin, 10, preview=False)


def test_accepting_an_invitation_after_a_portal_switch_to_a_flat_plan_does_not_multiply_it(org, stripe_env):
    buy_team(org, stripe_env)
    join(org, "carol@example.com")  # 3 members: Team's 3 seats
    dave_invite = invitations.invite(org.admin, email="dave@example.com")
    portal_switch(org, stripe_env, "business")
    dave = invitee("dave@example.com")
    invitations.accept(dave, token_of(dave_invite.url))  # Business has no seat cap
    assert dave.user_id in member_ids(org.id)
    assert billed_at_stripe(org, stripe_env) == (price_of("business"), 1)
    assert mirror_price(org) == price_of("business")  # the mirror caught up on the way


def test_accepting_after_a_portal_switch_to_a_capped_flat_plan_keeps_its_cap(org, stripe_env):
    buy_team(org, stripe_env)
    join(org, "carol@example.com")  # 3 members
    dave_invite = invitations.invite(org.admin, email="dave@example.com")  # Team: no cap
    portal_switch(org, stripe_env, "starter")  # up to 3 seats
    dave = invitee("dave@example.com")
    error = expect(ErrorCode.SEAT_LIMIT_REACHED, invitations.accept, dave, token_of(dave_invite.url))
    assert "Starter plan allows 3 seats" in error.message
    assert dave.user_id not in member_ids(org.id)
    assert billed_at_stripe(org, stripe_env) == (price_of("starter"), 1)
    assert invitations.find(token_of(dave_invite.url)).status == "pending"


def test_accepting_an_invitation_after_a_portal_switch_to_a_per_seat_plan_charges_the_seat(org, stripe_env):
    buy(org, "pro", sandbox=stripe_env)  # flat, up to 15 seats
    add_membership(org.id, invitee("carol@example.com").user_id)  # 3 members
    dave_invite = invitations.invite(org.admin, email="dave@example.com")
    assert dave_invite.cost is None  # the mirror still says Pro
    portal_switch(org, stripe_env, "team", quantity=3)
    dave = invitee("dave@example.com")
    invitations.accept(dave, token_of(dave_invite.url))
    assert dave.user_id in member_ids(org.id)
    assert billed_at_stripe(org, stripe_env) == (price_of("team"), 4)  # the fourth member's seat is billed
    assert mirror_quantity(org) == 4


def test_removing_a_member_after_a_portal_switch_to_a_flat_plan_does_not_multiply_it(org, stripe_env):
    buy_team(org, stripe_env)
    carol = join(org, "carol@example.com")
    portal_switch(org, stripe_env, "business")
    members.remove_member(org.admin, carol.user_id)  # decided on the plan Stripe bills now
    assert carol.user_id not in member_ids(org.id)
    assert billed_at_stripe(org, stripe_env) == (price_of("business"), 1)
    assert mirror_price(org) == price_of("business")  # the mirror caught up on the way


def test_removing_a_member_after_a_portal_switch_to_a_per_seat_plan_lowers_the_seats(org, stripe_env):
    buy(org, "pro", sandbox=stripe_env)  # flat
    carol, dave, erin = (invitee(f"{name}@example.com") for name in ("carol", "dave", "erin"))
    for user in (carol, dave, erin):
        add_membership(org.id, user.user_id)  # 5 members
    portal_switch(org, stripe_env, "team", quantity=5)
    members.remove_member(org.admin, erin.user_id)
    assert erin.user_id not in member_ids(org.id)
    assert billed_at_stripe(org, stripe_env) == (price_of("team"), 4)  # not paying for the seat left behind
    assert mirror_quantity(org) == 4


def test_a_lapsed_seat_claim_never_lets_two_acceptances_share_one_seat(org, stripe_env, monkeypatch):
    """Dave's acceptance raises the quantity at Stripe so slowly that its seat claim lapses; Erin's
    acceptance takes the claim meanwhile and joins on the seat Dave's call bought. Dave's write then
    finds the claim no longer his: refused (409), nobody added for him, and the quantity covers the
    members as they are."""
    import threading
    from datetime import timedelta

    from billing_app.models import SeatClaim, utcnow

    buy_team(org, stripe_env)
    join(org, "carol@example.com")  # 3 members: Team's 3 seats
    dave_invite = invitations.invite(org.admin, email="dave@example.com")
    erin_invite = invitations.invite(org.admin, email="erin@example.com")
    dave, erin = invitee("dave@example.com"), invitee("erin@example.com")
    real_update, erin_done = seat_billing._update, []

    def slow_then_erin_comes(*args):
        real_update(*args)
        monkeypatch.setattr(seat_billing, "_update", real_update)
        with session_scope() as s:  # the 120 s are up before Stripe answered
            s.get(SeatClaim, org.id).claimed_until = utcnow() - timedelta(seconds=1)
        other = threading.Thread(target=lambda: erin_done.append(invitations.accept(erin, token_of(erin_invite.url))))
        other.start()
        other.join(60)

    monkeypatch.setattr(seat_billing, "_update", slow_then_erin_comes)
    error = expect(ErrorCode.SEAT_CHANGE_IN_PROGRESS, invitations.accept, dave, token_of(dave_invite.url))
    assert "try again" in error.message
    assert erin_done == [org.id]
    assert dave.user_id not in member_ids(org.id) and erin.user_id in member_ids(org.id)
    assert invitations.find(token_of(dave_invite.url)).status == "pending"
    assert billed_at_stripe(org, stripe_env) == (price_of("team"), 4) and mirror_quantity(org) == 4  # 4 members

    invitations.accept(dave, token_of(dave_invite.url))  # tried again, Dave gets a seat of his own
    assert len(member_ids(org.id)) == 5 and billed_at_stripe(org, stripe_env) == (price_of("team"), 5)


# --- a seat claim lapsing during a Stripe call (CLAIM_SECONDS): another request takes it meanwhile ---------


def lapse_claim(org_id):
    """The 120 s are up before Stripe answered: the claim is free for the next request."""
    with session_scope() as s:
        s.get(SeatClaim, org_id).claimed_until = utcnow() - timedelta(seconds=1)


def in_thread(fn, out: list):
    """Another request, run to its end meanwhile; its answer (or refusal) goes into `out`."""
    def run():
        try:
            out.append(fn())
        except AppError as error:
            out.append(error)
    t = threading.Thread(target=run)
    t.start()
    t.join(120)


def test_two_removals_a_lapsed_one_undone_leaves_no_seat_billed_for_nobody(org, stripe_env, monkeypatch):
    """5 members on 5 seats. Removing Carol lowers Stripe to 4; her claim lapses; removing Dave takes
    the claim, sees 4 seats (= 4 members left), changes nothing, deletes Dave. Carol's removal is then
    refused (claim gone); its undo finds Stripe still at 4, which it did not leave it at for nobody:
    it must not put 5 back over what Dave's removal decided."""
    buy_team(org, stripe_env)
    carol, dave, _erin = join(org, "carol@example.com"), join(org, "dave@example.com"), join(org, "erin@example.com")
    assert quantity_at_stripe(org, stripe_env) == 5
    real_update, other = seat_billing._update, []

    def slow_then_dave_removed(*args):
        real_update(*args)
        monkeypatch.setattr(seat_billing, "_update", real_update)
        lapse_claim(org.id)
        in_thread(lambda: members.remove_member(org.admin, dave.user_id), other)

    monkeypatch.setattr(seat_billing, "_update", slow_then_dave_removed)
    expect(ErrorCode.SEAT_CHANGE_IN_PROGRESS, members.remove_member, org.admin, carol.user_id)
    assert not isinstance(other[0], AppError), other
    assert carol.user_id in member_ids(org.id) and dave.user_id not in member_ids(org.id)
    assert quantity_at_stripe(org, stripe_env) == 4 and mirror_quantity(org) == 4  # 4 members: 4 seats


def test_a_lapsed_acceptance_undone_keeps_the_seats_an_admin_bought_meanwhile(org, stripe_env, monkeypatch):
    """Dave's acceptance raises 3 -> 4; its claim lapses; the admin buys 10 seats (4 -> 10, applied).
    Dave's write is refused, and its undo finds 10 at Stripe, not the 4 it set: the purchase stays."""
    buy_team(org, stripe_env)
    join(org, "carol@example.com")  # 3 members, 3 seats
    dave_invite = invitations.invite(org.admin, email="dave@example.com")
    dave = invitee("dave@example.com")
    real_update, bought = seat_billing._update, []

    def slow_then_admin_buys(*args):
        real_update(*args)
        monkeypatch.setattr(seat_billing, "_update", real_update)
        lapse_claim(org.id)
        in_thread(lambda: seat_billing.change_seats(org.admin, 10, preview=False), bought)

    monkeypatch.setattr(seat_billing, "_update", slow_then_admin_buys)
    expect(ErrorCode.SEAT_CHANGE_IN_PROGRESS, invitations.accept, dave, token_of(dave_invite.url))
    assert bought[0].applied and bought[0].to_seats == 10, bought
    assert dave.user_id not in member_ids(org.id)
    assert quantity_at_stripe(org, stripe_env) == 10 and mirror_quantity(org) == 10  # as the admin was told


def test_seats_given_back_with_a_lapsed_claim_never_go_below_a_member_who_joined_meanwhile(org, stripe_env, monkeypatch):
    """The admin gives back 2 of 5 seats with 3 members; the claim lapses before Stripe answers and Dave
    accepts meanwhile (5 seats: no Stripe change) and joins. The admin's change, landing at 3 seats
    for 4 members, is refused (409) and put back: nothing changed, Dave billed."""
    buy_team(org, stripe_env, seats=5)
    join(org, "carol@example.com")  # 3 members, 5 seats
    dave_invite = invitations.invite(org.admin, email="dave@example.com")
    dave = invitee("dave@example.com")
    real_update, joined = seat_billing._update, []

    def claim_lapses_before_it_lands(*args):
        monkeypatch.setattr(seat_billing, "_update", real_update)
        lapse_claim(org.id)
        in_thread(lambda: invitations.accept(dave, token_of(dave_invite.url)), joined)
        real_update(*args)

    monkeypatch.setattr(seat_billing, "_update", claim_lapses_before_it_lands)
    error = expect(ErrorCode.SEAT_CHANGE_IN_PROGRESS, seat_billing.change_seats, org.admin, 3, preview=False)
    assert "try again" in error.message
    assert joined == [org.id] and len(member_ids(org.id)) == 4
    assert quantity_at_stripe(org, stripe_env) == 5 and mirror_quantity(org) == 5  # as it was: nothing changed


def test_a_switch_to_per_seat_whose_claim_lapsed_before_its_write_is_refused_and_bills_every_member_when_retried(
        org, stripe_env, monkeypatch):
    """Pro (flat) with 4 members -> Team now (4 x $8 >= $29: an upgrade at 4 seats, counted before its
    Stripe reads). The claim lapses during those reads; Eve accepts on Pro meanwhile (no Stripe change)
    and joins. The claim renewed right before the write finds it taken: refused, nothing changed (not
    Team at 4 seats for 5 members); tried again, Team bills all 5."""
    buy(org, "pro", sandbox=stripe_env)
    for name in ("carol", "dave"):
        add_membership(org.id, invitee(f"{name}@example.com").user_id)  # 4 members
    eve_invite = invitations.invite(org.admin, email="eve@example.com")
    eve = invitee("eve@example.com")
    real_fresh, joined = subscriptions._fresh, []

    def slow_reads(*args):
        fresh = real_fresh(*args)
        monkeypatch.setattr(subscriptions, "_fresh", real_fresh)
        lapse_claim(org.id)
        in_thread(lambda: invitations.accept(eve, token_of(eve_invite.url)), joined)
        return fresh

    monkeypatch.setattr(subscriptions, "_fresh", slow_reads)
    expect(ErrorCode.SEAT_CHANGE_IN_PROGRESS, change_plan, org.admin, period_id("team", "MONTHLY"), preview=False)
    assert joined == [org.id] and len(member_ids(org.id)) == 5
    assert billed_at_stripe(org, stripe_env) == (price_of("pro"), 1)  # still Pro: nothing changed

    change = change_plan(org.admin, period_id("team", "MONTHLY"), preview=False)
    assert change.upgrade and change.applied
    assert billed_at_stripe(org, stripe_env) == (price_of("team"), 5) and mirror_quantity(org) == 5


def test_an_acceptance_whose_database_fails_after_stripe_agreed_puts_the_seat_back(org, stripe_env, monkeypatch):
    """3 members on Team's 3 seats. Dave's acceptance raises Stripe to 4, then the database connection
    drops (the write adding Dave never commits). The put-back must not need the database it lost: Stripe
    goes back to 3, not 4 seats billed for 3 members."""
    from sqlalchemy import event
    from sqlalchemy.exc import OperationalError

    from billing_app.db import get_engine

    buy_team(org, stripe_env)
    join(org, "carol@example.com")
    dave_invite = invitations.invite(org.admin, email="dave@example.com")
    dave = invitee("dave@example.com")
    down = {"on": False}

    def database_down(*_args, **_kwargs):
        if down["on"]:
            raise OperationalError("SELECT", {}, Exception("server closed the connection unexpectedly"))

    real_update = seat_billing._update

    def update_then_database_down(*args):
        real_update(*args)
        down["on"] = True

    event.listen(get_engine(), "before_cursor_execute", database_down)
    monkeypatch.setattr(seat_billing, "_update", update_then_database_down)
    try:
        with pytest.raises(OperationalError):
            invitations.accept(dave, token_of(dave_invite.url))
    finally:
        down["on"] = False
        event.remove(get_engine(), "before_cursor_execute", database_down)
    assert len(member_ids(org.id)) == 3  # Dave never joined
    assert quantity_at_stripe(org, stripe_env) == 3
