"""What a page's handlers let a browser do: every public method of a state is an event any signed-in
browser may send over its socket, whatever the page shows it.

So a handler that reads the database or calls Stripe runs off the event loop (a background event),
checks the role on the server before it spends the organization's Stripe limit (a member's refused
admin events must not lock the admins out), and a member's state holds only what a member may see.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from billing_app import limits
from billing_app.auth import accounts
from billing_app.billing import gateway
from billing_app.db import session_scope
from billing_app.notifications.kinds import Kind
from billing_app.serve import PROJECT_ROOT
from billing_app.settings import get_settings
from tests.aio import run_async
from tests.billing.helpers import PASSWORD
from tests.pages import run_event, session_tab

FORBIDDEN = "Only an organization admin can do that."
STRIPE_LIMIT_HIT = "Too many billing requests"

# Plain handlers that only change what the page shows (a dialog, a form field, a step of the
# cancellation flow, copying the address's query into a form): no database, no Stripe, no wait.
# Reflex's own `setvar` sets one declared var.
NO_IO = {
    "setvar",
    "LoginState.open", "RegisterState.open", "ForgotState.open", "ResetState.open",
    "PricingState.set_seats", "PricingState.set_yearly",
    "BillingState.open_change", "BillingState.close_change", "BillingState.start_cancel", "BillingState.close_cancel",
    "BillingState.submit_reason", "BillingState.skip_step", "BillingState.set_details_open",
}

PROBE = """
import json

import pytest
from reflex.state import State
from reflex.utils.prerequisites import get_and_validate_app
app = get_and_validate_app().app
app._apply_decorated_pages()

def walk(cls):
    yield cls
    for sub in cls.get_substates():
        yield from walk(sub)

found = [[cls.__module__, cls.__name__, name, bool(handler.is_background)]
         for cls in walk(State) for name, handler in cls.event_handlers.items()]
