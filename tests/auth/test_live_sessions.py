"""A live notice checks the sessions of all the org's open pages in one read, and each page still
gets only what its own session may see (billing_app/live.py, AuthState.sessions_for_notice)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import event
from sqlmodel import select

from billing_app.auth import accounts
from billing_app.auth.cookies import SESSION_HEADER, SESSION_SCHEME
from billing_app.auth.tokens import token_hash
from billing_app.db import get_engine, session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import AuthSession, Organization, utcnow
from tests.billing.helpers import PASSWORD, make_org


def _signed_up(email: str, org: str) -> str:
    """A new user with an org of their own; the hash of a new session of theirs."""
    with session_scope() as s:
        accounts.register(s, email=email, password=PASSWORD, name=email.split("@")[0], org_name=org)
    return _session(email)


def _session(email: str, org_id: int | None = None) -> str:
    """The hash of a new session of `email` (in `org_id` when given)."""
    with session_scope() as s:
        token = accounts.login(s, email=email, password=PASSWORD)
        if org_id is not None:
            accounts.switch_org(s, token, org_id)
    return token_hash(token)


def _seats_page(session_hash: str):
    """The billing page's seats bar as the backend holds it for a tab signed in with this session."""
    from reflex.istate.data import RouterData
    from reflex.state import State

    from billing_app.components.seats import SeatsBarState

    root = State(_reflex_internal_init=True)
    root.router = RouterData.from_router_data({"headers": {SESSION_HEADER: SESSION_SCHEME + session_hash}})
    return root.get_substate(SeatsBarState.get_full_name().split(".")[1:])


class _Statements:
    def __init__(self):
        self.count = 0

    def __enter__(self):
        event.listen(get_engine(), "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *_exc):
        event.remove(get_engine(), "before_cursor_execute", self._seen)

    def _seen(self, *_args):
        self.count += 1


def test_many_sessions_are_checked_in_two_queries_each_with_its_own_answer(db):
    org = make_org("Analytical Engines", "ada@example.com", "bob@example.com")
    ada, bob = _session("ada@example.com"), _session("bob@example.com", org.id)
    eve = _signed_up("eve@example.com", "Eve's Org")
    expired = _signed_up("old@example.com", "Old Org")
    with session_scope() as s:
        row = s.exec(select(AuthSession).where(AuthSession.token_hash == expired)).one()
        row.expires_at = utcnow() - timedelta(seconds=1)
        ada_row = s.exec(select(AuthSession).where(AuthSession.token_hash == ada)).one()
        ada_row.last_seen_at = long_ago = utcnow() - timedelta(hours=2)

    with _Statements() as statements, session_scope() as s:
        found = accounts.actors_and_orgs(s, {ada, bob, eve, expired, "forged"})
    assert statements.count == 2
    # A refresh the server pushes is not the user's activity: "last seen" stays.
    db.expire_all()
    assert db.exec(select(AuthSession.last_seen_at).where(AuthSession.token_hash == ada)).one() == long_ago

    for session_hash in (ada, bob, eve):
        with session_scope() as s:
            assert found[session_hash] == accounts.actor_and_orgs(s, session_hash)
    assert found[bob][0].user_id == org.member.user_id and found[bob][0].role.value == "member"
    assert found[bob][0].org_id == org.id and len(found[bob][1]) == 2
    assert found[eve][0].org_name == "Eve's Org" and [o.name for o in found[eve][1]] == ["Eve's Org"]
    assert isinstance(found[expired], AppError) and found[expired].code == ErrorCode.SESSION_EXPIRED
    assert isinstance(found["forged"], AppError) and found["forged"].code == ErrorCode.UNAUTHENTICATED
    db.expire_all()  # the user's own request does move it
    assert db.exec(select(AuthSession.last_seen_at).where(AuthSession.token_hash == ada)).one() > long_ago


def test_each_page_of_a_notice_gets_only_what_its_own_session_may_see(db):
    from billing_app.state import AuthState

    ada = _signed_up("ada@example.com", "Analytical Engines")
    eve = _signed_up("eve@example.com", "Eve's Org")
    shared = AuthState.sessions_for_notice({ada, eve})

    ada_page, eve_page = _seats_page(ada), _seats_page(eve)
    ada_page.on_billing_changed(shared=shared)
    eve_page.on_billing_changed(shared=shared)
    assert (ada_page.user_email, ada_page.org_name) == ("ada@example.com", "Analytical Engines")
    assert (eve_page.user_email, eve_page.org_name) == ("eve@example.com", "Eve's Org")
    assert ada_page.text and eve_page.text

    # A tab that signed in anew since it registered holds a session the notice did not read: it
    # checks its own; one whose session is gone gets nothing.
    newer = _signed_up("leo@example.com", "Leo's Org")
    newer_page = _seats_page(newer)
    newer_page.on_billing_changed(shared=shared)
    assert newer_page.user_email == "leo@example.com"
    ended_page = _seats_page("f" * 64)
    ended_page.on_billing_changed(shared=shared)
    assert (ended_page.user_email, ended_page.text) == ("", "")


def test_the_seats_read_once_per_org_serves_only_that_org(db):
    from billing_app.state import AuthState

    ada = _signed_up("ada@example.com", "Analytical Engines")
    make_org("Eve's Org", "eve@example.com", "mia@example.com")
    eve = _session("eve@example.com")
    shared = AuthState.sessions_for_notice({ada, eve})
    pages = [_seats_page(h) for h in (ada, eve, ada)]
    for page in pages:
        page.on_billing_changed(shared=shared)
    orgs = {o.name: o.id for o in db.exec(select(Organization)).all()}
    assert shared[("seats", orgs["Analytical Engines"])].used == 1
    assert shared[("seats", orgs["Eve's Org"])].used == 2
    assert [p.used for p in pages] == [1, 2, 1]


def test_pages_asking_at_the_same_moment_share_the_first_ones_read():
    from billing_app import live

    shared, reads, together = {}, [], threading.Barrier(8)

    def read():
        reads.append(1)
        time.sleep(0.2)  # the other seven ask meanwhile
        return object()

    def page(_):
        together.wait()
        return live.read_once(shared, ("billing", 1, True), read)

    with ThreadPoolExecutor(8) as pool:
        seen = list(pool.map(page, range(8)))
    assert len(reads) == 1 and all(value is seen[0] for value in seen)
    assert live.read_once(shared, ("billing", 2, True), read) is not seen[0] and len(reads) == 2
