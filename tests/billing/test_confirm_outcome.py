"""The confirmation page's check, as its poller runs it (a plain function, outside the state lock)."""

from dataclasses import replace

import pytest
from sqlmodel import delete

from billing_app import limits, routes
from billing_app.auth import accounts, members
from billing_app.billing.checkout import start_checkout
from billing_app.db import session_scope
from billing_app.errors import AppError
from billing_app.models import Membership, Role
from billing_app.pages import confirm
from billing_app.pages.confirm import ConfirmState, check_outcome
from billing_app.state import AuthState
from tests.aio import run_async
from tests.api.helpers import add_membership
from tests.billing.helpers import make_org, period_id, still_clearing
from tests.pages import run_event, session_tab


def session_of(email, org_id):
    with session_scope() as s:
        token = accounts.login(s, email=email, password="a-long-password-1")
        accounts.switch_org(s, token, org_id)
    return token


def test_outcomes_follow_the_checkout(org, stripe_env):
    token = session_of("admin@acme.example", org.id)
    abandoned = start_checkout(org.admin, period_id("starter", "YEARLY"))
    stripe_env.client.v1.checkout.sessions.expire(abandoned.session_id)
    assert check_outcome(token, abandoned.session_id)[0] == "expired"

    started = start_checkout(org.admin, period_id("starter", "MONTHLY"))
    assert check_outcome(token, started.session_id) == ("processing", "", "")
    stripe_env.complete_checkout(started.session_id)
    phase, plan, renewal = check_outcome(token, started.session_id)
    assert (phase, plan) == ("success", "Starter") and renewal.startswith("Next renewal: ")


def test_a_foreign_session_is_not_found_and_a_bad_login_raises(org, stripe_env):
    other = make_org("Globex", "admin@globex.example", "member@globex.example")
    foreign = start_checkout(other.admin, period_id("starter", "MONTHLY"))
    assert check_outcome(session_of("admin@acme.example", org.id), foreign.session_id)[0] == "not_found"
    with pytest.raises(AppError):
        check_outcome("sess_forged", foreign.session_id)


def test_a_delayed_payment_still_clearing_is_not_called_failed(org, stripe_env, monkeypatch):
    """Stripe between checkout.session.completed and .async_payment_succeeded (SEPA, ACH: days):
    the session is complete and unpaid, its payment intent processing."""
    token = session_of("admin@acme.example", org.id)
    started = start_checkout(org.admin, period_id("business", "ALL_TIME"))
    stripe_env.complete_checkout(started.session_id, async_payment="succeeded")
    still_clearing(monkeypatch, started.session_id)
    assert check_outcome(token, started.session_id) == ("clearing", "", "")


def test_a_delayed_payment_that_bounced_is_failed(org, stripe_env):
    token = session_of("admin@acme.example", org.id)
    started = start_checkout(org.admin, period_id("business", "ALL_TIME"))
    stripe_env.complete_checkout(started.session_id, async_payment="failed")
    assert check_outcome(token, started.session_id) == ("failed", "", "")


def _acme_checkout_tab(org, monkeypatch):
    """A tab showing Acme's open checkout, its admin also an admin of Globex."""
    globex = make_org("Globex", "admin@globex.example", "member@globex.example")
    add_membership(globex.id, org.admin.user_id, Role.ADMIN)
    token = session_of("admin@acme.example", org.id)
    started = start_checkout(org.admin, period_id("starter", "MONTHLY"))
    tab = session_tab(ConfirmState, token, f"{routes.BILLING_CONFIRM}?session_id={started.session_id}")
    monkeypatch.setattr(confirm, "POLL_SECONDS", 0)
    monkeypatch.setattr(confirm, "POLL_TIMES", 1)
    run_async(run_event(ConfirmState.load.fn(tab)))
    assert (tab.phase, tab.org_name) == ("checking", "Acme")  # open: still pending
    return tab, token, globex


def _switch_in_another_tab(org, monkeypatch):
    """`_acme_checkout_tab`; then another tab of the same browser switches to Globex."""
    tab, token, globex = _acme_checkout_tab(org, monkeypatch)
    other_tab = session_tab(AuthState, token)
    run_async(run_event(AuthState.switch_org.fn(other_tab, str(globex.id))))
    return tab, token, globex


def test_the_pages_poll_after_a_switch_in_another_tab_says_so_not_that_the_checkout_is_gone(org, stripe_env, monkeypatch):
    # The poll checked with the session's current org: a tab showing Acme's open checkout said it
    # did not exist once another tab switched to Globex (and spent Globex's Stripe limit on it).
    tab, _, _ = _switch_in_another_tab(org, monkeypatch)
    monkeypatch.setattr(limits, "hit_stripe", lambda actor: pytest.fail("a Stripe check for the org the tab does not show"))

    run_async(ConfirmState._poll(tab, tab.visit))
    assert tab.phase == "switched" and tab.org_name == "Acme"
    # Not "Reload the page": a reload adopts Globex (and calls this checkout not found); the panel's buttons are the ways on.
    assert tab.error == "This page shows Acme, but you switched to Globex in another tab."


