"""/invite/<token>: the invitee's side of an invitation: log in or sign up, then accept or decline.

The token comes from the page's URL each time (no state var holds it); the server decides
everything again on accept (auth/invitations.py): the invitation still open, and the signed-in
user the one it was sent to. Accepting may raise a per-seat plan's Stripe quantity, so it runs as
a background event.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import reflex as rx

from billing_app import limits, live, routes
from billing_app.auth import accounts, invitations
from billing_app.billing import turns
from billing_app.components.layout import error_callout, info_callout, page_frame
from billing_app.db import session_scope
from billing_app.errors import AppError
from billing_app.formatting import format_date
from billing_app.state import AuthState, in_a_thread

class InviteState(AuthState):
    found: bool = False
    status: str = ""
    org_name: str = ""
    email: str = ""
    role: str = ""
    invited_by: str = ""
    expires: str = ""
    login_href: str = ""
    register_href: str = ""
    error: str = ""
    message: str = ""
    busy: str = ""  # accept | decline

    @property
    def _token(self) -> str:
        """The token from the URL (/invite/<token>); never kept in a state var."""
        path = self.router.url.path.rstrip("/")
        return path.rsplit("/", 1)[-1] if path.startswith("/invite/") else ""

    @rx.var
    def wrong_user(self) -> bool:
        return self.is_authenticated and self.email != "" and self.user_email.lower() != self.email

    @in_a_thread
    def load(self):
        self.error = self.message = self.busy = ""
        try:
            self._actor() if self._session_hash else self._show(None)  # who is looking, if anyone
        except AppError:
            self._show(None)
        token = self._token
        try:
            view = invitations.find(token)
        except AppError as error:
            self.found, self.error = False, error.message
            return
        self.found, self.status = True, view.status
        self.org_name, self.email, self.role = view.org_name, view.email, view.role.label
        self.invited_by, self.expires = view.invited_by, format_date(view.expires_at)
        here = routes.invite_path(token)
        self.login_href = routes.login_url(here)
        self.register_href = f"{routes.REGISTER}?{urlencode({'next': here, 'email': view.email})}"

    async def _act(self, busy: str, fn, *, in_orgs_turn: bool = False):
        async with self:
            self.error, self.message, self.busy = "", "", busy
            token = self._token
        try:
            actor = await self._actor_in_background()
            await limits.hit_in_thread(limits.ACCOUNT_USER, actor.user_id)
            org_id = await asyncio.to_thread(invitations.open_invitation_org, actor, token)
            if in_orgs_turn:  # an acceptance waits for the inviting org's seat claim: in one of its turns
                result = await turns.in_turn(org_id, fn, actor, token)
            else:
                result = await asyncio.to_thread(fn, actor, token)
        except AppError as error:
            await self._show_refusal(error)
            return None, False
        # Answered (a member more, or an invitation no longer pending): the org's open pages show it.
        await live.notify_after_action(org_id)
        return result, True

    @rx.event(background=True)
    async def accept(self):
        org_id, ok = await self._act("accept", invitations.accept, in_orgs_turn=True)
        if not ok:
            return
        async with self:
            session_hash = self._session_hash

        def switch():
            with session_scope() as session:
                accounts.switch_org_hash(session, session_hash, org_id)

        await asyncio.to_thread(switch)
        async with self:
            self.status, self.busy = "accepted", ""
        yield rx.redirect(routes.MEMBERS)

    @rx.event(background=True)
    async def decline(self):
        _, ok = await self._act("decline", invitations.decline)
        if ok:
            async with self:
                self.status, self.busy = "declined", ""
                self.message = "You declined the invitation."


def _pending() -> rx.Component:
    return rx.cond(
        ~AuthState.is_authenticated,
        rx.vstack(
            rx.text("Log in or create an account with ", rx.text.strong(InviteState.email), " to accept.", size="2"),
            rx.hstack(
                rx.link(rx.button("Log in to accept"), href=InviteState.login_href, id="invite-login"),
                rx.link(rx.button("Create an account", variant="soft"), href=InviteState.register_href, id="invite-register"),
                spacing="2",
                wrap="wrap",
            ),
            spacing="3",
        ),
        rx.cond(
            InviteState.wrong_user,
            rx.vstack(
                rx.callout(
                    rx.text("You are signed in as ", rx.text.strong(AuthState.user_email), ", but this invitation is for ",
                            rx.text.strong(InviteState.email), ". Log in with that email to accept it."),
                    icon="triangle-alert", color_scheme="orange", id="invite-wrong-user",
                ),
                rx.button("Log out", variant="soft", on_click=AuthState.logout),
                spacing="3",
            ),
            rx.hstack(
                rx.button("Accept invitation", on_click=InviteState.accept, loading=InviteState.busy == "accept",
                          disabled=InviteState.busy != "", id="accept-invitation"),
                rx.button("Decline", variant="soft", color_scheme="gray", on_click=InviteState.decline,
                          loading=InviteState.busy == "decline", disabled=InviteState.busy != "", id="decline-invitation"),
                spacing="2",
            ),
        ),
    )


@rx.page(route=routes.INVITE, title="Invitation · Billing", on_load=InviteState.load)
def invite_page() -> rx.Component:
    return page_frame(
        rx.center(
            rx.card(
                rx.vstack(
                    rx.heading("Invitation", size="6"),
                    error_callout(InviteState.error),
                    info_callout(InviteState.message),
                    rx.cond(
                        InviteState.found,
                        rx.vstack(
                            rx.text(
                                rx.cond(InviteState.invited_by != "", InviteState.invited_by, "An admin"),
                                " invited ", rx.text.strong(InviteState.email), " to join ",
                                rx.text.strong(InviteState.org_name, id="invite-org"), " as ", rx.text.strong(InviteState.role), ".",
                            ),
                            rx.cond(
                                InviteState.status == "pending",
                                rx.vstack(
                                    rx.text("The invitation expires on ", InviteState.expires, ".", size="2", color_scheme="gray"),
                                    _pending(),
                                    spacing="3",
                                ),
                                rx.text(
                                    rx.match(
                                        InviteState.status,
                                        *[(key, text) for key, text in invitations.CLOSED_MESSAGES.items()],
                                        "",
                                    ),
                                    id="invite-status",
                                ),
                            ),
                            spacing="3",
                            width="100%",
                        ),
                    ),
                    spacing="4",
                    width="100%",
                ),
                size="3",
                width="100%",
                max_width="34em",
            ),
            width="100%",
        )
    )