print(json.dumps(found))
"""


def _page_in_org(state_cls, email: str, org_id: int):
    """`tests.pages.signed_in_page`, with the session switched to `org_id` (a member's first org is their own)."""
    with session_scope() as s:
        token = accounts.login(s, email=email, password=PASSWORD)
        accounts.switch_org(s, token, org_id)
    return session_tab(state_cls, token)


def _stripe_limit(monkeypatch, value: str) -> None:
    monkeypatch.setenv("RATE_LIMIT_STRIPE_ORG", value)
    get_settings.cache_clear()
    limits.reset()


def _count_stripe_calls(monkeypatch) -> list:
    calls, real_call = [], gateway.call

    def counted(fn, *args, **kwargs):
        calls.append(fn)
        return real_call(fn, *args, **kwargs)

    monkeypatch.setattr(gateway, "call", counted)
    return calls


def test_every_public_page_handler_runs_off_the_event_loop_unless_it_does_no_io(tmp_path):
    # The app as the backend builds it, in a process of its own (its pages register as it loads).
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/app.db", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=PROJECT_ROOT, check=False, capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    handlers = json.loads(done.stdout.strip().splitlines()[-1])
    ours = [(f"{cls}.{name}", name, background) for module, cls, name, background in handlers if module.startswith("billing_app.")]
    assert {"BillingState.load", "MembersState.load_cost", "PricingState.subscribe"} <= {key for key, _, _ in ours}
    on_the_loop = sorted(key for key, name, background in ours if not background and key not in NO_IO and name not in NO_IO)
    assert on_the_loop == []


def test_on_billing_changed_is_not_a_public_handler_that_reads_the_database_on_the_event_loop(org):
    # Called by `live` only (in a thread, the page's state held); as a public method any browser
    # could send it as a plain event, whose database reads would run on the loop serving every socket.
    from billing_app.components.seats import SeatsBarState
    from billing_app.pages.billing import BillingState
    from billing_app.pages.members import MembersState
    from billing_app.pages.payments import PaymentsState

    for state_cls in (BillingState, MembersState, PaymentsState, SeatsBarState):
        assert "on_billing_changed" not in state_cls.event_handlers, state_cls
        assert callable(getattr(state_cls, "_on_billing_changed", None)), state_cls  # what `live` calls


def test_a_member_cannot_spend_the_orgs_stripe_limit_from_the_billing_page(org, monkeypatch):
    # Admin events forged over a member's own socket are refused before they count for the org.
    from billing_app.pages.billing import BillingState

    _stripe_limit(monkeypatch, "5/minute")
    member_tab = _page_in_org(BillingState, "member@acme.example", org.id)
    for _ in range(5):
        run_async(run_event(BillingState.do_reactivate.fn(member_tab)))
        assert member_tab.error == FORBIDDEN
    admin_tab = _page_in_org(BillingState, "admin@acme.example", org.id)
    run_async(run_event(BillingState.open_portal.fn(admin_tab, "")))
    assert STRIPE_LIMIT_HIT not in admin_tab.error
    for _ in range(4):  # the admin's call and four more: the org's whole limit was left
        limits.hit(limits.STRIPE_ORG, org.id)


def test_a_member_cannot_spend_the_orgs_stripe_limit_from_the_members_and_pricing_pages(org, monkeypatch):
    from billing_app.pages.members import MembersState
    from billing_app.pages.pricing import PricingState
    from tests.billing.helpers import period_id

    _stripe_limit(monkeypatch, "3/minute")
    members_tab = _page_in_org(MembersState, "member@acme.example", org.id)
    pricing_tab = _page_in_org(PricingState, "member@acme.example", org.id)
    for _ in range(3):
        run_async(run_event(MembersState.invite.fn(members_tab, {"email": "x@example.org", "role": "member"})))
        assert members_tab.error == FORBIDDEN
        run_async(run_event(MembersState.remove.fn(members_tab, str(org.admin.user_id))))
        assert members_tab.error == FORBIDDEN
        run_async(run_event(PricingState.subscribe.fn(pricing_tab, str(period_id("starter", "MONTHLY")))))
        assert pricing_tab.error == FORBIDDEN
    for _ in range(3):  # the org's admins still have their whole limit
        limits.hit(limits.STRIPE_ORG, org.id)


def test_a_members_leave_events_do_not_spend_the_orgs_stripe_limit(org, monkeypatch):
    # Leaving may set a per-seat quantity at Stripe: a member's leave counts against the member's
    # own limit. Sent at once from three tabs (background events run concurrently), each counts.
    import asyncio

    from billing_app.pages.members import MembersState

    _stripe_limit(monkeypatch, "3/minute")
    tabs = [_page_in_org(MembersState, "member@acme.example", org.id) for _ in range(3)]

    async def three_at_once():
        await asyncio.gather(*(run_event(MembersState.leave.fn(tab)) for tab in tabs))

    run_async(three_at_once())
    for _ in range(3):  # the org's admins still have their whole limit
        limits.hit(limits.STRIPE_ORG, org.id)


def test_a_member_cannot_spend_the_orgs_stripe_limit_from_the_confirm_page(org, monkeypatch):
    # Each check of how a checkout ended reads Stripe: a member's count against the member's own limit.
    from billing_app.pages.confirm import check_outcome

    _stripe_limit(monkeypatch, "3/minute")
    with session_scope() as s:
        member_session = accounts.login(s, email="member@acme.example", password=PASSWORD)
        accounts.switch_org(s, member_session, org.id)  # their first org is their own
    for _ in range(5):
        assert check_outcome(member_session, "cs_test_madeup")[0] == "not_found"
    for _ in range(3):  # the org's admins still have their whole limit
        limits.hit(limits.STRIPE_ORG, org.id)


def test_a_member_cannot_make_unlimited_stripe_calls_through_load_cost(org, stripe_env, monkeypatch):
    # On a per-seat plan whose paid seats are all used, the preview of one more seat calls Stripe
    # four times (the subscription; the change's preview; the renewal at the current and at the new
    # seats, after the org's discounts): admins only, and counted once for the org.
    from billing_app.pages.members import MembersState
    from tests.teams.helpers import buy_team, join

    buy_team(org, stripe_env, seats=3)
    join(org, "third@acme.example")  # 3 members on 3 paid seats: one more costs a seat
    _stripe_limit(monkeypatch, "3/minute")
    calls = _count_stripe_calls(monkeypatch)
    member_tab = _page_in_org(MembersState, "member@acme.example", org.id)
    for _ in range(10):
        run_async(run_event(MembersState.load_cost.fn(member_tab)))
    assert member_tab.cost_preview == "" and calls == []

    admin_tab = _page_in_org(MembersState, "admin@acme.example", org.id)
    for _ in range(10):
        run_async(run_event(MembersState.load_cost.fn(admin_tab)))
    assert admin_tab.cost_preview.startswith("Inviting one more person adds")
    assert len(calls) <= 3 * 4  # three previews counted by the org's limit, then none


def test_a_members_billing_page_state_holds_no_hosted_invoice_link(org, stripe_env):
    # Stripe's hosted invoice page (amount, billing email and address, a pay button) is the admins'.
    from billing_app.models import Payment
    from billing_app.pages.billing import BillingState
    from tests.billing.helpers import buy

    buy(org, sandbox=stripe_env)
    link = "https://invoice.stripe.com/i/acct_x/test_hosted_invoice"
    with session_scope() as s:
        s.add(Payment(org_id=org.id, stripe_id="in_3ds", status="PENDING", amount=4900, currency="usd",
                      created=datetime.now(UTC), invoice_url=link, action_required=True))
    admin_tab = _page_in_org(BillingState, "admin@acme.example", org.id)
    run_async(run_event(BillingState.load.fn(admin_tab)))
    assert admin_tab.view.confirm_payment_url == link  # the admins are asked to confirm it
    member_tab = _page_in_org(BillingState, "member@acme.example", org.id)
    run_async(run_event(BillingState.load.fn(member_tab)))
    assert member_tab.view.plan_name == admin_tab.view.plan_name
    assert member_tab.view.confirm_payment_url == ""


def test_only_admins_see_why_an_invitation_could_not_be_accepted(org, roomy_free_tier):
    from sqlalchemy import update

    from billing_app.auth import invitations
    from billing_app.models import Invitation
    from billing_app.pages.members import MembersState

    invited = invitations.invite(org.admin, email="new@example.org")
    reason = "new@example.org could not join: Your card was declined."
    with session_scope() as s:  # what a refused seat leaves on the invitation (auth/invitations.py)
        s.execute(update(Invitation.__table__).where(Invitation.__table__.c.id == invited.invitation.id).values(last_error=reason))
    admin_tab = _page_in_org(MembersState, "admin@acme.example", org.id)
    run_async(run_event(MembersState.load.fn(admin_tab)))
    assert [i.last_error for i in admin_tab.invitations] == [reason]
    member_tab = _page_in_org(MembersState, "member@acme.example", org.id)
    run_async(run_event(MembersState.load.fn(member_tab)))
    assert [(i.email, i.last_error) for i in member_tab.invitations] == [("new@example.org", "")]


# --- tabs of one browser: the session's current org is one for all of them -------------------------

SWITCHED = "This page shows Acme, but you switched to Globex in another tab. Reload the page to continue."


def _acme_tab(state_cls):
    """An admin of Acme and Globex (Bob a member of both) with a tab of `state_cls` showing Acme, and its session."""
    from billing_app.models import Role
    from tests.api.helpers import add_membership
    from tests.billing.helpers import make_org

    acme = make_org("Acme", "admin@acme.example", "bob@example.com")
    globex = make_org("Globex", "admin@globex.example", "carol@example.com")
    add_membership(globex.id, acme.admin.user_id, Role.ADMIN)
    add_membership(globex.id, acme.member.user_id, Role.MEMBER)
    with session_scope() as s:
        token = accounts.login(s, email="admin@acme.example", password=PASSWORD)
        accounts.switch_org(s, token, acme.id)
    acme_tab = session_tab(state_cls, token)
    run_async(run_event(state_cls.load.fn(acme_tab)))
    assert acme_tab.org_name == "Acme"
    return acme, globex, acme_tab, token


def _acme_tab_after_a_switch_to_globex(state_cls):
    """`_acme_tab`, and another tab of the same browser that switched the session to Globex since."""
    from billing_app.state import AuthState

    acme, globex, acme_tab, token = _acme_tab(state_cls)
    other_tab = session_tab(AuthState, token)
    run_async(run_event(AuthState.switch_org.fn(other_tab, str(globex.id))))
    return acme, globex, acme_tab


def _orgs_of(user_id: int) -> list[int]:
    from sqlmodel import select

    from billing_app.models import Membership

    with session_scope() as s:
        return sorted(s.exec(select(Membership.org_id).where(Membership.user_id == user_id)).all())


def test_remove_on_a_tab_showing_acme_is_refused_after_another_tab_switched_to_globex(db, roomy_free_tier):
    # It removed Bob from Globex, an org the page never showed, and said it removed him.
    from billing_app.pages.members import MembersState

    acme, globex, acme_tab = _acme_tab_after_a_switch_to_globex(MembersState)
    bob = next(m for m in acme_tab.members if m.email == "bob@example.com")
    run_async(run_event(MembersState.remove.fn(acme_tab, bob.user_id)))
    assert (acme_tab.error, acme_tab.message) == (SWITCHED, "")
    assert {acme.id, globex.id} <= set(_orgs_of(acme.member.user_id))
    assert acme_tab.org_name == "Acme" and any(m.email == "bob@example.com" for m in acme_tab.members)

    run_async(run_event(MembersState.load.fn(acme_tab)))  # reloaded, the tab follows the session
    assert acme_tab.org_name == "Globex" and acme_tab.error == ""
    run_async(run_event(MembersState.remove.fn(acme_tab, bob.user_id)))
    assert acme_tab.message == "bob@example.com was removed from the organization."
    assert acme.id in _orgs_of(acme.member.user_id) and globex.id not in _orgs_of(acme.member.user_id)


def test_cancel_on_a_tab_showing_acme_leaves_globexs_subscription_alone(stripe_env, roomy_free_tier, db):
    from billing_app.pages.billing import BillingState
    from tests.billing.helpers import buy, subscription

    _, globex, acme_tab = _acme_tab_after_a_switch_to_globex(BillingState)
    buy(globex, plan="pro", sandbox=stripe_env)  # room for its 4 members
    before = subscription(db, globex).status
    run_async(run_event(BillingState.confirm_cancel_flow.fn(acme_tab, {"when": "now"})))
    assert acme_tab.flow_error == SWITCHED and acme_tab.message == ""
    sub = subscription(db, globex)
    assert sub.status == before and sub.canceled_at is None and not sub.cancel_at_period_end


# Every handler of the org's pages that acts on (or reads past the load) what the tab shows, with
# arguments that would otherwise pass the page's own checks; the others are loads or in NO_IO.
ORG_PAGE_ACTIONS = {
    "MembersState": {"invite": ({"email": "x@example.org", "role": "member"},), "revoke": ("1",), "remove": ("1",),
                     "leave": (), "change_role": ("1", "member"), "load_cost": ()},
    "BillingState": {"open_portal": ("",), "preview_change": ("1",), "confirm_change": (), "keep_current_plan": (),
                     "do_reactivate": (), "pause_instead": ({"months": "1"},), "accept_offer": (),
                     "confirm_cancel_flow": ({"when": "now"},), "resume_now": (), "save_details": ({"email": "a@b.example"},),
                     "add_tax_id": ({"tax_type": "eu_vat", "tax_value": "DE123456789"},), "remove_tax_id": ("txi_1",)},
    "PricingState": {"subscribe": ("1",)},
    "TokensState": {"create": ({"name": "ci", "password": PASSWORD, "expires": "never"},), "revoke": ("1",)},
    "NotificationSettingsState": {"toggle": (Kind.RECEIPT.value, False)},
    "PaymentsState": {"apply_filters": ({},), "clear_filters": (), "next_page": (), "previous_page": ()},
    "SeatsBarState": {},
}


def _org_page(name: str):
    from billing_app.components.seats import SeatsBarState
    from billing_app.pages.billing import BillingState
    from billing_app.pages.members import MembersState
    from billing_app.pages.notification_settings import NotificationSettingsState
    from billing_app.pages.payments import PaymentsState
    from billing_app.pages.pricing import PricingState
    from billing_app.pages.tokens import TokensState

    return {cls.__name__: cls for cls in (MembersState, BillingState, PricingState, TokensState,
                                          NotificationSettingsState, PaymentsState, SeatsBarState)}[name]


def test_every_handler_of_the_orgs_pages_is_listed_as_an_action_a_load_or_no_io():
    # A new handler there is walked by the test below once it is listed.
    for name, actions in ORG_PAGE_ACTIONS.items():
        handlers = set(_org_page(name).event_handlers) - {"load", "setvar"}
        assert handlers - {key.split(".")[1] for key in NO_IO if key.startswith(name + ".")} == set(actions), name


@pytest.mark.parametrize(("page", "action"), [(p, a) for p, actions in ORG_PAGE_ACTIONS.items() for a in actions])
def test_no_action_of_a_tab_showing_acme_reaches_globex_after_another_tab_switched(page, action, db, roomy_free_tier, monkeypatch):
    state_cls = _org_page(page)
    _, _, acme_tab = _acme_tab_after_a_switch_to_globex(state_cls)
    if page == "PaymentsState":  # a second page, so that next and previous read one
        acme_tab.next_cursor, acme_tab.cursors = "x", ["", "x"]
    calls = _count_stripe_calls(monkeypatch)
    run_async(run_event(getattr(state_cls, action).fn(acme_tab, *ORG_PAGE_ACTIONS[page][action])))
    shown = [getattr(acme_tab, field, "") for field in ("error", "flow_error", "details_error", "message")]
    assert SWITCHED in shown or action == "load_cost", shown  # load_cost says nothing when refused
    assert calls == [] and acme_tab.org_name == "Acme"


# --- a user removed from the org a tab shows, still in another: they did not switch ------------------

NO_LONGER = "You are no longer a member of Acme. Reload the page to continue."


@pytest.mark.parametrize(("page", "action"), [("MembersState", "remove"), ("BillingState", "open_portal"),
                                              ("BillingState", "confirm_cancel_flow")])
def test_an_action_of_a_tab_showing_an_org_the_user_was_removed_from_says_so(page, action, db, roomy_free_tier, monkeypatch):
    # It said "This page shows Acme, but you switched to Globex in another tab": an admin removed them.
    from dataclasses import replace

    from billing_app.auth import members
    from billing_app.models import Role

    state_cls = _org_page(page)
    acme, globex, acme_tab, _ = _acme_tab(state_cls)
    members.change_role(acme.admin, user_id=acme.member.user_id, role=Role.ADMIN)
    members.remove_member(replace(acme.member, role=Role.ADMIN), acme.admin.user_id)  # Bob removes them; Globex stays
    calls = _count_stripe_calls(monkeypatch)
    run_async(run_event(getattr(state_cls, action).fn(acme_tab, *ORG_PAGE_ACTIONS[page][action])))
    shown = [getattr(acme_tab, field, "") for field in ("error", "flow_error", "details_error", "message")]
    assert NO_LONGER in shown, shown
    assert calls == [] and acme_tab.org_name == "Acme"
    assert _orgs_of(acme.admin.user_id) == [globex.id] and globex.id in _orgs_of(acme.member.user_id)  # nothing changed
