"""A page's backend state, signed in, and its handlers run from a test (no browser, no socket)."""

from __future__ import annotations

from billing_app.auth import accounts
from billing_app.auth.cookies import SESSION_HEADER, SESSION_SCHEME
from billing_app.auth.tokens import token_hash
from billing_app.db import session_scope
from tests.billing.helpers import PASSWORD


def signed_in_page(state_cls, email: str, path: str = ""):
    """The backend's copy of `state_cls` for a tab signed in as `email` (at `path`, when given)."""
    with session_scope() as s:
        token = accounts.login(s, email=email, password=PASSWORD)
    return session_tab(state_cls, token, path)


def session_tab(state_cls, token: str, path: str = ""):
    """A tab of the browser session `token` (its tabs share the session's current org), as a page
    load leaves it before the user can act: showing the session's current org."""
    from reflex.state import State

    root = State(_reflex_internal_init=True)
    _route(root, token, path)
    tab = root.get_substate(state_cls.get_full_name().split(".")[1:])
    tab._actor()  # what every page's load does first
    return tab


async def run_event(event):
    """An event handler's run to its end (a coroutine, or an async generator that yields events)."""
    if hasattr(event, "__anext__"):
        return [step async for step in event]
    return await event


def _root(tab):
    while tab.parent_state is not None:
        tab = tab.parent_state
    return tab


def _route(root, token: str, path: str = "") -> None:
    """What the backend puts on the tab's states for its socket: the session's hash (the cookie,
    replaced), and the page when given."""
    from reflex.istate.data import RouterData

    located = {"pathname": path, "asPath": path} if path else {}
    root.router = RouterData.from_router_data({"headers": {SESSION_HEADER: SESSION_SCHEME + token_hash(token)}, **located})


def log_out(tab) -> None:
    """The navbar's "Log out" on this tab (every page state of the tab shares it)."""
    from billing_app.state import AuthState
    from tests.aio import run_async

    auth = _root(tab).get_substate(AuthState.get_full_name().split(".")[1:])
    run_async(run_event(AuthState.logout.fn(auth)))


def sign_in_on(tab, email: str, path: str = "") -> None:
    """`email` signs in on the same browser tab: its page states stay, its socket carries the new session."""
    with session_scope() as s:
        token = accounts.login(s, email=email, password=PASSWORD)
    _route(_root(tab), token, path)
