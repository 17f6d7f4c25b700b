"""A request resolves its actor, then may wait for the org's turn or one of its claims (seat,
purchase: up to 30 s each, while another change calls Stripe under it). A demotion or removal
committed in that window binds it: each change to members or invitations, and each billing action
taken for an admin, decides on the actor's role as the database has it when it acts."""

from __future__ import annotations

import threading
import time

import pytest
from sqlmodel import select

from billing_app.auth import accounts, invitations, members
from billing_app.billing import billing_details, retention, seat_billing, subscriptions
from billing_app.billing.checkout import start_checkout
from billing_app.billing.customers import customer_id_for
from billing_app.billing.portal import portal_url
from billing_app.billing.reservations import purchase_claim
from billing_app.billing.seats import seat_claim
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import Invitation, Membership, Role
from tests.api.helpers import set_role
from tests.billing.helpers import PASSWORD, expect, make_org, period_id
from tests.teams.helpers import buy_team, join, quantity_at_stripe, stripe_subscription

pytestmark = pytest.mark.usefixtures("roomy_free_tier")


def _acme_with_bob(role: Role = Role.ADMIN):
    """Acme (an admin, a member) and Bob, a second admin, as his request resolved him: before any change."""
    org = make_org("Acme", "admin@acme.example", "member@acme.example")
    join(org, "bob@acme.example", role=Role.ADMIN.value)
    if role != Role.ADMIN:
        set_role(org.id, _user_id("bob@acme.example"), role)
    with session_scope() as s:
        bob = accounts.switch_org(s, accounts.login(s, email="bob@acme.example", password=PASSWORD), org.id)
    assert bob.role == role
    return org, bob


def _user_id(email: str) -> int:
    with session_scope() as s:
        return s.exec(select(accounts.User.id).where(accounts.User.email == email)).one()


def _role(org_id: int, user_id: int) -> str | None:
    with session_scope() as s:
        return s.exec(select(Membership.role).where(Membership.org_id == org_id, Membership.user_id == user_id)).first()


def _pending(org_id: int) -> list[str]:
    with session_scope() as s:
        return sorted(s.exec(select(Invitation.email).where(
            Invitation.org_id == org_id, Invitation.revoked_at.is_(None), Invitation.accepted_at.is_(None))).all())


def test_a_demoted_admins_request_cannot_make_him_admin_again(db):
    org, bob = _acme_with_bob()
    members.change_role(org.admin, user_id=bob.user_id, role=Role.MEMBER)
    expect(ErrorCode.FORBIDDEN, members.change_role, bob, user_id=bob.user_id, role=Role.ADMIN)
    assert _role(org.id, bob.user_id) == "member"


def test_a_demoted_admins_request_cannot_invite(db):
    org, bob = _acme_with_bob()
    members.change_role(org.admin, user_id=bob.user_id, role=Role.MEMBER)
    expect(ErrorCode.FORBIDDEN, invitations.invite, bob, email="bob.other@example.com", role=Role.ADMIN)
    assert _pending(org.id) == []


def test_a_demoted_super_admins_request_cannot_grant_super_admin(db):
    org, bob = _acme_with_bob(Role.SUPER_ADMIN)
    members.change_role(bob, user_id=bob.user_id, role=Role.ADMIN)  # steps down; this request waited
    expect(ErrorCode.FORBIDDEN, invitations.invite, bob, email="boss@example.com", role=Role.SUPER_ADMIN)
    expect(ErrorCode.FORBIDDEN, members.change_role, bob, user_id=org.member.user_id, role=Role.SUPER_ADMIN)
    assert _pending(org.id) == [] and _role(org.id, org.member.user_id) == "member"


def test_a_demoted_admins_request_cannot_revoke_an_invitation(db):
    org, bob = _acme_with_bob()
    kept = invitations.invite(org.admin, email="carol@example.com")
    members.change_role(org.admin, user_id=bob.user_id, role=Role.MEMBER)
    expect(ErrorCode.FORBIDDEN, invitations.revoke, bob, kept.invitation.id)
    assert _pending(org.id) == ["carol@example.com"]


def test_a_removed_admins_request_cannot_remove_a_member(db):
    org, bob = _acme_with_bob()
    members.remove_member(org.admin, bob.user_id)
    expect(ErrorCode.FORBIDDEN, members.remove_member, bob, org.member.user_id)
    assert _role(org.id, org.member.user_id) == "member"


