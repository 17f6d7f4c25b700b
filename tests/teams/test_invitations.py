"""Invitations: consent, single use, expiry, revocation, the right user; leaving and removing members."""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta

import pytest
from sqlmodel import select

from billing_app.auth import accounts, invitations, members
from billing_app.auth.tokens import token_hash
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import Invitation, Membership, Role, utcnow
from tests.api.helpers import set_role
from tests.billing.helpers import PASSWORD, expect, make_org
from tests.teams.helpers import invitee, join, token_of

# About invitations, not caps (test_seats.py): the free tier gets room for 10.
pytestmark = pytest.mark.usefixtures("roomy_free_tier")


def _members(org_id):
    with session_scope() as s:
        return sorted((m.user_id, m.role) for m in s.exec(select(Membership).where(Membership.org_id == org_id)).all())


def test_an_invitation_is_accepted_once_by_its_invitee_with_its_role(db):
    org = make_org("Acme", "admin@acme.example", "member@acme.example")
    invited = invitations.invite(org.admin, email="  Carol@Example.COM ", role=Role.ADMIN)
    token = token_of(invited.url)
    assert invited.url.startswith("http") and f"/invite/{token}" in invited.url
    assert (invited.invitation.email, invited.invitation.role) == ("carol@example.com", Role.ADMIN)
    assert invited.invitation.expires_at - utcnow() > timedelta(days=6, hours=23)
    assert invited.cost is None  # the free tier is not billed per seat
    with session_scope() as s:
        row = s.exec(select(Invitation)).all()[-1]
        assert row.token_hash == token_hash(token) and token not in str(row.model_dump())  # stored hashed only

    view = invitations.find(token)
    assert (view.org_name, view.email, view.role, view.status) == ("Acme", "carol@example.com", Role.ADMIN, "pending")
    carol = invitee("carol@example.com")
    assert invitations.accept(carol, token) == org.id
    assert (carol.user_id, "admin") in _members(org.id)
    assert invitations.find(token).status == "accepted"
    expect(ErrorCode.INVITATION_USED, invitations.accept, carol, token)  # single use
    expect(ErrorCode.INVITATION_USED, invitations.decline, carol, token)


def test_the_wrong_user_cannot_accept_or_decline(db):
    org = make_org("Acme", "admin@acme.example", "member@acme.example")
    token = token_of(invitations.invite(org.admin, email="carol@example.com").url)
    mallory = invitee("mallory@example.com")
    error = expect(ErrorCode.INVITATION_WRONG_USER, invitations.accept, mallory, token)
    assert "carol@example.com" in error.message
    expect(ErrorCode.INVITATION_WRONG_USER, invitations.decline, mallory, token)
    expect(ErrorCode.INVITATION_WRONG_USER, invitations.accept, org.member, token)  # a member of the org is no exception
    assert all(uid != mallory.user_id for uid, _ in _members(org.id))
    assert invitations.find(token).status == "pending"


def test_expired_revoked_declined_and_made_up_invitations_are_refused(db):
    org = make_org("Acme", "admin@acme.example", "member@acme.example")
    carol = invitee("carol@example.com")
    expired = invitations.invite(org.admin, email="carol@example.com")
    with session_scope() as s:
        s.get(Invitation, expired.invitation.id).expires_at = utcnow() - timedelta(seconds=1)
    expect(ErrorCode.INVITATION_EXPIRED, invitations.accept, carol, token_of(expired.url))
    assert invitations.find(token_of(expired.url)).status == "expired"

    revoked = invitations.invite(org.admin, email="carol@example.com")
    invitations.revoke(org.admin, revoked.invitation.id)
    expect(ErrorCode.INVITATION_REVOKED, invitations.accept, carol, token_of(revoked.url))
    expect(ErrorCode.INVITATION_REVOKED, invitations.revoke, org.admin, revoked.invitation.id)

    declined = invitations.invite(org.admin, email="carol@example.com")
    invitations.decline(carol, token_of(declined.url))
    expect(ErrorCode.INVITATION_USED, invitations.accept, carol, token_of(declined.url))
    expect(ErrorCode.INVITATION_USED, invitations.revoke, org.admin, declined.invitation.id)

    for made_up in ("inv_" + "x" * 43, "nonsense", "", "inv_" + "y" * 300):
        expect(ErrorCode.INVITATION_NOT_FOUND, invitations.accept, carol, made_up)
    expect(ErrorCode.INVITATION_NOT_FOUND, invitations.find, "inv_unknown")
    assert all(uid != carol.user_id for uid, _ in _members(org.id))