def test_check_again_after_a_switch_in_another_tab_says_so_not_that_the_checkout_is_gone(org, stripe_env, monkeypatch):
    # "Check again" (the "still processing" panel's button) ran `load`, which adopted Globex, spent
    # Globex's Stripe limit on Acme's checkout and called it not found.
    tab, _, _ = _switch_in_another_tab(org, monkeypatch)
    tab.phase = "processing"
    monkeypatch.setattr(limits, "hit_stripe", lambda actor: pytest.fail("a Stripe check for the org the tab does not show"))

    run_async(run_event(ConfirmState.retry.fn(tab)))
    assert (tab.phase, tab.org_name) == ("switched", "Acme")
    assert tab.error == "This page shows Acme, but you switched to Globex in another tab."


def test_check_again_checks_the_checkout_once_more(org, stripe_env, monkeypatch):
    tab, token, _ = _switch_in_another_tab(org, monkeypatch)
    with session_scope() as s:
        accounts.switch_org(s, token, org.id)  # the other tab switched back
    stripe_env.complete_checkout(tab.router.url.query_parameters["session_id"])

    run_async(run_event(ConfirmState.retry.fn(tab)))
    assert (tab.phase, tab.plan_name, tab.org_name) == ("success", "Starter", "Acme")


def _switched_away(org, monkeypatch):
    """The tab of `_switch_in_another_tab` once its poll has said so."""
    tab, token, globex = _switch_in_another_tab(org, monkeypatch)
    run_async(ConfirmState._poll(tab, tab.visit))
    assert tab.phase == "switched"
    return tab, token, globex


def test_switching_back_from_the_switched_panel_shows_the_checkout_for_the_org_it_belongs_to(org, stripe_env, monkeypatch):
    # The panel's only way on was Reload (load), which adopted Globex, spent Globex's Stripe limit
    # on Acme's checkout and called it "not found".
    tab, token, _ = _switched_away(org, monkeypatch)
    spent = []
    real = limits.hit_stripe
    monkeypatch.setattr(limits, "hit_stripe", lambda actor: (spent.append(actor.org_id), real(actor)))

    run_async(run_event(ConfirmState.switch_back.fn(tab)))

    assert spent == [org.id], "the check is Acme's, made once the session is Acme's again"
    assert (tab.phase, tab.org_id, tab.org_name) == ("checking", org.id, "Acme")  # open: still pending
    with session_scope() as s:
        assert accounts.actor_for_session(s, token).org_id == org.id  # the browser session is back on Acme


def test_switching_back_to_an_org_one_has_left_is_refused_and_checks_nothing(org, stripe_env, monkeypatch):
    tab, token, globex = _switched_away(org, monkeypatch)
    with session_scope() as s:
        s.exec(delete(Membership).where(Membership.org_id == org.id, Membership.user_id == org.admin.user_id))
    monkeypatch.setattr(limits, "hit_stripe", lambda actor: pytest.fail("a Stripe check without a switch"))

    run_async(run_event(ConfirmState.switch_back.fn(tab)))

    # It showed the "switched" panel again, offering "Switch back to Acme" once more.
    assert tab.phase == "not_member" and tab.org_name == "Acme"
    with session_scope() as s:
        assert accounts.actor_for_session(s, token).org_id == globex.id


def _removed_from_acme(org, monkeypatch):
    """`_acme_checkout_tab`; then Acme's member, made an admin, removes its admin (still in Globex)."""
    tab = _acme_checkout_tab(org, monkeypatch)[0]
    members.change_role(org.admin, user_id=org.member.user_id, role=Role.ADMIN)
    members.remove_member(replace(org.member, role=Role.ADMIN), org.admin.user_id)
    monkeypatch.setattr(limits, "hit_stripe", lambda actor: pytest.fail("a Stripe check for an org the user is not in"))
    return tab


@pytest.mark.parametrize("check", ["poll", "check again"])
def test_the_confirmation_page_of_one_removed_from_the_checkouts_org_says_so_not_switch_back(org, stripe_env, monkeypatch, check):
    # It said "You switched organization … you switched to Globex in another tab" and offered
    # "Switch back to Acme", an org they are no longer in.
    tab = _removed_from_acme(org, monkeypatch)
    if check == "poll":
        run_async(ConfirmState._poll(tab, tab.visit))
    else:
        tab.phase = "processing"
        run_async(run_event(ConfirmState.retry.fn(tab)))
    assert (tab.phase, tab.org_name) == ("not_member", "Acme")
