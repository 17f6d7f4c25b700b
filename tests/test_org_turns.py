"""One organization's actions take at most ACTIONS_AT_ONCE threads in a process (billing/turns.py):
the rest wait on the event loop, so one org cannot take every thread."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace

import pytest

from billing_app import limits
from billing_app.auth import invitations
from billing_app.billing import reservations, turns
from billing_app.billing.checkout import CheckoutStarted
from billing_app.billing.seats import seat_claim
from billing_app.errors import AppError, ErrorCode
from tests.aio import run_async
from tests.billing.helpers import make_org, token_of
from tests.pages import run_event, signed_in_page
from tests.teams.helpers import invitee


class Overlap:
    """An action that records how many of its calls ran at the same moment."""

    def __init__(self):
        self.running = self.most = self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, actor, *args):
        with self._lock:
            self.calls += 1
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.2)
        with self._lock:
            self.running -= 1
        return CheckoutStarted("cs_test", "https://checkout.example/cs_test")


@pytest.mark.parametrize("page", ["billing", "members", "pricing"])
def test_one_orgs_page_actions_from_many_tabs_take_at_most_its_turns(db, monkeypatch, page):
    # Background events run side by side, and tabs are cheap: four tabs acting at once (a hostile
    # client sends them all together) take ACTIONS_AT_ONCE threads, not four.
    from billing_app.pages import pricing
    from billing_app.pages.billing import BillingState
    from billing_app.pages.members import MembersState

    make_org("Acme", "admin@acme.example", "member@acme.example")
    make_org("Globex", "admin@globex.example", "member@globex.example")
    acme, globex = Overlap(), Overlap()
    if page == "pricing":
        monkeypatch.setattr(pricing, "start_checkout", lambda actor, *args: (acme if actor.org_name == "Acme" else globex)(actor))
        state_cls = pricing.PricingState
        act = lambda tab, action: run_event(state_cls.subscribe.fn(tab, "1"))
    else:
        state_cls, method = {"billing": (BillingState, BillingState._act), "members": (MembersState, MembersState._run)}[page]
        act = lambda tab, action: method(tab, "portal", action)
    tabs = [(signed_in_page(state_cls, "admin@acme.example"), acme) for _ in range(4)]
    tabs += [(signed_in_page(state_cls, "admin@globex.example"), globex)]

    async def all_at_once():
        await asyncio.gather(*(act(tab, action) for tab, action in tabs))

    run_async(all_at_once())
    assert [tab.error for tab, _ in tabs] == [""] * 5
    assert (acme.calls, globex.calls) == (4, 1)
    assert acme.most <= turns.ACTIONS_AT_ONCE  # four at once before


def _invitee_tabs(monkeypatch, count: int):
    """An admin alone in an org of their own (a free seat left), who invited new@example.com, and
    `count` tabs of that invitee on the invitation page: (the admin, the tabs)."""
    from billing_app.pages.invite import InviteState

    admin = invitee("admin@acme.example", "Admin")
    token = token_of(invitations.invite(admin, email="new@example.com").url)
    invitee("new@example.com")
    monkeypatch.setattr(InviteState, "_token", property(lambda self: token))
    return admin, [signed_in_page(InviteState, "new@example.com") for _ in range(count)]


def _seat_claim_held_elsewhere(org_id: int) -> threading.Event:
    """The org's seat claim, held (by another process changing its seats, say) until the returned event is set."""
    held, release = threading.Event(), threading.Event()

    def other_process():
        with seat_claim(org_id):
            held.set()
            release.wait(10)

    threading.Thread(target=other_process, daemon=True).start()
    assert held.wait(10)
    return release


def test_acceptances_burst_waits_for_the_seat_claim_in_the_inviting_orgs_turns(db, monkeypatch):
    # Six tabs of one invitee accepting at once, while the org's seat claim is held (another
    # process changing its seats): before, six threads waited for the claim.
    from billing_app.pages.invite import InviteState

    admin, tabs = _invitee_tabs(monkeypatch, 6)
    waiting, most, lock = set(), [0], threading.Lock()
    try_claim = reservations._try_claim

    def counting(org_id, claim_id, table=reservations.T):
        got = try_claim(org_id, claim_id, table)
        with lock:
            (waiting.discard if got else waiting.add)(threading.get_ident())
            most[0] = max(most[0], len(waiting))
        return got

    monkeypatch.setattr(reservations, "_try_claim", counting)
    release = _seat_claim_held_elsewhere(admin.org_id)
    waiting.clear()

    async def burst():
        async def release_soon():
            await asyncio.sleep(1.5)
            release.set()

        await asyncio.gather(release_soon(), *(run_event(InviteState.accept.fn(tab)) for tab in tabs))

    run_async(burst())
    assert most[0] <= turns.ACTIONS_AT_ONCE
    assert min(tab.error for tab in tabs) == ""  # one of them joined; the others were told why not