def test_inviting_again_replaces_the_pending_invitation(db):
    org = make_org("Acme", "admin@acme.example", "member@acme.example")
    first = invitations.invite(org.admin, email="carol@example.com")
    second = invitations.invite(org.admin, email="carol@example.com")
    with session_scope() as s:
        pending = [i.id for i in invitations.list_invitations(s, org.admin)]
    assert pending == [second.invitation.id]
    carol = invitee("carol@example.com")
    expect(ErrorCode.INVITATION_REVOKED, invitations.accept, carol, token_of(first.url))
    invitations.accept(carol, token_of(second.url))


def test_inviting_reveals_nothing_about_accounts(db):
    """The same answer whether the email has an account here or not (and no name is learned)."""
    org = make_org("Acme", "admin@acme.example", "member@acme.example")
    invitee("known@example.com", name="Secret Name")
    known = invitations.invite(org.admin, email="known@example.com")
    unknown = invitations.invite(org.admin, email="unknown@example.com")
    for invited in (known, unknown):
        assert set(vars(invited.invitation)) == {"id", "email", "role", "created_at", "expires_at", "invited_by", "last_error"}
        assert "Secret Name" not in repr(invited)
        assert invitations.find(token_of(invited.url)).status == "pending"
    expect(ErrorCode.ALREADY_MEMBER, invitations.invite, org.admin, email="member@acme.example")  # in this org: visible anyway


def test_only_admins_invite_and_revoke_and_only_super_admins_grant_super_admin(db):
    org = make_org("Acme", "admin@acme.example", "member@acme.example")
    expect(ErrorCode.FORBIDDEN, invitations.invite, org.member, email="carol@example.com")
    expect(ErrorCode.FORBIDDEN, invitations.invite, org.admin, email="carol@example.com", role=Role.SUPER_ADMIN)
    invited = invitations.invite(org.admin, email="carol@example.com")
    expect(ErrorCode.FORBIDDEN, invitations.revoke, org.member, invited.invitation.id)
    other = make_org("Globex", "admin@globex.example", "member@globex.example")
    expect(ErrorCode.INVITATION_NOT_FOUND, invitations.revoke, other.admin, invited.invitation.id)  # another org's
    expect(ErrorCode.VALIDATION_ERROR, invitations.invite, org.admin, email="not-an-email")


def test_leaving_and_removing_never_take_the_last_admin(db):
    org = make_org("Acme", "admin@acme.example", "member@acme.example")
    expect(ErrorCode.LAST_ADMIN, members.leave, org.admin)
    expect(ErrorCode.LAST_ADMIN, members.remove_member, org.admin, org.admin.user_id)
    expect(ErrorCode.FORBIDDEN, members.remove_member, org.member, org.admin.user_id)
    expect(ErrorCode.USER_NOT_FOUND, members.remove_member, org.admin, 999_999)

    members.leave(org.member)
    assert [uid for uid, _ in _members(org.id)] == [org.admin.user_id]
    with session_scope() as s:
        # The member's next action resolves to an org they are still in (their own).
        assert accounts._actor(s, s.get(accounts.User, org.member.user_id), org.id).org_id != org.id

    second_admin = join(org, "second@example.com", role="admin")
    members.leave(org.admin)  # another admin remains
    assert [uid for uid, _ in _members(org.id)] == [second_admin.user_id]



def test_an_invitee_who_accepted_on_the_invitation_page_logs_in_again_in_the_inviting_org(db, monkeypatch):
    # Signing up from an invitation still makes an org of one's own (first by id): the next login
    # used to start there, an empty org with the invitee its admin.
    from billing_app.pages.invite import InviteState
    from tests.aio import run_async
    from tests.pages import run_event, signed_in_page

    org = make_org("Acme", "admin@acme.example", "member@acme.example")
    token = token_of(invitations.invite(org.admin, email="new@example.com").url)
    invitee("new@example.com")
    monkeypatch.setattr(InviteState, "_token", property(lambda self: token))
    tab = signed_in_page(InviteState, "new@example.com")
    run_async(run_event(InviteState.accept.fn(tab)))
    assert tab.error == ""
    with session_scope() as s:
        later = accounts.actor_for_session(s, accounts.login(s, email="new@example.com", password=PASSWORD))
    assert (later.org_name, later.role) == ("Acme", Role.MEMBER)


def _two_admins():
    """Acme with two admins, Ada (org.admin) and Bob (org.member promoted): each may step down alone."""
    org = make_org("Acme", "ada@acme.example", "bob@acme.example")
    members.change_role(org.admin, user_id=org.member.user_id, role=Role.ADMIN)
    return org, dataclasses.replace(org.member, role=Role.ADMIN)


