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
    from reflex.istate.data import RouterData
    from reflex.state import State

    root = State(_reflex_internal_init=True)
    located = {"pathname": path, "asPath": path} if path else {}
    root.router = RouterData.from_router_data({"headers": {SESSION_HEADER: SESSION_SCHEME + token_hash(token)}, **located})
    tab = root.get_substate(state_cls.get_full_name().split(".")[1:])
    tab._actor()  # what every page's load does first
    return tab


async def run_event(event):
    """An event handler's run to its end (a coroutine, or an async generator that yields events)."""
    if hasattr(event, "__anext__"):
        return [step async for step in event]
    return await event
