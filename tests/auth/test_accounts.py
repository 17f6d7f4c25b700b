"""Accounts against a real, migrated database (SQLite, and PostgreSQL when configured)."""

from datetime import timedelta

import pytest
from sqlmodel import func, select

from billing_app.auth import accounts, invitations, members
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import AuthSession, Membership, Organization, Role, User, utcnow

PASSWORD = "correct-horse-battery"


def register(email="ada@example.com", org="Analytical Engines", password=PASSWORD):
    with session_scope() as s:
        return accounts.register(s, email=email, password=password, name="Ada", org_name=org)


def actor(token):
    with session_scope() as s:
        return accounts.actor_for_session(s, token)


def login(email, password=PASSWORD):
    with session_scope() as s:
        return accounts.login(s, email=email, password=password)


def counts(db):
    db.expire_all()
    return tuple(db.exec(select(func.count()).select_from(m)).one() for m in (User, Organization, Membership))


def expect(code, fn, *args, **kwargs):
    with pytest.raises(AppError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value.message
    return info.value


def test_register_creates_user_org_and_admin_membership(db):
    user = register(email="  Ada@Example.COM ")
    membership = db.exec(select(Membership).where(Membership.user_id == user.id)).one()
    assert db.get(User, user.id).email == "ada@example.com"
    assert membership.role == Role.ADMIN.value
    assert db.get(Organization, membership.org_id).name == "Analytical Engines"
    assert db.get(User, user.id).password_hash.startswith("$argon2id$")


def test_duplicate_email_any_case_is_refused_and_nothing_half_created(db):
    register()
    before = counts(db)
    error = expect(ErrorCode.EMAIL_TAKEN, register, email="ADA@example.com", org="Second Org")
    assert "already exists" in error.message
    assert counts(db) == before


@pytest.mark.parametrize("password", ["", "short", "123456789"])
def test_weak_password_creates_nothing(db, password):
    error = expect(ErrorCode.WEAK_PASSWORD, register, password=password)
    assert "10 characters" in error.message
    assert counts(db) == (0, 0, 0)


def test_bad_email_and_empty_org_are_refused(db):
    expect(ErrorCode.VALIDATION_ERROR, register, email="not-an-email")
    expect(ErrorCode.VALIDATION_ERROR, register, org="   ")
    assert counts(db) == (0, 0, 0)


def test_login_returns_a_session_in_the_users_org(db):
    register()
    who = actor(login("ada@example.com"))
    assert (who.email, who.org_name, who.role) == ("ada@example.com", "Analytical Engines", Role.ADMIN)
    # Only the hash is stored.
    assert db.exec(select(AuthSession.token_hash)).one() != login("ada@example.com")


def test_wrong_password_and_unknown_email_read_the_same(db):
    register()
    wrong = expect(ErrorCode.INVALID_CREDENTIALS, login, "ada@example.com", "wrong-password-1")
    unknown = expect(ErrorCode.INVALID_CREDENTIALS, login, "nobody@example.com", "wrong-password-1")
    assert wrong.message == unknown.message == accounts.BAD_LOGIN


def test_login_is_throttled_after_repeated_failures_even_with_the_right_password(db):
    register()
    for _ in range(5):
        expect(ErrorCode.INVALID_CREDENTIALS, login, "ada@example.com", "wrong-password-1")
    error = expect(ErrorCode.TOO_MANY_ATTEMPTS, login, "ada@example.com", PASSWORD)
    assert "Try again" in error.message


def test_unknown_emails_are_throttled_too_so_the_lock_reveals_nothing(db):
    for _ in range(5):
        expect(ErrorCode.INVALID_CREDENTIALS, login, "ghost@example.com", "wrong-password-1")
    expect(ErrorCode.TOO_MANY_ATTEMPTS, login, "ghost@example.com", "wrong-password-1")


def test_a_success_resets_the_failure_count(db):
    register()
    for _ in range(4):
        expect(ErrorCode.INVALID_CREDENTIALS, login, "ada@example.com", "wrong-password-1")
    login("ada@example.com")
    for _ in range(4):
        expect(ErrorCode.INVALID_CREDENTIALS, login, "ada@example.com", "wrong-password-1")
    login("ada@example.com")


def test_expired_session_is_refused_until_the_next_login_purges_it(db):
    register()
    token = login("ada@example.com")
    row = db.exec(select(AuthSession)).one()
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.add(row)
    db.commit()
    error = expect(ErrorCode.SESSION_EXPIRED, actor, token)
    assert "expired" in error.message
    expect(ErrorCode.SESSION_EXPIRED, actor, token)
    fresh = login("ada@example.com")
    assert actor(fresh).email == "ada@example.com"
    expect(ErrorCode.UNAUTHENTICATED, actor, token)


def test_logout_ends_the_session(db):
    register()
    token = login("ada@example.com")
    with session_scope() as s:
        accounts.end_session(s, token)
    expect(ErrorCode.UNAUTHENTICATED, actor, token)
    expect(ErrorCode.UNAUTHENTICATED, actor, "")
    expect(ErrorCode.UNAUTHENTICATED, actor, "sess_forged")


def test_the_direct_add_is_gone_members_join_by_invitation(db):
    """Members join with their consent (tests/teams covers invitations): no service adds a user outright."""
    assert not hasattr(accounts, "add_member")


def _org_with_member(db):
    """Ada admin of her org; Bob a plain member of it. Returns (admin actor, member actor)."""
    register()
    register(email="bob@example.com", org="Bob's Org")
    admin = actor(login("ada@example.com"))
    invited = invitations.invite(admin, email="bob@example.com")
    bob_token = login("bob@example.com")
    invitations.accept(actor(bob_token), invited.url.rsplit("/", 1)[1])
    with session_scope() as s:
        accounts.switch_org(s, bob_token, admin.org_id)
    return admin, actor(bob_token)


def test_a_member_cannot_invite_members_or_change_roles(db):
    admin, bob = _org_with_member(db)
    assert bob.org_id == admin.org_id and bob.role == Role.MEMBER
    register(email="carol@example.com", org="Carol's Org")
    before = counts(db)
    expect(ErrorCode.FORBIDDEN, invitations.invite, bob, email="carol@example.com")
    expect(ErrorCode.FORBIDDEN, members.change_role, bob, user_id=bob.user_id, role=Role.ADMIN)
    assert counts(db) == before


def test_admin_changes_roles_but_never_removes_the_last_admin(db):
    admin, bob = _org_with_member(db)
    expect(ErrorCode.LAST_ADMIN, members.change_role, admin, user_id=admin.user_id, role=Role.MEMBER)
    members.change_role(admin, user_id=bob.user_id, role=Role.ADMIN)
    # With two admins, Ada may step down.
    members.change_role(admin, user_id=admin.user_id, role=Role.MEMBER)
    roles = {m.user_id: m.role for m in db.exec(select(Membership).where(Membership.org_id == admin.org_id))}
    assert roles == {admin.user_id: "member", bob.user_id: "admin"}


def test_only_a_super_admin_grants_super_admin(db):
    admin, bob = _org_with_member(db)
    expect(ErrorCode.FORBIDDEN, members.change_role, admin, user_id=bob.user_id, role=Role.SUPER_ADMIN)
    membership = db.exec(select(Membership).where(Membership.user_id == admin.user_id, Membership.org_id == admin.org_id)).one()
    membership.role = Role.SUPER_ADMIN.value
    db.add(membership)
    db.commit()
    super_admin = actor(login("ada@example.com"))
    members.change_role(super_admin, user_id=bob.user_id, role=Role.SUPER_ADMIN)


def test_switching_org_needs_membership(db):
    admin, bob = _org_with_member(db)
    token = login("bob@example.com")
    orgs = {o.name: o.id for o in accounts.organizations_of(db, bob.user_id)}
    assert set(orgs) == {"Analytical Engines", "Bob's Org"}
    with session_scope() as s:
        assert accounts.switch_org(s, token, orgs["Bob's Org"]).role == Role.ADMIN
    register(email="eve@example.com", org="Eve's Org")
    eve_org = db.exec(select(Organization.id).where(Organization.name == "Eve's Org")).one()
    with session_scope() as s:
        expect(ErrorCode.NOT_A_MEMBER, accounts.switch_org, s, token, eve_org)
    assert actor(token).org_name == "Bob's Org"


def test_a_login_starts_in_the_org_last_switched_to_and_in_the_first_once_that_one_is_left(db):
    admin, _ = _org_with_member(db)  # Bob's first org is his own; he then switched to Ada's
    assert actor(login("bob@example.com")).org_id == admin.org_id
    own = db.exec(select(Organization.id).where(Organization.name == "Bob's Org")).one()
    with session_scope() as s:
        accounts.switch_org(s, login("bob@example.com"), own)
    assert actor(login("bob@example.com")).org_id == own
    with session_scope() as s:
        in_adas = accounts.switch_org(s, login("bob@example.com"), admin.org_id)
    members.leave(in_adas)
    assert actor(login("bob@example.com")).org_id == own


def test_parallel_guesses_cannot_exceed_the_limit(db):
    from concurrent.futures import ThreadPoolExecutor

    register()

    def guess(_):
        try:
            login("ada@example.com", "wrong-password-1")
        except AppError as error:
            return error.code
        return "logged in"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(guess, range(20)))
    assert outcomes.count(ErrorCode.INVALID_CREDENTIALS) == 5
    assert outcomes.count(ErrorCode.TOO_MANY_ATTEMPTS) == 15


