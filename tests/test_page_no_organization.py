"""A signed-in user in no organization (they left, or were removed from, their last one): the
organization's pages send them to the home page, still signed in, and the home page lets them
create one."""

from __future__ import annotations

import pytest

from billing_app import routes
from billing_app.auth import members
from billing_app.models import Role
from tests.aio import run_async
from tests.billing.helpers import make_org
from tests.pages import run_event, signed_in_page


def _in_no_org(acme=None) -> str:
    """Acme's admin (of `acme`, when given), after making its member an admin too and leaving: in no organization."""
    acme = acme or make_org("Acme", "admin@acme.example", "member@acme.example")
    members.change_role(acme.admin, user_id=acme.member.user_id, role=Role.ADMIN)
    members.leave(acme.admin)
    return "admin@acme.example"


def _path(redirect) -> str:
    """Where an `rx.redirect(...)` sends the browser."""
    return {name._js_expr: value._var_value for name, value in redirect.args}["path"]


def _org_page(name: str):
    from billing_app.pages.billing import BillingState
    from billing_app.pages.members import MembersState
    from billing_app.pages.notification_settings import NotificationSettingsState
    from billing_app.pages.payments import PaymentsState
    from billing_app.pages.tokens import TokensState

    return {cls.__name__: cls for cls in (BillingState, MembersState, PaymentsState, TokensState, NotificationSettingsState)}[name]


@pytest.mark.parametrize(("page", "path"), [
    ("BillingState", routes.BILLING), ("MembersState", routes.MEMBERS), ("PaymentsState", routes.PAYMENTS),
    ("TokensState", routes.ACCOUNT_TOKENS), ("NotificationSettingsState", routes.ACCOUNT_NOTIFICATIONS),
])
def test_an_orgs_page_sends_a_user_in_no_organization_home_still_signed_in(db, roomy_free_tier, page, path):
    # It sent them to the login page, as if signed out (billing, members, tokens), or showed an
    # empty page (payments: "Only organization admins can see the payment history.").
    state_cls = _org_page(page)
    tab = signed_in_page(state_cls, _in_no_org(), path)
    redirect = run_async(run_event(state_cls.load.fn(tab)))
    assert redirect is not None and _path(redirect) == routes.HOME
    assert tab.user_email == "admin@acme.example" and tab.org_id == 0


def test_an_ended_session_still_goes_to_the_login_page(db, roomy_free_tier):
    from billing_app.auth import accounts
    from billing_app.db import session_scope
    from billing_app.pages.billing import BillingState
    from tests.billing.helpers import PASSWORD
    from tests.pages import session_tab

    with session_scope() as s:
        token = accounts.login(s, email=_in_no_org(), password=PASSWORD)
    tab = session_tab(BillingState, token, routes.BILLING)
    with session_scope() as s:
        accounts.end_session(s, token)  # logged out in another tab
    redirect = run_async(run_event(BillingState.load.fn(tab)))
    assert _path(redirect) == routes.login_url(routes.BILLING)
    assert tab.user_email == ""


def test_the_home_page_of_a_user_in_no_organization_creates_one_and_shows_it(db, roomy_free_tier):
    from billing_app.pages.home import HomeState

    tab = signed_in_page(HomeState, _in_no_org(), routes.HOME)
    assert (tab.is_authenticated, tab.org_id, tab.org_name, tab.role, tab.orgs) == (True, 0, "", "", [])

    run_async(run_event(HomeState.create_org.fn(tab, {"org_name": "Acme\nInc"})))
    assert tab.error == "The organization name cannot contain line breaks or control characters."
    assert tab.org_id == 0

    run_async(run_event(HomeState.create_org.fn(tab, {"org_name": " Fresh Start "})))
    assert tab.error == ""
    assert (tab.org_name, tab.role_label, tab.is_admin) == ("Fresh Start", "Admin", True)
    assert [o["name"] for o in tab.orgs] == ["Fresh Start"]

    # A second submit (a double click, another tab) makes no second one.
    run_async(run_event(HomeState.create_org.fn(tab, {"org_name": "Fresh Start"})))
    assert tab.error.startswith("You are already a member of an organization.")
    assert [o["name"] for o in tab.orgs] == ["Fresh Start"]


