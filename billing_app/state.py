"""Shared state: who is signed in, and as what. Imports no page.

The browser holds only the session token (a cookie). Every handler that acts
or reads re-resolves the token against the database (`_actor`), so a copied,
expired or forged value gets nothing, and the display fields below are never
trusted for a decision.
"""

from __future__ import annotations

import reflex as rx

from billing_app import routes
from billing_app.auth import accounts
from billing_app.auth.accounts import Actor
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.settings import get_settings

SESSION_COOKIE = "billing_session"


def form_text(form, key: str) -> str:
    """A form field as text. Events can be hand-crafted, so a value may be anything, or missing."""
    value = form.get(key) if isinstance(form, dict) else None
    return value if isinstance(value, str) else ""


class AuthState(rx.State):
    session_token: str = rx.Cookie(
        "", name=SESSION_COOKIE, same_site="strict", max_age=get_settings().session_lifetime_hours * 3600
    )

    # Display copies of the server's records, refreshed on every page load.
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
        return self.role.replace("_", " ").title()

    def _actor(self) -> Actor:
        """The acting user from the database; raises AppError when not signed in."""
        with session_scope() as session:
            actor = accounts.actor_for_session(session, self.session_token)
            orgs = accounts.organizations_of(session, actor.user_id)
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
        """Forget the session and send the user to the login page, saying why."""
        self._show(None)
        self.session_token = ""
        expired = error is not None and error.code == ErrorCode.SESSION_EXPIRED
        return rx.redirect(routes.login_url(self.router.url.path, reason="expired" if expired else None))

    @rx.event
    def load_identity(self):
        """On public pages: show who is signed in, if anyone; never redirect."""
        if not self.session_token:
            self._show(None)
            return
        try:
            self._actor()
        except AppError:
            self._show(None)

    @rx.event
    def require_login(self):
        """On private pages: the page's own handlers check again; this only redirects early."""
        try:
            self._actor()
        except AppError as error:
            return self._signed_out(error)

    @rx.event
    def switch_org(self, org_id: str):
        try:
            with session_scope() as session:
                accounts.switch_org(session, self.session_token, int(org_id))
            self._actor()
        except (TypeError, ValueError, AppError) as error:
            message = error.message if isinstance(error, AppError) else "Unknown organization."
            return rx.toast.error(message)
        return rx.redirect(self.router.url.path)

    @rx.event
    def logout(self):
        if self.session_token:
            with session_scope() as session:
                accounts.end_session(session, self.session_token)
        self._show(None)
        self.session_token = ""
        return rx.redirect(routes.login_url(reason="logged_out"))
