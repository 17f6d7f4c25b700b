"""Account lifecycle: password change, sessions, log out everywhere, API token expiry and cap, reset links."""

from datetime import timedelta

import pytest
from sqlmodel import select

from billing_app.auth import accounts, api_tokens, reset
from billing_app.auth.accounts import Client
from billing_app.auth.tokens import token_hash
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import ApiToken, PasswordReset, utcnow

PASSWORD = "correct-horse-battery"
NEW_PASSWORD = "a-brand-new-passphrase"


def register(email="ada@example.com"):
    with session_scope() as s:
        return accounts.register(s, email=email, password=PASSWORD, name="Ada", org_name="Engines")


def login(email="ada@example.com", password=PASSWORD, ua="Firefox"):
    with session_scope() as s:
        return accounts.login(s, email=email, password=password, client=Client(ip="192.0.2.1", user_agent=ua))


def actor(token):
    with session_scope() as s:
        return accounts.actor_for_session(s, token)


def expect(code, fn, *args, **kwargs):
    with pytest.raises(AppError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value.message
    return info.value


def change(user_id, current, new, keep):
    with session_scope() as s:
        return accounts.change_password(s, user_id, current=current, new=new, keep_hash=token_hash(keep))


def test_changing_the_password_ends_every_other_session(db):
    user = register()
    here, laptop, phone = login(), login(ua="Safari"), login(ua="Chrome")
    assert change(user.id, PASSWORD, NEW_PASSWORD, here) == 2
    assert actor(here).email == "ada@example.com"
    expect(ErrorCode.UNAUTHENTICATED, actor, laptop)
    expect(ErrorCode.UNAUTHENTICATED, actor, phone)
    expect(ErrorCode.INVALID_CREDENTIALS, login, password=PASSWORD)
    assert login(password=NEW_PASSWORD)


def test_a_wrong_current_password_or_a_weak_new_one_changes_nothing(db):
    user = register()
    here, other = login(), login()
    expect(ErrorCode.INVALID_CREDENTIALS, change, user.id, "not-my-password", NEW_PASSWORD, here)
    expect(ErrorCode.WEAK_PASSWORD, change, user.id, PASSWORD, "short", here)
    assert actor(other).email == "ada@example.com"
    assert login(password=PASSWORD)


def test_the_session_list_shows_the_users_own_sessions_and_ends_one(db):
    user = register()
    other_user = register("bob@example.com")
    here, there = login(), login(ua="Mozilla/5.0 Safari")
    bobs = login("bob@example.com")
    with session_scope() as s:
        rows = accounts.list_sessions(s, user.id, token_hash(here))
    assert len(rows) == 2 and sum(r.current for r in rows) == 1
    assert {r.user_agent for r in rows} == {"Firefox", "Mozilla/5.0 Safari"} and all(r.client_ip == "192.0.2.1" for r in rows)
    theirs = next(r for r in rows if not r.current)
    with session_scope() as s:
        bob_row = accounts.list_sessions(s, other_user.id)[0]
        expect(ErrorCode.NOT_FOUND, accounts.end_session_by_id, s, user.id, bob_row.id)  # not Ada's to end
    with session_scope() as s:
        accounts.end_session_by_id(s, user.id, theirs.id)
    expect(ErrorCode.UNAUTHENTICATED, actor, there)
    assert actor(here) and actor(bobs)


def test_log_out_everywhere_ends_all_sessions_of_the_user_only(db):
    user = register()
    register("bob@example.com")
    mine = [login(), login()]
    bobs = login("bob@example.com")
    with session_scope() as s:
        assert accounts.end_other_sessions(s, user.id) == 2
    for token in mine:
        expect(ErrorCode.UNAUTHENTICATED, actor, token)
    assert actor(bobs).email == "bob@example.com"


def test_an_api_token_expires(db):
    register()
    who = actor(login())
    with session_scope() as s:
        created = api_tokens.create_token(s, who, "nightly", expires_in_days=30)
    assert created.expires_at is not None and created.expires_at > utcnow() + timedelta(days=29)
    assert api_tokens.authenticate_bearer(created.token).user_id == who.user_id
    with session_scope() as s:
        row = s.get(ApiToken, created.id)
        row.expires_at = utcnow() - timedelta(seconds=1)
        s.add(row)
    expect(ErrorCode.UNAUTHENTICATED, api_tokens.authenticate_bearer, created.token)
    with session_scope() as s:
        assert api_tokens.list_tokens(s, who) == []  # an expired token leaves the list like a revoked one
        expect(ErrorCode.VALIDATION_ERROR, api_tokens.create_token, s, who, "x", expires_in_days=0)


def test_a_user_has_at_most_the_configured_number_of_live_tokens(db, monkeypatch):
    from billing_app.settings import get_settings

    monkeypatch.setenv("API_TOKENS_PER_USER", "3")
    get_settings.cache_clear()
    register()
    who = actor(login())
    with session_scope() as s:
        made = [api_tokens.create_token(s, who, f"t{n}") for n in range(3)]
    with session_scope() as s:
        error = expect(ErrorCode.TOKEN_LIMIT_REACHED, api_tokens.create_token, s, who, "one too many")
    assert "Revoke" in error.message
    with session_scope() as s:
        api_tokens.revoke_token(s, who, made[0].id)
    with session_scope() as s:
        assert api_tokens.create_token(s, who, "room again").token.startswith("bapi_")


def test_a_reset_link_goes_through_the_sender_hook_and_works_once(db):
    register()
    session_before = login()
    sent = []
    reset.set_sender(lambda email, url: sent.append((email, url)))
    try:
        reset.request_reset("ADA@example.com")
        reset.request_reset("nobody@example.com")  # no account: silently nothing
        reset.request_reset("ada\x00@example.com")  # not an email (PostgreSQL refused the query: a 500)
    finally:
        reset.set_sender(None)
    assert len(sent) == 1 and sent[0][0] == "ada@example.com"
    token = sent[0][1].split("token=")[1]
    with session_scope() as s:
        assert s.exec(select(PasswordReset)).one().token_hash == token_hash(token)  # only the hash is kept
    reset.reset_password(token, NEW_PASSWORD)
    expect(ErrorCode.UNAUTHENTICATED, actor, session_before)
    assert login(password=NEW_PASSWORD)
    expect(ErrorCode.INVALID_SESSION, reset.reset_password, token, "yet-another-password")


def test_without_a_sender_a_reset_request_sends_nothing_and_says_nothing(db):
    register()
    reset.request_reset("ada@example.com")  # logged only; notifications will register a sender


def test_two_tabs_changing_the_password_at_once_leave_the_loser_signed_in(db, monkeypatch):
    """One browser, two tabs of the account page, both changing the password within argon2's time: the
    first keeps this browser's session, so the second is told the password just changed, not sent to
    log in as if its session had expired."""
    import threading

    from billing_app.state import SIGNED_OUT

    user = register()
    here = login()
    real_verify = accounts.verify_password
    other_tab: list = []

    def change(new):
        with session_scope() as s:
            return accounts.change_password(s, user.id, current=PASSWORD, new=new, keep_hash=token_hash(here))

    def verify_while_the_other_tab_changes(stored, password):
        ok = real_verify(stored, password)
        if not other_tab:
            other_tab.append("running")
            tab = threading.Thread(target=lambda: other_tab.append(change("the-other-tabs-password-7")))
            tab.start()
            tab.join(30)
        return ok

    monkeypatch.setattr(accounts, "verify_password", verify_while_the_other_tab_changes)
    with pytest.raises(AppError) as refused:
        change(NEW_PASSWORD)
    assert other_tab == ["running", 0]  # the other tab's change won
    assert actor(here).email == "ada@example.com"  # this browser is still signed in
    assert refused.value.code not in SIGNED_OUT and "another tab" in refused.value.message
