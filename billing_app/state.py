"""Shared state: who is signed in, and as what. Imports no page.

The browser's session token lives only in an HttpOnly cookie set by the backend's session routes
(api/session.py); no state holds it or any other secret, because Reflex persists states. On the
event socket the backend replaces the cookie with the session's SHA-256 (auth/cookies.py), and
every handler that acts or reads re-resolves that against the database (`_actor`), so an ended,
expired or forged session gets nothing, and the display fields below are never trusted for a
decision.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Iterable

import reflex as rx
from reflex_base.event import Event
from reflex_base.event.context import EventContext

from billing_app import live, routes
from billing_app.auth import accounts
from billing_app.auth.accounts import Actor
from billing_app.auth.cookies import SESSION_COOKIE, session_hash_from_headers
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import MAX_ID, Role, id_from_text

__all__ = ["AuthState", "SESSION_COOKIE", "backend_url", "clear_cookie_script", "form_text", "leave_to"]


def form_text(form, key: str) -> str:
    """A form field as text. Events can be hand-crafted, so a value may be anything, or missing."""
    value = form.get(key) if isinstance(form, dict) else None
    return value if isinstance(value, str) else ""


def id_from_page(value, unknown: str) -> int:
    """An id a page sent back (a row's button). Events can be hand-crafted: anything but an id
    (digits or a JSON integer, from 1 to MAX_ID; not a float, a bool or " 7") names nothing,
    refused with `unknown` ("No such session.")."""
    if isinstance(value, str):
        value = id_from_text(value)
    if type(value) is not int or not 1 <= value <= MAX_ID:
        raise AppError(ErrorCode.NOT_FOUND, unknown)
    return value


def backend_url(path: str) -> str:
    """An absolute URL of a backend route (the session routes), for links and form actions."""
    from reflex.config import get_config

    return get_config().api_url.rstrip("/") + path


def leave_to(url: str):
    """A full page load of `url` (a backend route must not be taken over by the client-side router)."""
    return rx.call_script(f"window.location.assign({json.dumps(url)})")


def clear_cookie_script():
    """POST to the logout route from the page, so the backend clears the HttpOnly session cookie."""
    url = json.dumps(backend_url(routes.API_SESSION_LOGOUT))
    return rx.call_script(f"fetch({url}, {{method: 'POST', credentials: 'include'}}).catch(() => {{}})")


class BusyForm(rx.State, mixin=True):
    """A form whose slow work runs in a background handler: `busy` spins its button, `error` says why not."""

    error: str = ""
    message: str = ""
    busy: bool = False

    async def _refused(self, error: AppError) -> None:
        """Show the refusal and stop the spinner (from a background handler, outside `async with self`)."""
        async with self:
            self.error, self.busy = error.message, False


def in_a_thread(body):
    """A page event whose body uses the database (`body(self, ...)`, written as a plain method).

    It runs as a background event: the page's state is held while the body runs in a thread, so
    the event loop keeps serving every other page of this backend meanwhile (Reflex runs a plain
    handler on the loop: many pages loading at once, e.g. reconnecting after a backend restart,
    would stall them all), and a live refresh of the page waits for it instead of crossing it.
    """

    @functools.wraps(body)  # Reflex reads the event's arguments from the body's signature
    async def handler(self, *args, **kwargs):
        async with self:
            return await asyncio.to_thread(body, self, *args, **kwargs)

    return rx.event(handler, background=True)


SIGNED_OUT = (ErrorCode.UNAUTHENTICATED, ErrorCode.SESSION_EXPIRED)  # refusals that only a new login cures
RELOAD_TO_CONTINUE = "Reload the page to continue."  # a reloaded page shows the org switched to


def refuse_if_switched(actor: Actor, orgs: Iterable[accounts.OrgChoice], shown_id: int, shown_name: str = "") -> None:
    """Refuse an action whose tab shows another org than the session's current one (a switch in
    another tab of the same browser): it would act on an org the page never showed. `orgs`: the
    user's organizations now. One who is no longer in the org the tab shows did not switch: in no
    organization any more, NO_ORGANIZATION, which sends the tab home as a page load does
    (`AuthState._signed_out`); still in another, NOT_A_MEMBER, saying so."""
    if shown_id and actor.org_id is None:
        actor.require_org()
    if shown_id and all(org.id != shown_id for org in orgs):
        # Without the name (a link's bare id) it may be an org they never were in: no "no longer".
        said = f"You are no longer a member of {shown_name}." if shown_name else \
            "You are not a member of the organization this page shows."
        raise AppError(ErrorCode.NOT_A_MEMBER, f"{said} {RELOAD_TO_CONTINUE}")
    if (actor.org_id or 0) != shown_id:
        shown = shown_name or ("another organization" if shown_id else "no organization")
        raise AppError(
            ErrorCode.ORG_SWITCHED,
            f"This page shows {shown}, but you switched to "
            f"{actor.org_name or 'no organization'} in another tab. {RELOAD_TO_CONTINUE}",
        )


class AuthState(rx.State):
    # Display copies of the server's records, refreshed on every page load. `org_id` is also the
    # org this tab shows, which acting handlers hold the session to (`keep_org`); only the server
    # sets it (no setters: Reflex's auto-setters are off).
    user_email: str = ""
    user_name: str = ""
    org_id: int = 0
    org_name: str = ""
    role: str = ""
    orgs: list[dict[str, str]] = []

    @rx.var
    def is_authenticated(self) -> bool:
        return self.user_email != ""

    @rx.var
    def is_admin(self) -> bool:
        return self.role in ("admin", "super_admin")

    @rx.var
    def role_label(self) -> str:
        return Role(self.role).label if self.role else ""

    @property
    def _session_hash(self) -> str:
        """SHA-256 of this socket's session cookie ("" when signed out); see auth/cookies.py."""
        return session_hash_from_headers(self.router.headers.raw_headers)

    @property
    def session_token(self) -> str:
        """Non-empty when the browser sent a session cookie (kept for pages that ask "is anyone
        signed in?"). It is the session's hash, not the token: no state can hold the token."""
        return self._session_hash

    def _actor(self, shared: dict | None = None, *, keep_org: bool = False) -> Actor:
        """The acting user from the database; raises AppError when not signed in.

        `keep_org`: for a handler that acts on (or refreshes) what the tab shows. The session's
        current org is one for all the browser's tabs; when another tab switched it since this one
        loaded, this is refused (ORG_SWITCHED) and the tab keeps showing its org. Without it (a page
        load) the tab adopts the session's current org.

        `shared`: the reads of one live notice (billing_app/live.py). The session is read while this
        page's state is held, as for any event (read earlier for the whole notice, it would miss a
        logout or a demotion meanwhile): `live` reads it with the other pages refreshed at that
        moment, or the page's first part reads it here; its other parts reuse that answer."""
        if shared is None:
            actor, orgs = self._resolve(self._session_hash)
        else:
            session_hash = self._session_hash
            found = live.read_once(shared, self._notice_key(), lambda: self.check_sessions({session_hash})[session_hash])
            if isinstance(found, AppError):
                raise found
            actor, orgs = found
        if keep_org:
            refuse_if_switched(actor, orgs, self.org_id, self.org_name)
        self._show(actor, orgs)
        return actor

    @staticmethod
    def _resolve(session_hash: str) -> tuple[Actor, list[accounts.OrgChoice]]:
        with session_scope() as session:
            return accounts.actor_and_orgs(session, session_hash)

    def _notice_key(self) -> tuple[str, str, str]:
        """Where a live notice keeps this tab's session answer: the tab and its session, never shared with another tab."""
        return ("session", self.router.session.client_token, self._session_hash)

    @staticmethod
    def check_sessions(session_hashes: set[str]) -> dict:
        """For a push: each session's actor and organizations, or its refusal, in one read (two
        queries, however many); "last seen" stays, as the user did nothing."""
        with session_scope() as session:
            return accounts.actors_and_orgs(session, session_hashes)

    def _watch_live(self, org_id: int) -> None:
        """Refresh this page part when a webhook changes the org's billing (billing_app/live.py)."""
        # `__class__`, not type(): in a background event `self` is Reflex's proxy of the state.
        live.watch(org_id, self.router.session.client_token, self.__class__, self._session_hash)

    async def _actor_in_background(self, *, keep_org: bool = False) -> Actor:
        """`_actor` for background events; call it *outside* `async with self`.

        The lock is taken only to read the socket's session and to show the result; the database
        read runs in a thread in between."""
        async with self:
            session_hash, shown_id, shown_name = self._session_hash, self.org_id, self.org_name
        actor, orgs = await asyncio.to_thread(self._resolve, session_hash)
        if keep_org:
            refuse_if_switched(actor, orgs, shown_id, shown_name)
        async with self:
            self._show(actor, orgs)
        return actor

    def _show(self, actor: Actor | None, orgs: list[accounts.OrgChoice] = ()) -> None:
        self.user_email = actor.email if actor else ""
        self.user_name = actor.name if actor else ""
        self.org_id = actor.org_id or 0 if actor else 0
        self.org_name = actor.org_name if actor else ""
        self.role = actor.role.value if actor and actor.role else ""
        self.orgs = [{"id": str(o.id), "name": o.name, "role": o.role.value} for o in orgs]

    def _signed_out(self, error: AppError | None = None):
        """Send the user to the login page, saying why (the cookie stays until the next login or logout).

        Signed in but in no organization (they left, or were removed from, their last one): to the
        home page instead, still signed in, which says so and offers to create one."""
        if error is not None and error.code == ErrorCode.NO_ORGANIZATION:
            return rx.redirect(routes.HOME)
        self._show(None)
        expired = error is not None and error.code == ErrorCode.SESSION_EXPIRED
        return rx.redirect(routes.login_url(self.router.url.path, reason="expired" if expired else None))

    def _signed_out_if(self, error: AppError):
        """An action's refusal: the redirect to login when the session is gone, or home when the user
        is in no organization (as a page load does: a message would leave the page, its figures and
        buttons, with no way on); else None."""
        return self._signed_out(error) if error.code in (*SIGNED_OUT, ErrorCode.NO_ORGANIZATION) else None

    async def _show_refusal(self, error: AppError) -> None:
        """An action's refusal, on a page with `error` and `busy` fields: the tab goes to login when
        the session is gone, else the page says why and the action is no longer busy."""
        if not await self._leave_if_signed_out(error):
            async with self:
                self.error, self.busy = error.message, ""

    async def _leave_if_signed_out(self, error: AppError) -> bool:
        """`_signed_out_if` from a helper of a background event (outside `async with self`), which
        cannot yield for its handler: the redirect is sent to the tab from here. True when sent."""
        async with self:
            redirect = self._signed_out_if(error)
        if redirect is None:
            return False
        await EventContext.get().emit_event(*Event.from_event_type(redirect))  # what a handler's `yield` does
        return True

    @in_a_thread
    def load_identity(self):
        """On public pages: show who is signed in, if anyone; never redirect."""
        if not self._session_hash:
            self._show(None)
            return
        try:
            self._actor()
        except AppError:
            self._show(None)

    @in_a_thread
    def switch_org(self, org_id: str):
        try:
            with session_scope() as session:
                accounts.switch_org_hash(session, self._session_hash, id_from_page(org_id, "Unknown organization."))
            self._actor()
        except AppError as error:
            return rx.toast.error(error.message)
        return rx.redirect(self.router.url.path)

    @in_a_thread
    def logout(self):
        """End the session here, then have the backend clear the HttpOnly cookie (only it can).

        The tab's whole signed-in state goes too (every page's, all substates of this one): whoever
        signs in next on this tab must not receive the last user's figures, nor see them while a
        page loads (the operator console's gate, for one)."""
        with session_scope() as session:
            accounts.end_session_hash(session, self._session_hash)
        self.reset()
        return [clear_cookie_script(), rx.redirect(routes.login_url(reason="logged_out"))]
