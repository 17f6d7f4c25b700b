"""Seats: caps on flat plans and the free tier, per-seat quantities at Stripe, concurrency, failures."""

from __future__ import annotations

import threading

import pytest
from sqlmodel import select

from billing_app.auth import invitations, members
from billing_app.billing import seat_billing
from billing_app.billing.checkout import start_checkout
from billing_app.billing.subscriptions import change_plan
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import Invitation, Membership, Role
from tests.api.helpers import add_membership
from tests.billing.helpers import buy, expect, period_id
from tests.teams.helpers import (
    buy_team,
    invitation_row,
    invitee,
    join,
    member_ids,
    mirror_quantity,
    quantity_at_stripe,
    stripe_subscription,
    token_of,
)

# --- caps: the free tier and flat plans ---------------------------------------------------------------------


def test_the_free_tier_cap_refuses_an_invitation_and_names_the_plan_that_lifts_it(org):
    error = expect(ErrorCode.SEAT_LIMIT_REACHED, invitations.invite, org.admin, email="carol@example.com")
    assert "Free plan allows 2 seats" in error.message and "Starter plan lifts it: up to 3 seats" in error.message
    with session_scope() as s:
        assert [i.email for i in s.exec(select(Invitation)).all()] == ["member@acme.example"]  # make_org's, accepted


def test_pending_invitations_reserve_seats_on_a_flat_plan(org, stripe_env):
    buy(org, "starter", sandbox=stripe_env)  # 3 seats, 2 members
    carol = invitations.invite(org.admin, email="carol@example.com")
    error = expect(ErrorCode.SEAT_LIMIT_REACHED, invitations.invite, org.admin, email="dave@example.com")
    assert "Starter plan allows 3 seats" in error.message and "2 members and 1 pending invitation)" in error.message
    assert "Pro plan lifts it: up to 15 seats" in error.message
    invitations.revoke(org.admin, carol.invitation.id)  # the reserved seat is free again
    dave = invitations.invite(org.admin, email="dave@example.com")
    assert dave.cost is None  # flat plans are not billed per seat
    invitations.accept(invitee("dave@example.com"), token_of(dave.url))
    assert len(member_ids(org.id)) == 3


def test_accepting_is_refused_when_the_members_fill_the_cap(org, stripe_env):
    buy(org, "starter", sandbox=stripe_env)
    carol_invite = invitations.invite(org.admin, email="carol@example.com")
    outsider = invitee("outsider@example.com")
    add_membership(org.id, outsider.user_id)  # the third seat taken meanwhile (e.g. before this rule existed)
    carol = invitee("carol@example.com")
    error = expect(ErrorCode.SEAT_LIMIT_REACHED, invitations.accept, carol, token_of(carol_invite.url))
    assert "Starter plan allows 3 seats" in error.message and "Pro" in error.message
    assert carol.user_id not in member_ids(org.id)
    assert invitations.find(token_of(carol_invite.url)).status == "pending"


def test_a_plan_change_or_purchase_below_the_members_is_refused(org, stripe_env):
    for n in range(2):
        add_membership(org.id, invitee(f"extra{n}@example.com").user_id)  # 4 members, past the free tier's 2
    expect(ErrorCode.SEAT_LIMIT_EXCEEDED, start_checkout, org.admin, period_id("starter", "MONTHLY"))
    buy(org, "pro", sandbox=stripe_env)
    for preview in (True, False):
        error = expect(ErrorCode.SEAT_LIMIT_EXCEEDED, change_plan, org.admin, period_id("starter", "MONTHLY"), preview=preview)
        assert "Starter plan allows 3 seats" in error.message and "4 members" in error.message
    assert stripe_subscription(org, stripe_env).schedule is None  # nothing scheduled
    members.remove_member(org.admin, member_ids(org.id)[-1])
    assert change_plan(org.admin, period_id("starter", "MONTHLY"), preview=False).effective_at is not None


# --- per-seat: the Stripe quantity follows the members ---------------------------------------------------------


