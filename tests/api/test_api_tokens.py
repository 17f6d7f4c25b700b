"""API tokens: shown once, stored hashed, revocable, acting with the user's current role."""

from datetime import timedelta

import pytest
from sqlmodel import select

from billing_app.auth import api_tokens, invitations
from billing_app.auth.tokens import token_hash
from billing_app.db import session_scope
from billing_app.errors import ErrorCode
from billing_app.models import ApiToken, Membership, Role
from tests.api.helpers import bearer, err, ok, set_role, token_for
from tests.billing.helpers import expect, make_org, token_of


@pytest.fixture
def acme(database_url):
    return make_org("Acme", "admin@acme.example", "member@acme.example")


def test_the_plain_token_is_returned_once_and_only_its_hash_is_stored(acme, db):
    with session_scope() as s:
        created = api_tokens.create_token(s, acme.admin, name="deploy script")
    assert created.token.startswith("bapi_") and len(created.token) > 40
    assert created.prefix == created.token[:12] and created.name == "deploy script"
    row = db.exec(select(ApiToken).where(ApiToken.id == created.id)).one()
    assert row.token_hash == token_hash(created.token) and created.token not in row.token_hash
    assert (row.user_id, row.org_id, row.prefix) == (acme.admin.user_id, acme.id, created.prefix)
    # Nothing in the stored row is the token itself.
    assert all(created.token not in str(value) for value in row.model_dump().values())
    with session_scope() as s:
        listed = api_tokens.list_tokens(s, acme.admin)
    assert [(t.id, t.prefix, t.name, t.revoked) for t in listed] == [(created.id, created.prefix, "deploy script", False)]
    assert not hasattr(listed[0], "token")


def test_a_token_resolves_to_the_user_in_its_org(acme):
    token = token_for(acme.member)
    actor = api_tokens.authenticate_bearer(token)
    assert (actor.user_id, actor.org_id, actor.org_name, actor.role) == (acme.member.user_id, acme.id, "Acme", Role.MEMBER)
    for bad in (None, "", "bapi_nope", token + "x", "sess_" + token[5:], "x" * 500):
        error = expect(ErrorCode.UNAUTHENTICATED, api_tokens.authenticate_bearer, bad)
        assert error.http_status == 401


def test_names_are_limited(acme):
    with session_scope() as s:
        expect(ErrorCode.VALIDATION_ERROR, api_tokens.create_token, s, acme.admin, name="x" * 121)
    for name in ("deploy\x00script", "deploy\nscript"):  # a NUL was a 500 on PostgreSQL
        with session_scope() as s:
            error = expect(ErrorCode.VALIDATION_ERROR, api_tokens.create_token, s, acme.admin, name=name)
        assert error.message == "The token name cannot contain line breaks or control characters."
    with session_scope() as s:
        assert s.exec(select(ApiToken)).all() == []


def test_revoked_tokens_stop_working_and_leave_the_list(acme, db):
    keep, drop = token_for(acme.admin), token_for(acme.admin)
    drop_id = db.exec(select(ApiToken.id).where(ApiToken.token_hash == token_hash(drop))).one()
    with session_scope() as s:
        api_tokens.revoke_token(s, acme.admin, drop_id)
        api_tokens.revoke_token(s, acme.admin, drop_id)  # again: nothing changes
    expect(ErrorCode.UNAUTHENTICATED, api_tokens.authenticate_bearer, drop)
    assert api_tokens.authenticate_bearer(keep).user_id == acme.admin.user_id
    with session_scope() as s:
        assert [t.prefix for t in api_tokens.list_tokens(s, acme.admin)] == [keep[:12]]
        everything = api_tokens.list_tokens(s, acme.admin, include_revoked=True)
    assert {t.prefix: t.revoked for t in everything} == {keep[:12]: False, drop[:12]: True}


def test_who_may_revoke(acme, db):
    other = make_org("Globex", "admin@globex.example", "member@globex.example")
    member_token = token_for(acme.member)
    member_token_id = db.exec(select(ApiToken.id).where(ApiToken.token_hash == token_hash(member_token))).one()
    admin_token_id = db.exec(select(ApiToken.id).where(ApiToken.token_hash == token_hash(token_for(acme.admin)))).one()
    with session_scope() as s:
        # A member cannot revoke the admin's token; another org's admin cannot revoke ours.
        expect(ErrorCode.TOKEN_NOT_FOUND, api_tokens.revoke_token, s, acme.member, admin_token_id)
        expect(ErrorCode.TOKEN_NOT_FOUND, api_tokens.revoke_token, s, other.admin, member_token_id)
        expect(ErrorCode.TOKEN_NOT_FOUND, api_tokens.revoke_token, s, acme.admin, 987654)
    assert api_tokens.authenticate_bearer(member_token).org_id == acme.id
    with session_scope() as s:
        # The org's admin may revoke a member's token (e.g. one that leaked).
        api_tokens.revoke_token(s, acme.admin, member_token_id)
    expect(ErrorCode.UNAUTHENTICATED, api_tokens.authenticate_bearer, member_token)


