"""A live push writes a page only as its own session may see it, checked when the page's turn comes
(its state held), not when the notice started; a push is not the user's activity; a page stays
registered through a failed refresh (billing_app/live.py, AuthState._actor(shared))."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from billing_app import live
from billing_app.auth import accounts, members
from billing_app.auth.cookies import SESSION_HEADER, SESSION_SCHEME
from billing_app.auth.tokens import token_hash
from billing_app.db import session_scope
from billing_app.errors import AppError
from billing_app.models import AuthSession, Organization, Role, utcnow
from tests.aio import run_async
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


def _page(state_cls, session_hash: str, client_token: str = "tab-1"):
    """`state_cls` as the backend holds it for a tab signed in with this session, its page loaded
    (showing the session's current org, as a page load leaves it)."""
    from reflex.istate.data import RouterData
    from reflex.state import State

    root = State(_reflex_internal_init=True)
    root.router = RouterData.from_router_data({"headers": {SESSION_HEADER: SESSION_SCHEME + session_hash}, "token": client_token})
    tab = root.get_substate(state_cls.get_full_name().split(".")[1:])
    try:
        tab._actor()
    except AppError:
        pass  # a session that is no longer valid: its page never showed an org
    return tab


def _seats_page(session_hash: str, client_token: str = "tab-1"):
    from billing_app.components.seats import SeatsBarState

    return _page(SeatsBarState, session_hash, client_token)


class _Tabs:
    """Stands in for Reflex's app in `live.refresh_local`: `modify_state` holds one lock per tab
    (as Reflex does) and hands out the page states given."""

    event_namespace = None  # no socket manager: every registered tab counts as connected

    def __init__(self, pages: dict):
        self.pages = pages
        self.locks = {token: asyncio.Lock() for token in pages}
        self.app = self  # what get_and_validate_app() returns has the app as `.app`

    @contextlib.asynccontextmanager
    async def modify_state(self, token):
        async with self.locks[token.ident]:
            yield _Root(self.pages[token.ident])


class _Root:
    def __init__(self, page):
        self.page = page

    async def get_state(self, _state_cls):
        return self.page


@pytest.fixture
def tabs(monkeypatch):
    """Install a `_Tabs` for `live.refresh_local`; returns a function of {client token: page state}."""
    import reflex.utils.prerequisites as prerequisites

    def install(pages: dict) -> _Tabs:
        app = _Tabs(pages)
        monkeypatch.setattr(prerequisites, "get_and_validate_app", lambda: app)
        return app

    return install


@pytest.mark.parametrize("change", ["logout", "demotion"])
def test_a_page_checks_its_session_when_its_turn_comes_not_when_the_notice_began(db, tabs, change):
    from billing_app.pages.billing import BillingState

    org = make_org("Acme", "ada@example.com", "bob@example.com")
    ada = _session("ada@example.com")
    with session_scope() as s:
        ada_in_acme = accounts.actor_for_session_hash(s, ada)
    members.change_role(ada_in_acme, user_id=org.member.user_id, role=Role.ADMIN)
    bob = _session("bob@example.com", org.id)
    page = _page(BillingState, bob)
    app = tabs({"tab-1": page})
    live.watch(org.id, "tab-1", BillingState, bob)

    async def notice_while_the_tab_is_busy():
        await app.locks["tab-1"].acquire()  # the tab's own event holds it (e.g. its logout)
        notice = asyncio.create_task(live.refresh_local(org.id))
        await asyncio.sleep(0.3)  # the notice has started and waits for the page
        if change == "logout":
            with session_scope() as s:
                accounts.end_session_hash(s, bob)
            page._show(None)
        else:
            members.change_role(ada_in_acme, user_id=org.member.user_id, role=Role.MEMBER)
        app.locks["tab-1"].release()
        return await notice

    run_async(notice_while_the_tab_is_busy())
    if change == "logout":
        assert page.user_email == ""  # not signed in again by the push
    else:
        assert (page.user_email, page.role) == ("bob@example.com", "member")
        assert page.options == []  # a member's copy: plan and status only


def test_the_pages_of_a_notice_check_their_sessions_together_each_its_own(db, tabs, monkeypatch):
    from billing_app.pages.billing import BillingState
    from billing_app.state import AuthState

    org = make_org("Acme", "ada@example.com", "bob@example.com")
    sessions = [_session("bob@example.com", org.id) if n % 2 else _session("ada@example.com") for n in range(20)]
    pages = {f"tab-{n}": _page(BillingState, h, f"tab-{n}") for n, h in enumerate(sessions)}
    tabs(pages)
    for token, h in zip(pages, sessions):
        live.watch(org.id, token, BillingState, h)
    reads = []
    check = AuthState.check_sessions
    monkeypatch.setattr(AuthState, "check_sessions", staticmethod(lambda hashes: reads.append(len(hashes)) or check(hashes)))
    try:
        assert run_async(live.refresh_local(org.id)) == 20
    finally:
        live._watchers.pop(org.id, None)
    assert sum(reads) == 20 and len(reads) <= 15  # the pages held at a moment share a read (9 here)
    for n, page in enumerate(pages.values()):
        assert (page.user_email, page.role) == (("bob@example.com", "member") if n % 2 else ("ada@example.com", "admin"))


def test_a_push_does_not_move_last_seen(db):
    from billing_app.components.seats import SeatsBarState
    from billing_app.pages.billing import BillingState
    from billing_app.pages.members import MembersState
    from billing_app.pages.payments import PaymentsState

    make_org("Acme", "ada@example.com", "bob@example.com")
    ada = _session("ada@example.com")
    pages = {state_cls: _page(state_cls, ada) for state_cls in (SeatsBarState, BillingState, MembersState, PaymentsState)}
    with session_scope() as s:
        row = s.exec(select(AuthSession).where(AuthSession.token_hash == ada)).one()
        row.last_seen_at = long_ago = utcnow() - timedelta(hours=2)
    for state_cls, page in pages.items():
        if state_cls is PaymentsState:
            page.cursors = [""]  # it shows its first page
        page._on_billing_changed(shared={})
        assert page.user_email == "ada@example.com", state_cls
    db.expire_all()
    assert db.exec(select(AuthSession.last_seen_at).where(AuthSession.token_hash == ada)).one() == long_ago
    _page(SeatsBarState, ada)._actor()  # the user's own event does move it
    db.expire_all()
    assert db.exec(select(AuthSession.last_seen_at).where(AuthSession.token_hash == ada)).one() > long_ago


class _Part:
    """A page part as `live` needs it: its session and how to check sessions (all valid here)."""

    _session_hash = "a-session"

    def _notice_key(self):
        return ("session", id(self), self._session_hash)

    @staticmethod
    def check_sessions(session_hashes):
        return {session_hash: ("an actor", []) for session_hash in session_hashes}


class _Flaky(_Part):
    """A page part whose first refresh fails (the database, for a moment)."""

    calls = 0

    def _on_billing_changed(self, shared):
        _Flaky.calls += 1
        if _Flaky.calls == 1:
            raise OperationalError("SELECT 1", {}, Exception("database is locked"))


def test_a_failed_refresh_keeps_the_page_for_the_next_change(tabs):
    tabs({"tab-9": _Flaky()})
    live.watch(9_000_001, "tab-9", _Flaky, "hash")
    try:
        assert run_async(live.refresh_local(9_000_001)) == 0
        assert live.watchers_of(9_000_001) == [("tab-9", _Flaky, "hash")]
        assert run_async(live.refresh_local(9_000_001)) == 1 and _Flaky.calls == 2
    finally:
        live._forget(9_000_001, "tab-9", _Flaky)


def test_a_failed_session_read_fails_those_refreshes_and_never_leaves_one_waiting(tabs):
    class Part(_Part):
        reads = 0
        refreshed = 0

        @staticmethod
        def check_sessions(session_hashes):
            Part.reads += 1
            if Part.reads == 1:
                raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))
            if Part.reads == 2:
                return {}  # an answer that names no session: a bug must not leave the page waiting
            return _Part.check_sessions(session_hashes)

        def _on_billing_changed(self, shared):
            Part.refreshed += 1

    tabs({"tab-7": Part()})
    live.watch(9_000_004, "tab-7", Part, "a-session")

    async def notice():
        return await asyncio.wait_for(live.refresh_local(9_000_004), timeout=10)

    try:
        assert run_async(notice()) == 0 and run_async(notice()) == 0  # failed, not stuck
        assert run_async(notice()) == 1 and Part.refreshed == 1  # still registered
    finally:
        live._watchers.pop(9_000_004, None)