def _outcome(action) -> str:
    try:
        action()
    except AppError as error:
        return error.code.value
    return "done"


def test_a_leave_and_a_demotion_at_once_keep_an_admin(db, monkeypatch):
    """Ada leaves while Bob makes himself a member: the demotion waits for the leave, then is refused."""
    org, bob = _two_admins()
    outcomes = {}
    demotion = threading.Thread(target=lambda: outcomes.update(demotion=_outcome(
        lambda: members.change_role(bob, user_id=bob.user_id, role=Role.MEMBER))))
    real = members.per_seat_at_stripe

    def meanwhile(org_id):  # Ada's leave is between its last-admin check and its delete
        demotion.start()
        demotion.join(timeout=1)
        return real(org_id)

    monkeypatch.setattr(members, "per_seat_at_stripe", meanwhile)
    outcomes["leave"] = _outcome(lambda: members.leave(org.admin))
    demotion.join()
    assert outcomes == {"leave": "done", "demotion": "LAST_ADMIN"}
    assert _members(org.id) == [(bob.user_id, "admin")]


def test_a_removal_decides_on_the_admins_left_when_it_deletes(db, monkeypatch):
    """Whatever demotes Bob while Ada's leave calls Stripe, the leave is refused: Ada is the last admin."""
    org, bob = _two_admins()
    real = members.per_seat_at_stripe

    def meanwhile(org_id):
        set_role(org.id, bob.user_id, Role.MEMBER)
        return real(org_id)

    monkeypatch.setattr(members, "per_seat_at_stripe", meanwhile)
    error = expect(ErrorCode.LAST_ADMIN, members.leave, org.admin)
    assert error.message.startswith("You are the organization's last admin.")
    assert _members(org.id) == sorted([(org.admin.user_id, "admin"), (bob.user_id, "member")])


def _pending_ids(org_id):
    with session_scope() as s:
        return sorted(s.exec(select(Invitation.id).where(
            Invitation.org_id == org_id, Invitation.revoked_at.is_(None), Invitation.accepted_at.is_(None))).all())


@pytest.mark.parametrize("how", ["removed", "leaves"])
def test_an_admins_pending_invitations_go_when_they_leave_or_are_removed(db, how):
    """Bob, an admin, invites a second address of his as an admin, then is let go: the link no longer works."""
    org, bob = _two_admins()
    backdoor = invitations.invite(bob, email="bob.private@example.com", role=Role.ADMIN)
    invitations.invite(bob, email="dan@example.com")
    kept = invitations.invite(org.admin, email="erin@example.com")  # Ada's own: not Bob's to take along
    if how == "removed":
        members.remove_member(org.admin, bob.user_id)
    else:
        members.leave(bob)
    assert _pending_ids(org.id) == [kept.invitation.id]
    expect(ErrorCode.INVITATION_REVOKED, invitations.accept, invitee("bob.private@example.com"), token_of(backdoor.url))
    assert _members(org.id) == [(org.admin.user_id, "admin")]


def test_a_demotion_revokes_the_invitations_the_new_role_could_not_make(db):
    """Down to admin: a super admin's super admin invitations go; down to member: all of them."""
    org, bob = _two_admins()
    set_role(org.id, bob.user_id, Role.SUPER_ADMIN)
    boss = dataclasses.replace(bob, role=Role.SUPER_ADMIN)
    as_super_admin = invitations.invite(boss, email="super@example.com", role=Role.SUPER_ADMIN)
    as_admin = invitations.invite(boss, email="admin@example.com", role=Role.ADMIN)
    as_member = invitations.invite(boss, email="member@example.com")
    members.change_role(boss, user_id=bob.user_id, role=Role.ADMIN)
    assert _pending_ids(org.id) == sorted([as_admin.invitation.id, as_member.invitation.id])
    members.change_role(org.admin, user_id=bob.user_id, role=Role.MEMBER)
    assert _pending_ids(org.id) == []
    expect(ErrorCode.INVITATION_REVOKED, invitations.accept, invitee("super@example.com"), token_of(as_super_admin.url))

def test_an_admin_removes_a_member_but_only_a_super_admin_removes_a_super_admin(db):
    org = make_org("Acme", "admin@acme.example", "member@acme.example")
    removed = members.remove_member(org.admin, org.member.user_id)
    assert removed.email == "member@acme.example"
    assert org.member.user_id not in [uid for uid, _ in _members(org.id)]
    with session_scope() as s:
        s.add(Membership(org_id=org.id, user_id=org.member.user_id, role=Role.SUPER_ADMIN.value))
    expect(ErrorCode.FORBIDDEN, members.remove_member, org.admin, org.member.user_id)