def test_a_removal_sent_by_an_admin_being_removed_waits_for_the_claim_and_is_refused(db, monkeypatch):
    """The real race: the org's admin removes Bob, holding the seat claim over its Stripe read; Bob's
    own removal of the member, its actor resolved while he was still an admin, waits, then runs."""
    org, bob = _acme_with_bob()
    in_stripe, release = threading.Event(), threading.Event()
    real = members.per_seat_at_stripe

    def slow_stripe_read(org_id):
        in_stripe.set()
        release.wait(10)
        return real(org_id)

    monkeypatch.setattr(members, "per_seat_at_stripe", slow_stripe_read)
    outcomes = {}

    def run(name, fn, *args):
        try:
            fn(*args)
            outcomes[name] = "done"
        except Exception as error:  # noqa: BLE001 - the outcome is the assertion
            outcomes[name] = getattr(error, "code", error)

    removing_bob = threading.Thread(target=run, args=("bob removed", members.remove_member, org.admin, bob.user_id))
    removing_bob.start()
    assert in_stripe.wait(10)
    bobs_request = threading.Thread(target=run, args=("bob's removal", members.remove_member, bob, org.member.user_id))
    bobs_request.start()
    time.sleep(0.5)  # Bob's request waits for the seat claim
    release.set()
    removing_bob.join(30)
    bobs_request.join(30)
    assert outcomes == {"bob removed": "done", "bob's removal": ErrorCode.FORBIDDEN}
    assert _role(org.id, bob.user_id) is None
    assert _role(org.id, org.member.user_id) == "member"


# --- billing actions taken for an admin ------------------------------------------------------------------


def _price(org, sandbox) -> str:
    return stripe_subscription(org, sandbox)["items"]["data"][0]["price"]["id"]


def _outcome_after_claim(claim, demote, fn, *args, **kwargs):
    """Run fn in a thread while `claim` is held, commit `demote` while fn waits for it; fn's outcome."""
    outcome = {}

    def request():
        try:
            fn(*args, **kwargs)
            outcome["done"] = True
        except AppError as error:
            outcome["refused"] = error.code

    with claim:
        thread = threading.Thread(target=request)
        thread.start()
        time.sleep(0.5)  # the request waits for the claim
        demote()
    thread.join(40)
    assert not thread.is_alive()
    return outcome


def test_a_seat_purchase_that_waited_for_the_seat_claim_while_its_admin_was_demoted_is_refused(db, stripe_env):
    org, bob = _acme_with_bob()
    buy_team(org, stripe_env)
    before = quantity_at_stripe(org, stripe_env)
    outcome = _outcome_after_claim(seat_claim(org.id), lambda: set_role(org.id, bob.user_id, Role.MEMBER),
                                   seat_billing.change_seats, bob, before + 5, preview=False)
    assert outcome == {"refused": ErrorCode.FORBIDDEN}
    assert quantity_at_stripe(org, stripe_env) == before


def test_a_checkout_that_waited_for_the_purchase_claim_while_its_admin_was_demoted_is_refused(db, stripe_env):
    org, bob = _acme_with_bob()
    outcome = _outcome_after_claim(purchase_claim(org.id), lambda: set_role(org.id, bob.user_id, Role.MEMBER),
                                   start_checkout, bob, period_id("team", "MONTHLY"))
    assert outcome == {"refused": ErrorCode.FORBIDDEN}
    assert customer_id_for(org.id) is None  # nothing made at Stripe for Acme


def test_a_removed_admins_plan_change_is_refused(db, stripe_env):
    org, bob = _acme_with_bob()
    buy_team(org, stripe_env)
    before = _price(org, stripe_env)
    members.remove_member(org.admin, bob.user_id)  # committed while Bob's request waited
    expect(ErrorCode.FORBIDDEN, subscriptions.change_plan, bob, period_id("team", "YEARLY"), preview=False)
    assert _price(org, stripe_env) == before


def test_a_demoted_admins_cancellation_is_refused(db, stripe_env):
    org, bob = _acme_with_bob()
    buy_team(org, stripe_env)
    members.change_role(org.admin, user_id=bob.user_id, role=Role.MEMBER)
    expect(ErrorCode.FORBIDDEN, retention.cancel, bob, at_period_end=True)
    expect(ErrorCode.FORBIDDEN, subscriptions.cancel, bob, at_period_end=False)
    sub = stripe_subscription(org, stripe_env)
    assert sub["status"] == "active" and not sub["cancel_at_period_end"]


def test_a_demoted_admin_gets_no_portal_session(db, stripe_env):
    org, bob = _acme_with_bob()
    buy_team(org, stripe_env)
    members.change_role(org.admin, user_id=bob.user_id, role=Role.MEMBER)
    expect(ErrorCode.FORBIDDEN, portal_url, bob)
    expect(ErrorCode.FORBIDDEN, portal_url, bob, "subscription_cancel")


@pytest.mark.parametrize("action", [
    lambda bob: retention.pause(bob, 1),
    retention.resume,
    retention.accept,
    subscriptions.reactivate,
    subscriptions.cancel_scheduled_change,
    lambda bob: billing_details.add_tax_id(bob, "eu_vat", "DE123456789"),
], ids=["pause", "resume", "accept_offer", "reactivate", "keep_plan", "add_tax_id"])
def test_a_removed_admins_other_billing_actions_are_refused(db, stripe_env, action):
    org, bob = _acme_with_bob()
    buy_team(org, stripe_env)
    members.remove_member(org.admin, bob.user_id)
    expect(ErrorCode.FORBIDDEN, action, bob)
    sub = stripe_subscription(org, stripe_env).to_dict()
    assert sub["status"] == "active" and not sub.get("pause_collection") and not sub.get("discounts")
    assert not stripe_env.client.v1.customers.tax_ids.list(customer_id_for(org.id)).data