def test_a_full_org_makes_room_from_the_session_with_the_most_tabs_a_whole_tab_at_a_time():
    org_id = 9_000_002

    class Billing:
        pass

    class Seats:
        pass

    try:
        for tab in ("ada-1", "ada-2", "ada-3"):  # a real user: three billing tabs, two parts each
            live.watch(org_id, tab, Billing, "ada")
            live.watch(org_id, tab, Seats, "ada")
        # Tabs by the hundred over 25 sessions: each ends with 4 tabs (fewer parts than ada's 6).
        for n in range(live.MAX_WATCHERS_PER_ORG + 50):
            live.watch(org_id, f"mallory-{n}", Seats, f"mallory-{n % 25}")
        live.watch(org_id, "bob-tab", Billing, "bob")
        held = live.watchers_of(org_id)
        assert len(held) <= live.MAX_WATCHERS_PER_ORG
        for tab in ("ada-1", "ada-2", "ada-3"):
            assert (tab, Billing, "ada") in held and (tab, Seats, "ada") in held
        assert ("bob-tab", Billing, "bob") in held
        # Only whole tabs went: no tab keeps one part and lost the other.
        parts = Counter(token for token, _cls, _session in held)
        assert all(parts[tab] == 2 for tab in ("ada-1", "ada-2", "ada-3"))
    finally:
        live._watchers.pop(org_id, None)