def test_per_seat_quantity_follows_accepts_and_removals_at_stripe(org, stripe_env):
    buy_team(org, stripe_env)
    assert quantity_at_stripe(org, stripe_env) == mirror_quantity(org) == 3  # 2 members, min_seats 3

    carol_invite = invitations.invite(org.admin, email="carol@example.com")
    assert carol_invite.cost.seats_added == 0 and "unused paid seat" in carol_invite.cost.message
    carol = invitee("carol@example.com")
    invitations.accept(carol, token_of(carol_invite.url))
    assert quantity_at_stripe(org, stripe_env) == 3

    latest = stripe_subscription(org, stripe_env).latest_invoice
    dave_invite = invitations.invite(org.admin, email="dave@example.com")
    cost = dave_invite.cost
    assert (cost.seats_added, cost.amount, cost.interval) == (1, 800, "month")
    assert cost.message.startswith("adds $8.00 a month; $") and "now, prorated" in cost.message
    assert 0 < cost.prorated <= 800
    dave = invitee("dave@example.com")
    invitations.accept(dave, token_of(dave_invite.url))
    assert quantity_at_stripe(org, stripe_env) == mirror_quantity(org) == 4
    # create_prorations (the default): the proration waits for the next invoice, no invoice per change.
    assert stripe_subscription(org, stripe_env).latest_invoice == latest
    pending = stripe_env.client.v1.invoice_items.list(params={"customer": stripe_subscription(org, stripe_env).customer, "pending": True}).data
    assert sum(ii.amount for ii in pending) == cost.prorated

    members.remove_member(org.admin, dave.user_id)
    assert quantity_at_stripe(org, stripe_env) == mirror_quantity(org) == 3
    members.remove_member(org.admin, carol.user_id)
    assert quantity_at_stripe(org, stripe_env) == 3  # never below min_seats


def test_checkout_charges_the_chosen_seats(org, stripe_env):
    expect(ErrorCode.VALIDATION_ERROR, start_checkout, org.admin, period_id("team", "MONTHLY"), 2)  # below min_seats
    expect(ErrorCode.VALIDATION_ERROR, start_checkout, org.admin, period_id("starter", "MONTHLY"), 3)  # not per seat
    add_membership(org.id, invitee("c@example.com").user_id)
    add_membership(org.id, invitee("d@example.com").user_id)
    expect(ErrorCode.SEATS_BELOW_MEMBERS, start_checkout, org.admin, period_id("team", "MONTHLY"), 3)  # 4 members
    started = start_checkout(org.admin, period_id("team", "MONTHLY"), 5)
    item = stripe_env.client.v1.checkout.sessions.line_items.list(started.session_id).data[0]
    assert (item.quantity, item.amount_total, item.adjustable_quantity.minimum) == (5, 4000, 4)
    assert start_checkout(org.admin, period_id("team", "MONTHLY"), 5).session_id == started.session_id  # a double click
    other = start_checkout(org.admin, period_id("team", "MONTHLY"), 6)
    assert other.session_id != started.session_id
    stripe_env.complete_checkout(other.session_id, quantity="7")  # the buyer added one more on the page
    from billing_app.billing.checkout import checkout_status

    checkout_status(org.admin, other.session_id)
    assert quantity_at_stripe(org, stripe_env) == mirror_quantity(org) == 7


@pytest.mark.parametrize("people", [4])
def test_concurrent_accepts_leave_the_right_quantity(org, stripe_env, people):
    buy_team(org, stripe_env)
    invited = [(invitee(f"p{n}@example.com"), token_of(invitations.invite(org.admin, email=f"p{n}@example.com").url))
               for n in range(people)]
    barrier = threading.Barrier(people)
    errors = []

    def accept(person, token):
        barrier.wait()
        try:
            invitations.accept(person, token)
        except Exception as error:  # noqa: BLE001 - collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=accept, args=pair) for pair in invited]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(member_ids(org.id)) == 2 + people
    assert quantity_at_stripe(org, stripe_env) == mirror_quantity(org) == 2 + people


def test_a_declined_seat_charge_adds_nobody_and_the_admins_see_why(org, stripe_env, monkeypatch):
    monkeypatch.setenv("SEAT_PRORATION", "always_invoice")
    from billing_app.settings import get_settings

    get_settings.cache_clear()
    buy_team(org, stripe_env, seats=3)
    join(org, "carol@example.com")  # the third (paid) seat: no charge
    sub = stripe_subscription(org, stripe_env)
    failing = stripe_env.client.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_chargeCustomerFail"}})
    stripe_env.client.v1.payment_methods.attach(failing.id, params={"customer": sub.customer})
    stripe_env.client.v1.subscriptions.update(sub.id, params={"default_payment_method": failing.id})

    dave_invite = invitations.invite(org.admin, email="dave@example.com")
    assert "charged when the invitation is accepted" in dave_invite.cost.message
    dave = invitee("dave@example.com")
    error = expect(ErrorCode.STRIPE_SEAT_UPDATE_FAILED, invitations.accept, dave, token_of(dave_invite.url))
    assert "Nothing was changed" in error.message
    assert dave.user_id not in member_ids(org.id)
    assert quantity_at_stripe(org, stripe_env) == 3
    assert invitations.find(token_of(dave_invite.url)).status == "pending"
    note = invitation_row(dave_invite.invitation.id).last_error
    assert "dave@example.com could not join" in note and "declined" in note
    with session_scope() as s:
        assert [row.last_error for row in invitations.list_invitations(s, org.admin)] == [note]  # on the members page
    get_settings.cache_clear()