def test_an_invitees_burst_of_acceptances_costs_the_org_none_of_its_stripe_limit(db, monkeypatch):
    # Counted where Stripe is called (a per-seat plan's quantity), not per attempt: eight tabs of
    # one invitee accepting at once used to spend eight of the org's billing requests.
    from billing_app.pages.invite import InviteState
    from billing_app.settings import get_settings

    monkeypatch.setenv("RATE_LIMIT_STRIPE_ORG", "3/minute")
    get_settings.cache_clear()
    admin, tabs = _invitee_tabs(monkeypatch, 8)

    async def all_at_once():
        await asyncio.gather(*(run_event(InviteState.accept.fn(tab)) for tab in tabs))

    try:
        run_async(all_at_once())
        assert min(tab.error for tab in tabs) == ""  # joined once
        for _ in range(3):  # the org's admins still have their whole limit
            limits.hit(limits.STRIPE_ORG, admin.org_id)
    finally:
        get_settings.cache_clear()


def test_a_cancelled_action_keeps_its_turn_until_its_thread_ends(monkeypatch):
    monkeypatch.setattr(turns, "WAIT_SECONDS", 0.3)
    monkeypatch.setattr(turns, "ACTIONS_AT_ONCE", 1)
    running, release = threading.Event(), threading.Event()

    def work():
        running.set()
        release.wait(10)

    async def scenario():
        action = asyncio.create_task(turns.in_turn(7, work))
        await asyncio.to_thread(running.wait, 10)
        action.cancel()
        await asyncio.sleep(0.05)
        with pytest.raises(AppError):  # its thread still runs: the turn is still taken
            async with turns.org_turn(7):
                pass
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await action
        async with turns.org_turn(7):  # and handed on once it ended
            pass

    run_async(scenario())


def test_a_turn_that_stays_taken_gives_its_busy_answer_and_turns_are_forgotten(monkeypatch):
    monkeypatch.setattr(turns, "WAIT_SECONDS", 0.3)
    monkeypatch.setattr(turns, "ACTIONS_AT_ONCE", 1)

    async def scenario():
        async with turns.org_turn(7):
            with pytest.raises(AppError) as checkout:
                async with turns.org_turn(7, reservations.purchase_busy()):
                    pass
            with pytest.raises(AppError) as other:
                async with turns.org_turn(7):
                    pass
            async with turns.org_turn(8):  # another org's turn is its own
                pass
        return checkout.value, other.value, dict(turns._turns[asyncio.get_running_loop()])

    checkout, other, left = run_async(scenario())
    assert checkout.code == ErrorCode.CHECKOUT_IN_PROGRESS and "try again" in checkout.message
    assert other.code == ErrorCode.RATE_LIMITED and other.retry_after == 5
    assert left == {}  # no lock kept for an org once nobody holds or awaits its turn


def test_a_role_change_waits_for_the_seat_claim_in_a_turn_with_its_tab_free(db, monkeypatch):
    # It waits for the claim like a removal (up to 30 s): before, it held the tab's state all along
    # (a live refresh or any other event of that tab waited behind it) in a thread outside the org's turns.
    from billing_app.pages.members import MembersState

    org = make_org("Acme", "admin@acme.example", "member@acme.example")
    tab = signed_in_page(MembersState, "admin@acme.example")
    state_held, took_turn, in_turn = [0], [], turns.in_turn

    async def enter(self):
        state_held[0] += 1
        return self

    async def leave(self, *exc):
        state_held[0] -= 1

    def counting_turn(org_id, fn, *args):
        took_turn.append(org_id)
        return in_turn(org_id, fn, *args)

    monkeypatch.setattr(MembersState, "__aenter__", enter)
    monkeypatch.setattr(MembersState, "__aexit__", leave)
    monkeypatch.setattr(turns, "in_turn", counting_turn)
    release = _seat_claim_held_elsewhere(org.id)

    async def scenario():
        change = asyncio.create_task(run_event(MembersState.change_role.fn(tab, str(org.member.user_id), "admin")))
        await asyncio.sleep(1)
        waiting_with_state_held = state_held[0]
        release.set()
        await change
        return waiting_with_state_held

    assert run_async(scenario()) == 0
    assert took_turn == [org.id]
    assert (tab.error, tab.message) == ("", "member@acme.example is now Admin.")  # in words, as the page shows roles
    assert {m.email: m.role for m in tab.members}["member@acme.example"] == "admin"
    assert {m.email: m.role_label for m in tab.members}["member@acme.example"] == "Admin"


@pytest.mark.parametrize(("role", "refusal"), [("member", "at least one admin"), ("owner", "Unknown member or role.")])
def test_a_refused_role_change_says_why_and_puts_the_role_shown_back(db, role, refusal):
    from billing_app.pages.members import MembersState

    org = make_org("Acme", "admin@acme.example", "member@acme.example")
    tab = signed_in_page(MembersState, "admin@acme.example")
    run_async(MembersState.load.fn(tab))
    tab.members = [replace(m, role=role) for m in tab.members]  # what the select showed once picked
    run_async(run_event(MembersState.change_role.fn(tab, str(org.admin.user_id), role)))
    assert refusal in tab.error and tab.busy == ""
    assert {m.email: m.role for m in tab.members} == {"admin@acme.example": "admin", "member@acme.example": "member"}