def test_one_process_forgets_a_closed_tab_and_refreshes_an_open_one(tabs):
    """Without Redis too, Reflex's token manager knows which tabs have a socket here."""
    from reflex.utils.token_manager import LocalTokenManager

    class Part(_Part):
        refreshed = 0

        def _on_billing_changed(self, shared):
            Part.refreshed += 1

    app = tabs({"open-tab": Part(), "closed-tab": Part()})
    manager = LocalTokenManager()
    run_async(manager.link_token_to_sid("open-tab", "sid-1"))
    app.event_namespace = type("Namespace", (), {"_token_manager": manager})()
    org_id = 9_000_003
    live.watch(org_id, "open-tab", Part, "h1")
    live.watch(org_id, "closed-tab", Part, "h2")
    try:
        assert run_async(live.refresh_local(org_id)) == 1 and Part.refreshed == 1
        assert live.watchers_of(org_id) == [("open-tab", Part, "h1")]
    finally:
        live._watchers.pop(org_id, None)


def test_each_page_of_a_notice_gets_only_what_its_own_session_may_see(db):
    ada = _signed_up("ada@example.com", "Analytical Engines")
    eve = _signed_up("eve@example.com", "Eve's Org")
    shared: dict = {}

    ada_page, eve_page = _seats_page(ada, "tab-ada"), _seats_page(eve, "tab-eve")
    ada_page._on_billing_changed(shared=shared)
    eve_page._on_billing_changed(shared=shared)
    assert (ada_page.user_email, ada_page.org_name) == ("ada@example.com", "Analytical Engines")
    assert (eve_page.user_email, eve_page.org_name) == ("eve@example.com", "Eve's Org")
    assert ada_page.text and eve_page.text

    # A tab whose session is gone gets nothing.
    ended_page = _seats_page("f" * 64, "tab-ended")
    ended_page._on_billing_changed(shared=shared)
    assert (ended_page.user_email, ended_page.text) == ("", "")


def test_the_seats_read_once_per_org_serves_only_that_org(db):
    ada = _signed_up("ada@example.com", "Analytical Engines")
    make_org("Eve's Org", "eve@example.com", "mia@example.com")
    eve = _session("eve@example.com")
    shared: dict = {}
    pages = [_seats_page(h, f"tab-{n}") for n, h in enumerate((ada, eve, ada))]
    for page in pages:
        page._on_billing_changed(shared=shared)
    orgs = {o.name: o.id for o in db.exec(select(Organization)).all()}
    assert shared[("seats", orgs["Analytical Engines"])].used == 1
    assert shared[("seats", orgs["Eve's Org"])].used == 2
    assert [p.used for p in pages] == [1, 2, 1]


def test_pages_asking_at_the_same_moment_share_the_first_ones_read():
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