def test_the_role_is_read_at_use_time(acme, client):
    """A demoted user's token loses admin rights at once; a promoted one gains them; a removed one stops."""
    other_admin_token = token_for(acme.admin)
    promoted = token_for(acme.member)
    assert client.get("/api/subscriptions/payments", headers=bearer(promoted)).status_code == 403
    set_role(acme.id, acme.member.user_id, Role.ADMIN)
    assert client.get("/api/subscriptions/payments", headers=bearer(promoted)).status_code == 200
    set_role(acme.id, acme.admin.user_id, Role.MEMBER)
    response = client.get("/api/subscriptions/payments", headers=bearer(other_admin_token))
    assert (response.status_code, response.json()["error_code"]) == (403, "FORBIDDEN")
    with session_scope() as s:
        s.delete(s.exec(select(Membership).where(Membership.user_id == acme.admin.user_id, Membership.org_id == acme.id)).one())
    response = client.get("/api/subscriptions/my", headers=bearer(other_admin_token))
    assert (response.status_code, response.json()["error_code"]) == (401, "UNAUTHENTICATED")



def test_a_removed_members_tokens_stay_revoked_when_they_are_invited_back(acme, client):
    old_token = token_for(acme.member)
    admin = bearer(token_for(acme.admin))
    ok(client.delete(f"/api/org/members/{acme.member.user_id}", headers=admin))
    again = ok(client.post("/api/org/invitations", headers=admin, json={"email": "member@acme.example", "role": "member"}))
    invitations.accept(acme.member, token_of(again["inviteUrl"]))
    err(client.get("/api/subscriptions/my", headers=bearer(old_token)), 401, "UNAUTHENTICATED")
    with session_scope() as s:
        assert [t.revoked for t in api_tokens.list_tokens(s, acme.member, include_revoked=True)] == [True]
    assert client.get("/api/subscriptions/my", headers=bearer(token_for(acme.member))).status_code == 200

def test_last_used_at_is_recorded_without_a_write_per_request(acme, db, client):
    token = token_for(acme.member)
    row_id = db.exec(select(ApiToken.id).where(ApiToken.token_hash == token_hash(token))).one()

    def last_used():
        with session_scope() as s:
            return s.get(ApiToken, row_id).last_used_at

    assert last_used() is None
    assert client.get("/api/subscriptions/my", headers=bearer(token)).status_code == 200
    first = last_used()
    assert first is not None
    assert client.get("/api/subscriptions/my", headers=bearer(token)).status_code == 200
    assert last_used() == first  # within a minute: not written again
    with session_scope() as s:
        s.get(ApiToken, row_id).last_used_at = first - timedelta(minutes=5)
    assert client.get("/api/subscriptions/my", headers=bearer(token)).status_code == 200
    assert last_used() > first - timedelta(seconds=1)


def test_create_token_for_email_for_the_cli(acme, client):
    token = api_tokens.create_token_for_email("Admin@Acme.example")
    actor = api_tokens.authenticate_bearer(token)
    assert (actor.user_id, actor.org_id, actor.role) == (acme.admin.user_id, acme.id, Role.ADMIN)
    assert client.get("/api/billing/summary", headers=bearer(token)).status_code == 200

    # The member belongs to Acme and to their own org: --org is needed, by id or by name.
    error = expect(ErrorCode.VALIDATION_ERROR, api_tokens.create_token_for_email, "member@acme.example")
    assert "--org" in error.message and "Acme" in error.message
    by_name = api_tokens.authenticate_bearer(api_tokens.create_token_for_email("member@acme.example", "acme"))
    by_id = api_tokens.authenticate_bearer(api_tokens.create_token_for_email("member@acme.example", str(acme.id)))
    assert (by_name.org_id, by_name.role) == (by_id.org_id, by_id.role) == (acme.id, Role.MEMBER)

    expect(ErrorCode.FORBIDDEN, api_tokens.create_token_for_email, "admin@acme.example", "Globex")
    expect(ErrorCode.USER_NOT_FOUND, api_tokens.create_token_for_email, "nobody@acme.example")
    expect(ErrorCode.VALIDATION_ERROR, api_tokens.create_token_for_email, "not an email")
    with session_scope() as s:
        s.delete(s.exec(select(Membership).where(Membership.user_id == acme.admin.user_id)).one())
    expect(ErrorCode.NO_ORGANIZATION, api_tokens.create_token_for_email, "admin@acme.example")