def test_the_new_organizations_billing_page_shows_its_admin(db, roomy_free_tier):
    from billing_app.pages.billing import BillingState
    from billing_app.pages.home import HomeState

    email = _in_no_org()
    home = signed_in_page(HomeState, email, routes.HOME)
    run_async(run_event(HomeState.create_org.fn(home, {"org_name": "Fresh Start"})))
    billing = signed_in_page(BillingState, email, routes.BILLING)
    assert run_async(run_event(BillingState.load.fn(billing))) is None
    assert (billing.org_name, billing.is_admin) == ("Fresh Start", True)


def test_creating_organizations_is_limited_as_an_account_action(db, roomy_free_tier, monkeypatch):
    from billing_app import limits
    from billing_app.pages.home import HomeState
    from billing_app.settings import get_settings

    monkeypatch.setenv("RATE_LIMIT_ACCOUNT_USER", "2/minute")
    get_settings.cache_clear()
    limits.reset()
    tab = signed_in_page(HomeState, _in_no_org(), routes.HOME)
    for _ in range(2):
        run_async(run_event(HomeState.create_org.fn(tab, {"org_name": ""})))
        assert tab.error == "Enter a name for your organization."
    run_async(run_event(HomeState.create_org.fn(tab, {"org_name": "Fresh Start"})))
    assert tab.error.startswith("Too many attempts.") and tab.org_id == 0


def _confirmation_tab(org, stripe_env, monkeypatch):
    """Acme's admin on the confirmation page of a checkout they started (still open), its poll quick."""
    from billing_app.billing.checkout import start_checkout
    from billing_app.pages import confirm
    from tests.billing.helpers import period_id

    started = start_checkout(org.admin, period_id("starter", "MONTHLY"))
    monkeypatch.setattr(confirm, "POLL_SECONDS", 0)
    monkeypatch.setattr(confirm, "POLL_TIMES", 1)
    return signed_in_page(confirm.ConfirmState, "admin@acme.example", f"{routes.BILLING_CONFIRM}?session_id={started.session_id}")


def test_the_confirmation_page_of_one_who_left_the_checkouts_org_says_so(org, stripe_env, monkeypatch):
    # It said "Confirming your payment…", then "Still processing" for good: no org, no check.
    from billing_app.pages.confirm import ConfirmState

    tab = _confirmation_tab(org, stripe_env, monkeypatch)
    _in_no_org(org)
    events = run_async(run_event(ConfirmState.load.fn(tab)))
    assert tab.phase == "no_organization"
    assert events == []  # nothing left to poll for


def test_the_confirmation_pages_poll_after_leaving_the_checkouts_org_says_so(org, stripe_env, monkeypatch):
    # The poll called it a switch in another tab ("Switch back to Acme"), which they could not do.
    from billing_app.pages.confirm import ConfirmState

    tab = _confirmation_tab(org, stripe_env, monkeypatch)
    run_async(run_event(ConfirmState.load.fn(tab)))
    assert tab.phase == "checking"  # open: still pending
    _in_no_org(org)
    run_async(ConfirmState._poll(tab, tab.visit))
    assert tab.phase == "no_organization"


def test_check_again_on_the_confirmation_page_after_leaving_the_org_goes_home(org, stripe_env, monkeypatch):
    # It showed "You switched organization … you switched to no organization in another tab": they left.
    from billing_app.pages.confirm import ConfirmState

    tab = _confirmation_tab(org, stripe_env, monkeypatch)
    run_async(run_event(ConfirmState.load.fn(tab)))
    _in_no_org(org)
    events = run_async(run_event(ConfirmState.retry.fn(tab)))
    assert tab.phase != "switched" and "switched" not in tab.error, tab.error
    assert [_path(e) for e in events] == [routes.HOME]  # as every page sends one in no organization
