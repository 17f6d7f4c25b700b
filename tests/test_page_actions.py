"""How a page's action ends, as the user sees it: the org's other open pages refresh after a change,
a second click while the first runs is ignored, and a session gone sends the tab to login."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from reflex_base.event import Event
from reflex_base.event.context import EventContext
from sqlmodel import select, update

from billing_app import live, routes
from billing_app.db import session_scope
from billing_app.models import AuthSession, User, utcnow
from tests.aio import run_async
from tests.billing.helpers import buy, period_id, subscription
from tests.pages import run_event, signed_in_page


@pytest.fixture
def pushes(monkeypatch) -> list[int]:
    """The orgs whose open pages were told to refresh (`live.notify`), in order."""
    told: list[int] = []

    async def notify(org_id: int) -> int:
        told.append(org_id)
        return 0

    monkeypatch.setattr(live, "notify", notify)
    return told


async def _in_a_backend(event, sent: list):
    """`run_event`, with the event context a backend gives it: what the action sends the tab goes to `sent`."""
    async def emit(_token, *events):
        sent.extend(events)

    with EventContext(token="tab", state_manager=None, enqueue_impl=None, emit_event_impl=emit):
        return await run_event(event)


def _expire_sessions(email: str) -> None:
    with session_scope() as s:
        user_id = s.exec(select(User.id).where(User.email == email)).one()
        s.execute(update(AuthSession).where(AuthSession.user_id == user_id).values(expires_at=utcnow() - timedelta(minutes=1)))


# --- A: a change made from a page reaches the org's other pages ---------------------------------------

def test_a_cancellation_from_the_billing_page_refreshes_the_orgs_other_pages(org, stripe_env, pushes):
    # The action syncs the mirror itself, so the webhook's sync finds nothing new and pushes nothing:
    # the other tab (or admin) kept "Active" and a Cancel button.
    from billing_app.pages.billing import BillingState

    buy(org, sandbox=stripe_env)
    tab = signed_in_page(BillingState, "admin@acme.example")
    run_async(run_event(BillingState.preview_change.fn(tab, str(period_id("pro", "MONTHLY")))))  # a preview: nothing changes
    run_async(run_event(BillingState.open_portal.fn(tab, "")))  # a link to Stripe's portal: nothing changes yet
    assert pushes == []
    run_async(run_event(BillingState.confirm_cancel_flow.fn(tab, {"when": "end"})))
    assert tab.error == tab.flow_error == "" and tab.view.can_reactivate
    assert pushes == [org.id]


def test_a_team_change_from_the_members_page_refreshes_the_orgs_other_pages(org, pushes, roomy_free_tier):
    from billing_app.pages.members import MembersState

    tab = signed_in_page(MembersState, "admin@acme.example")
    run_async(run_event(MembersState.change_role.fn(tab, str(org.member.user_id), "admin")))
    assert tab.error == ""
    assert pushes == [org.id]


@pytest.mark.parametrize("answer", ["accept", "decline"])
def test_an_answer_to_an_invitation_refreshes_the_inviting_orgs_pages(org, pushes, roomy_free_tier, monkeypatch, answer):
    # A decline pushed nothing: the admin's members page kept listing the invitation as pending.
    from billing_app.auth import invitations
    from billing_app.pages.invite import InviteState
    from tests.billing.helpers import token_of
    from tests.teams.helpers import invitee

    token = token_of(invitations.invite(org.admin, email="new@example.com").url)
    invitee("new@example.com")
    monkeypatch.setattr(InviteState, "_token", property(lambda self: token))
    tab = signed_in_page(InviteState, "new@example.com")
    run_async(run_event(getattr(InviteState, answer).fn(tab)))
    assert tab.error == ""
    assert pushes == [org.id]


# --- B: a double-click -------------------------------------------------------------------------------

def test_a_double_click_on_confirm_change_changes_the_plan_once_and_shows_no_error(org, stripe_env, db):
    # The second click failed against the first one's outcome: "You are already on this plan." beside
    # "Your plan is now Pro.".
    from billing_app.pages.billing import BillingState

    buy(org, sandbox=stripe_env)
    tab = signed_in_page(BillingState, "admin@acme.example")
    tab.change_target = str(period_id("pro", "MONTHLY"))

    async def double_click():
        await asyncio.gather(run_event(BillingState.confirm_change.fn(tab)), run_event(BillingState.confirm_change.fn(tab)))

    run_async(double_click())
    assert (tab.error, tab.message, tab.busy) == ("", "Your plan is now Pro.", "")
    assert subscription(db, org).plan_period_id == period_id("pro", "MONTHLY")


def test_a_double_click_on_remove_removes_once_and_shows_no_error(org, roomy_free_tier):
    from billing_app.pages.members import MembersState

    tab = signed_in_page(MembersState, "admin@acme.example")
    user_id = str(org.member.user_id)

    async def double_click():
        await asyncio.gather(run_event(MembersState.remove.fn(tab, user_id)), run_event(MembersState.remove.fn(tab, user_id)))

    run_async(double_click())
    assert (tab.error, tab.message) == ("", "member@acme.example was removed from the organization.")


# --- C: an action after the session expired ------------------------------------------------------------

@pytest.mark.parametrize("page", ["billing", "cancel flow", "members", "pricing", "tokens"])
def test_an_action_after_the_session_expired_sends_the_tab_to_login(org, stripe_env, page):
    # It said "Your session has expired. Please log in again." and left the figures and buttons,
    # with no way on but the navbar's menu.
    from billing_app.pages.billing import BillingState
    from billing_app.pages.members import MembersState
    from billing_app.pages.pricing import PricingState
    from billing_app.pages.tokens import TokensState

    state_cls, path, act = {
        "billing": (BillingState, "/billing", lambda tab: BillingState.open_portal.fn(tab, "")),
        "cancel flow": (BillingState, "/billing", lambda tab: BillingState.confirm_cancel_flow.fn(tab, {"when": "now"})),
        "members": (MembersState, "/org/members", lambda tab: MembersState.remove.fn(tab, str(org.member.user_id))),
        "pricing": (PricingState, "/pricing", lambda tab: PricingState.subscribe.fn(tab, str(period_id("pro", "MONTHLY")))),
        "tokens": (TokensState, "/account/tokens", lambda tab: TokensState.revoke.fn(tab, "1")),
    }[page]
    tab = signed_in_page(state_cls, "admin@acme.example", path)
    _expire_sessions("admin@acme.example")
    sent: list = []
    returned = run_async(_in_a_backend(act(tab), sent))
    fired = [*sent, *Event.from_event_type(returned)]  # sent from inside the action, or yielded or returned by it
    assert [e.payload["path"] for e in fired if e.name == "_redirect"] == [routes.login_url(path, reason="expired")]
    assert tab.user_email == ""  # the page no longer shows who was signed in