# --- a user in no organization makes one -----------------------------------------------------------

def _in_no_org(db) -> str:
    """Ada, after handing her only organization to Bob and leaving it: a session of hers, in no org."""
    admin, bob = _org_with_member(db)
    members.change_role(admin, user_id=bob.user_id, role=Role.ADMIN)
    members.leave(admin)
    token = login("ada@example.com")
    assert actor(token).org_id is None
    return token


def create_org(token, name):
    from billing_app.auth.tokens import token_hash

    with session_scope() as s:
        return accounts.create_org_hash(s, token_hash(token), name)


def test_a_user_in_no_organization_creates_one_as_its_admin_and_the_session_moves_to_it(db):
    token = _in_no_org(db)
    other_tab_of_the_browser = token
    made = create_org(token, "  Second Start  ")
    assert (made.org_name, made.role) == ("Second Start", Role.ADMIN)
    assert actor(other_tab_of_the_browser).org_id == made.org_id
    assert actor(login("ada@example.com")).org_id == made.org_id  # the next login starts there too
    assert [(o.name, o.role) for o in accounts.organizations_of(db, made.user_id)] == [("Second Start", Role.ADMIN)]


@pytest.mark.parametrize(("name", "says"), [
    ("", "Enter a name for your organization."),
    ("   ", "Enter a name for your organization."),
    ("x" * 121, "Organization name is too long (120 characters at most)."),
    ("Acme\nInc", "The organization name cannot contain line breaks or control characters."),
    (None, "Enter a name for your organization."),
])
def test_creating_an_organization_with_a_name_sign_up_refuses_is_refused_and_creates_nothing(db, name, says):
    token = _in_no_org(db)
    before = counts(db)
    assert expect(ErrorCode.VALIDATION_ERROR, create_org, token, name).message == says
    assert counts(db) == before and actor(token).org_id is None


def test_a_user_in_an_organization_does_not_create_another(db):
    # Sign-up made them one and others invite them: the form is the way back for someone in none.
    _org_with_member(db)
    before = counts(db)
    error = expect(ErrorCode.ALREADY_MEMBER, create_org, login("bob@example.com"), "Bob's Second")
    assert error.message == accounts.ALREADY_IN_AN_ORG
    assert counts(db) == before


def test_two_creates_at_once_by_one_user_make_one_organization(db):
    # Two tabs (or a double click) send the form together: one organization, the other refused.
    import threading
    from concurrent.futures import ThreadPoolExecutor

    token = _in_no_org(db)
    before = counts(db)
    together = threading.Barrier(4)

    def create(n):
        together.wait()
        try:
            return create_org(token, f"Try {n}").org_name
        except AppError as error:
            return error.code

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(create, range(4)))
    assert outcomes.count(ErrorCode.ALREADY_MEMBER) == 3, outcomes
    assert counts(db) == (before[0], before[1] + 1, before[2] + 1)
    assert actor(token).org_name in outcomes