def test_a_database_failure_after_stripe_agreed_puts_the_quantity_back(org, stripe_env, monkeypatch):
    buy_team(org, stripe_env)
    join(org, "carol@example.com")
    dave_invite = invitations.invite(org.admin, email="dave@example.com")
    dave = invitee("dave@example.com")

    def broken(*_args, **_kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(invitations, "_mark", broken)
    with pytest.raises(RuntimeError):
        invitations.accept(dave, token_of(dave_invite.url))
    assert dave.user_id not in member_ids(org.id)
    assert quantity_at_stripe(org, stripe_env) == mirror_quantity(org) == 3


# --- buying seats: change_seats (POST /api/subscriptions/seats) --------------------------------------------------


def test_admins_buy_seats_never_below_the_members(org, stripe_env):
    expect(ErrorCode.SUBSCRIPTION_NOT_FOUND, seat_billing.change_seats, org.admin, 5, preview=True)
    buy(org, "starter", sandbox=stripe_env)
    expect(ErrorCode.NOT_PER_SEAT, seat_billing.change_seats, org.admin, 5, preview=True)


def test_seat_changes_preview_then_apply(org, stripe_env):
    buy_team(org, stripe_env)
    join(org, "carol@example.com")
    expect(ErrorCode.FORBIDDEN, seat_billing.change_seats, org.member, 5, preview=True)
    expect(ErrorCode.VALIDATION_ERROR, seat_billing.change_seats, org.admin, 2, preview=True)  # min_seats
    add_membership(org.id, invitee("d@example.com").user_id)
    expect(ErrorCode.SEATS_BELOW_MEMBERS, seat_billing.change_seats, org.admin, 3, preview=False)  # 4 members

    preview = seat_billing.change_seats(org.admin, 6, preview=True)
    assert (preview.from_seats, preview.to_seats, preview.applied, preview.recurring_amount) == (3, 6, False, 4800)
    assert 0 < preview.prorated_amount <= 3 * 800 and preview.amount_due_now == 0  # create_prorations: next invoice
    assert quantity_at_stripe(org, stripe_env) == 3
    done = seat_billing.change_seats(org.admin, 6, preview=False)
    assert done.applied and quantity_at_stripe(org, stripe_env) == mirror_quantity(org) == 6
    # Spare paid seats: the next invitation costs nothing more.
    assert invitations.invite(org.admin, email="e@example.com").cost.seats_added == 0


def test_an_applied_seat_change_reports_the_proration_it_charged(org, stripe_env, monkeypatch):
    """Another tab's seat change lands between this one's pricing and its turn: this one is priced
    again from the seats Stripe has then, so it reports what it charged (5 -> 6, not 3 -> 6)."""
    buy_team(org, stripe_env)  # 3 seats
    c, customer = stripe_env.client, stripe_subscription(org, stripe_env).customer

    def pending() -> int:
        return sum(ii.amount for ii in c.v1.invoice_items.list(params={"customer": customer, "pending": True, "limit": 100}).data)

    real, before_ours = seat_billing._seat_prices, []

    def then_another_tab_buys_two(per_seat, quantity, per_period_of):
        prices = real(per_seat, quantity, per_period_of)
        if not before_ours:
            before_ours.append(None)  # the other tab's own pricing goes through as usual
            seat_billing.change_seats(org.admin, 5, preview=False)
            before_ours[0] = pending()
        return prices

    monkeypatch.setattr(seat_billing, "_seat_prices", then_another_tab_buys_two)
    done = seat_billing.change_seats(org.admin, 6, preview=False)
    assert (done.from_seats, done.to_seats, done.applied) == (5, 6, True)
    charged = pending() - before_ours[0]
    assert 0 < charged <= 800 and done.prorated_amount == charged  # one seat, not three
    assert done.recurring_amount == 6 * 800
    assert quantity_at_stripe(org, stripe_env) == mirror_quantity(org) == 6


def test_billed_at_once_the_amount_due_now_includes_what_was_pending(org, stripe_env, monkeypatch):
    """A seat change made with create_prorations waits for the next invoice; switched to always_invoice,
    the next change's invoice sweeps that pending proration in: amount_due_now says so, while the
    prorated amount stays this change's own."""
    from billing_app.settings import get_settings

    buy_team(org, stripe_env)
    seat_billing.change_seats(org.admin, 4, preview=False)  # create_prorations: left pending
    c, sub = stripe_env.client, stripe_subscription(org, stripe_env)
    pending = sum(ii.amount for ii in c.v1.invoice_items.list(params={"customer": sub.customer, "pending": True}).data)
    monkeypatch.setenv("SEAT_PRORATION", "always_invoice")
    get_settings.cache_clear()
    try:
        for spare in ("dave@example.com", "erin@example.com"):  # the 3rd and 4th seats are paid for
            assert invitations.invite(org.admin, email=spare).cost.seats_added == 0
        message = invitations.invite(org.admin, email="frank@example.com").cost.message
        assert message == ("adds $8.00 a month; $8.00 now, prorated ($16.00 charged when the invitation is accepted, "
                           "with the pending charges and credit)")
        preview = seat_billing.change_seats(org.admin, 5, preview=True)
        assert preview.prorated_amount == pending > 0  # one seat each, at the same point of the period
        assert preview.amount_due_now == pending + preview.prorated_amount
        seat_billing.change_seats(org.admin, 5, preview=False)
        charged = c.v1.invoices.retrieve(c.v1.subscriptions.retrieve(sub.id).latest_invoice)
        assert charged.amount_due == preview.amount_due_now
    finally:
        get_settings.cache_clear()


def test_the_seat_claim_serialises_and_a_stuck_one_gives_a_clear_conflict(org, stripe_env, monkeypatch):
    from datetime import timedelta

    from billing_app.billing import reservations
    from billing_app.models import SeatClaim, utcnow

    monkeypatch.setattr(reservations, "WAIT_SECONDS", 0.3)
    with session_scope() as s:
        s.merge(SeatClaim(org_id=org.id, claim_id="busy", claimed_until=utcnow() + timedelta(minutes=1)))
    error = expect(ErrorCode.SEAT_CHANGE_IN_PROGRESS, members.remove_member, org.admin, org.member.user_id)
    assert "try again" in error.message
    assert org.member.user_id in member_ids(org.id)
    with session_scope() as s:
        s.get(SeatClaim, org.id).claimed_until = utcnow() - timedelta(seconds=1)  # the holder's lease lapsed
    members.remove_member(org.admin, org.member.user_id)


def test_roles_are_kept_on_joining(org, stripe_env):
    buy(org, "pro", sandbox=stripe_env)
    admin2 = join(org, "second-admin@example.com", role="admin")
    with session_scope() as s:
        role = s.exec(select(Membership.role).where(Membership.org_id == org.id, Membership.user_id == admin2.user_id)).one()
    assert role == Role.ADMIN.value
    with pytest.raises(AppError):
        invitations.invite(org.member, email="x@example.com")


def test_plan_changes_between_flat_and_per_seat_carry_the_seats(org, stripe_env):
    buy(org, "starter", sandbox=stripe_env)
    join(org, "carol@example.com")  # 3 members, Starter's cap
    change = change_plan(org.admin, period_id("team", "MONTHLY"), preview=False)  # 3 seats at $8.00 > $9.00: an upgrade
    assert change.upgrade and quantity_at_stripe(org, stripe_env) == mirror_quantity(org) == 3
    join(org, "dave@example.com")
    assert quantity_at_stripe(org, stripe_env) == 4
    error = expect(ErrorCode.SEAT_LIMIT_EXCEEDED, change_plan, org.admin, period_id("starter", "MONTHLY"), preview=True)
    assert "4 members" in error.message
    # Pro (15 seats, $29.00 flat) is worth less than 4 seats ($32.00): a downgrade at the period end, to one item.
    down = change_plan(org.admin, period_id("pro", "MONTHLY"), preview=False)
    assert not down.upgrade and down.effective_at is not None
    schedule = stripe_env.client.v1.subscription_schedules.retrieve(stripe_subscription(org, stripe_env).schedule)
    assert [[i.quantity for i in phase.items] for phase in schedule.phases] == [[4], [1]]
