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

from billing_app import limits
from billing_app.auth import accounts
from billing_app.auth.cookies import SESSION_HEADER, SESSION_SCHEME
from billing_app.auth.tokens import token_hash
from billing_app.billing import gateway
from billing_app.db import session_scope
from billing_app.serve import PROJECT_ROOT
from billing_app.settings import get_settings
from tests.aio import run_async
from tests.billing.helpers import PASSWORD
from tests.pages import run_event

FORBIDDEN = "Only an organization admin can do that."
STRIPE_LIMIT_HIT = "Too many billing requests"

# Plain handlers that only change what the page shows (a dialog, a form field, a step of the
# cancellation flow, copying the address's query into a form): no database, no Stripe, no wait.
# Reflex's own `setvar` sets one declared var.
NO_IO = {
    "setvar",
    "LoginState.open", "RegisterState.open", "ForgotState.open", "ResetState.open",
    "ConfirmState.retry",
    "PricingState.set_seats", "PricingState.set_yearly",
    "BillingState.open_change", "BillingState.close_change", "BillingState.start_cancel", "BillingState.close_cancel",
    "BillingState.submit_reason", "BillingState.skip_step", "BillingState.set_details_open",
}

PROBE = """
import json
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
    from reflex.istate.data import RouterData
    from reflex.state import State

    with session_scope() as s:
        token = accounts.login(s, email=email, password=PASSWORD)
        accounts.switch_org(s, token, org_id)
    root = State(_reflex_internal_init=True)
    root.router = RouterData.from_router_data({"headers": {SESSION_HEADER: SESSION_SCHEME + token_hash(token)}})
    return root.get_substate(state_cls.get_full_name().split(".")[1:])


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
    # twice (the subscription, the invoice preview): admins only, and counted for the org.
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
    assert len(calls) <= 3 * 2  # three previews counted by the org's limit, then none


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
