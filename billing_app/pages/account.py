"""Account security: change the password, see where you are signed in, end sessions.

Changing the password ends every other session; "Log out everywhere" ends them all, this one too.
The password check runs argon2 through the bounded pool in a background event (never on the
event loop), limited per user. Password reset by email arrives with notifications: see
billing_app/auth/reset.py for the hook it will call.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import reflex as rx

from billing_app import limits, routes
from billing_app.auth import accounts
from billing_app.components.forms import field_label
from billing_app.components.layout import data_table, page_frame, page_heading
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.formatting import format_date
from billing_app.state import AuthState, BusyForm, clear_cookie_script, form_text, id_from_page, in_a_thread


@dataclass
class SessionItem:
    id: str = ""
    browser: str = ""
    address: str = ""
    started: str = ""
    last_seen: str = ""
    current: bool = False


def _browser(user_agent: str) -> str:
    for name in ("Edg", "Firefox", "Chrome", "Safari", "curl", "python"):
        if name.lower() in user_agent.lower():
            return {"Edg": "Edge"}.get(name, name)
    return user_agent[:40] or "Unknown browser"


class AccountState(BusyForm, AuthState):
    sessions: list[SessionItem] = []

    def _reload(self, user_id: int) -> None:
        with session_scope() as session:
            rows = accounts.list_sessions(session, user_id, self._session_hash)
        self.sessions = [
            SessionItem(str(r.id), _browser(r.user_agent), r.client_ip or "unknown", format_date(r.created_at),
                        format_date(r.last_seen_at) or "", r.current)
            for r in rows
        ]

    @in_a_thread
    def load(self):
        self.error = self.message = ""
        self.busy = False
        try:
            self._reload(self._actor().user_id)
        except AppError as error:
            return self._signed_out(error)

    @rx.event(background=True)
    async def change_password(self, form: dict):
        async with self:
            self.error, self.message, self.busy = "", "", True
        current, new, again = form_text(form, "current_password"), form_text(form, "new_password"), form_text(form, "new_password_again")
        try:
            actor = await self._actor_in_background()
            if new != again:
                raise AppError(ErrorCode.VALIDATION_ERROR, "The new passwords do not match.")
            await limits.hit_in_thread(limits.ACCOUNT_USER, actor.user_id)
            async with self:
                keep = self._session_hash

            def work() -> int:
                with session_scope() as session:
                    return accounts.change_password(session, actor.user_id, current=current, new=new, keep_hash=keep)

            ended = await asyncio.to_thread(work)
        except AppError as error:
            if not await self._leave_if_signed_out(error):
                await self._refused(error)
            return
        async with self:
            self.busy = False
            self.message = "Your password was changed." + (
                f" {ended} other session{'s' if ended != 1 else ''} ended." if ended else "")
            await asyncio.to_thread(self._reload, actor.user_id)  # a database read: off the event loop

    @in_a_thread
    def end_session(self, session_id: str):
        self.error = self.message = ""
        try:
            actor = self._actor()
            with session_scope() as session:
                accounts.end_session_by_id(session, actor.user_id, id_from_page(session_id, "No such session."))
            self._reload(actor.user_id)
        except AppError as error:
            self.error = error.message
            return self._signed_out_if(error)

    @in_a_thread
    def logout_everywhere(self):
        try:
            actor = self._actor()
        except AppError as error:
            return self._signed_out(error)
        with session_scope() as session:
            accounts.end_other_sessions(session, actor.user_id)
        self._show(None)
        return [clear_cookie_script(), rx.redirect(routes.login_url(reason="logged_out"))]


def _password_field(label: str, name: str, autocomplete: str) -> rx.Component:
    return rx.vstack(
        field_label(label, name),
        rx.input(id=name, name=name, type="password", required=True, auto_complete=autocomplete, width="100%"),
        spacing="1",
        width="100%",
    )


def _session_row(item) -> rx.Component:
    return rx.table.row(
        rx.table.cell(item.browser, rx.cond(item.current, rx.badge("This browser", color_scheme="green", margin_left="0.5em"))),
        rx.table.cell(item.address),
        rx.table.cell(item.started),
        rx.table.cell(item.last_seen),
        rx.table.cell(
            rx.cond(
                item.current,
                rx.fragment(),
                rx.button("End", size="1", variant="soft", color_scheme="red", on_click=AccountState.end_session(item.id)),
            )
        ),
        class_name="session-row",
    )


@rx.page(route=routes.ACCOUNT_SECURITY, title="Account security · Billing", on_load=AccountState.load)
def account_page() -> rx.Component:
    return page_frame(
        page_heading("Account security", AccountState.error, AccountState.message),
        rx.card(
            rx.form(
                rx.vstack(
                    rx.heading("Change password", size="4", as_="h2"),
                    rx.text("Every other session is logged out.", size="2", color_scheme="gray"),
                    _password_field("Current password", "current_password", "current-password"),
                    _password_field("New password (10 characters or more)", "new_password", "new-password"),
                    _password_field("New password again", "new_password_again", "new-password"),
                    rx.button("Change password", type="submit", loading=AccountState.busy, id="change-password"),
                    spacing="3",
                    width="100%",
                    max_width="26em",
                ),
                on_submit=AccountState.change_password,
                reset_on_submit=True,
            ),
            width="100%",
        ),
        rx.card(
            rx.vstack(
                rx.hstack(
                    rx.heading("Where you are signed in", size="4", as_="h2"),
                    rx.button("Log out everywhere", color_scheme="red", variant="soft", on_click=AccountState.logout_everywhere,
                              id="logout-everywhere"),
                    justify="between",
                    width="100%",
                    wrap="wrap",
                ),
                data_table(("Browser", "Address", "Signed in", "Last seen", ""), rx.foreach(AccountState.sessions, _session_row),
                           region="Sessions"),
                spacing="3",
                width="100%",
            ),
            width="100%",
        ),
        rx.link("API tokens", href=routes.ACCOUNT_TOKENS, size="2"),
    )
