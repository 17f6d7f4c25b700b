"""/dev/mail: every email the flows produce, as the recipient would see it (development only).

With no SMTP_URL nothing leaves the machine; the outbox keeps each message and this page shows it
(HTML in a sandboxed frame that runs no scripts, and the plain-text part). With SMTP_URL set, or in
any production build (`serve --prod`, sandbox or not), the page answers what an unknown page does
("404: Page not found") and reads nothing (`mailbox.dev_mail_enabled`, checked on the server by
every handler). It asks no sign-in: in development a signed-out developer reads reset mail here.
"""

from __future__ import annotations

import asyncio

import reflex as rx

from billing_app import routes
from billing_app.components.layout import not_found, page_frame, page_heading
from billing_app.db import session_scope
from billing_app.errors import AppError
from billing_app.notifications import mailbox
from billing_app.notifications.mailbox import MailDetail, MailRow
from billing_app.state import AuthState, id_from_page


def _read_list() -> list[MailRow]:
    with session_scope() as session:
        return mailbox.latest(session)


def _read_one(notification_id: int) -> MailDetail | None:
    with session_scope() as session:
        return mailbox.detail(session, notification_id)


OK, NOT_FOUND = "ok", "404"


class DevMailState(AuthState):
    # "" until the server has answered, then "ok", or "404" where the page does not exist.
    gate: str = ""
    messages: list[MailRow] = []
    selected: MailDetail = MailDetail()

    @rx.event(background=True)
    async def load(self):
        if not mailbox.dev_mail_enabled():
            async with self:
                self.gate, self.messages, self.selected = NOT_FOUND, [], MailDetail()
            return
        rows = await asyncio.to_thread(_read_list)
        first = await asyncio.to_thread(_read_one, int(rows[0].id)) if rows else None
        async with self:
            self.gate, self.messages = OK, rows
            self.selected = first or MailDetail()

    @rx.event(background=True)
    async def open_message(self, notification_id: str):
        if not mailbox.dev_mail_enabled():
            return
        try:
            wanted = id_from_page(notification_id, "No such message.")
        except AppError:
            return  # a forged event: there is nothing to open
        found = await asyncio.to_thread(_read_one, wanted)
        async with self:
            self.selected = found or MailDetail()


def _message_row(row: MailRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.link(row.subject, href="#", on_click=DevMailState.open_message(row.id), class_name="mail-subject")),
        rx.table.cell(row.recipients),
        rx.table.cell(rx.badge(row.kind, variant="soft")),
        rx.table.cell(row.state),
        rx.table.cell(rx.text(row.created, size="1", color_scheme="gray")),
        background=rx.cond(row.id == DevMailState.selected.id, "var(--accent-a3)", "transparent"),
    )


def _viewer() -> rx.Component:
    detail = DevMailState.selected
    return rx.cond(
        detail.id != "",
        rx.card(
            rx.vstack(
                rx.heading(detail.subject, size="4", as_="h2", id="mail-subject"),  # under the page's h1
                rx.text("To: ", detail.recipients, " · ", detail.state, size="2", color_scheme="gray"),
                rx.cond(detail.error != "", rx.callout(detail.error, color_scheme="red", icon="triangle-alert")),
                rx.tabs.root(
                    rx.tabs.list(rx.tabs.trigger("HTML", value="html"), rx.tabs.trigger("Plain text", value="text")),
                    rx.tabs.content(
                        # sandbox="" : the message's HTML runs no scripts and cannot reach the app.
                        rx.el.iframe(src_doc=detail.html, sandbox="", title="Email (HTML)", id="mail-html",
                                     width="100%", height="520px", style={"border": "1px solid var(--gray-a5)", "background": "white"}),
                        value="html", padding_top="0.75em",
                    ),
                    rx.tabs.content(
                        rx.el.pre(detail.text, id="mail-text", style={"white_space": "pre-wrap", "font_size": "0.9em"}),
                        value="text", padding_top="0.75em",
                    ),
                    default_value="html",
                    width="100%",
                ),
                spacing="3",
                width="100%",
            ),
            width="100%",
        ),
    )


def _mailbox() -> rx.Component:
    return rx.vstack(
        rx.text(
            "Every email the app produced, newest first. Without SMTP_URL nothing is sent: "
            "this is where the messages are (development mode only).",
            size="2", color_scheme="gray",
        ),
        rx.cond(
            DevMailState.messages.length() > 0,
            rx.vstack(
                rx.table.root(
                    rx.table.header(rx.table.row(*[rx.table.column_header_cell(h) for h in ("Subject", "To", "Kind", "State", "Created")])),
                    rx.table.body(rx.foreach(DevMailState.messages, _message_row)),
                    width="100%", variant="surface", id="mail-list",
                ),
                _viewer(),
                width="100%", spacing="4",
            ),
            rx.callout("No email yet. Ask for a password reset or buy a plan, then reload.", icon="inbox", role="status"),
        ),
        spacing="4",
        width="100%",
    )


@rx.page(route=routes.DEV_MAIL, title="Mail (development) · Billing", on_load=[AuthState.load_identity, DevMailState.load])
def dev_mail_page() -> rx.Component:
    return rx.cond(
        DevMailState.gate == OK,
        page_frame(page_heading("Mail"), _mailbox(), max_width="80em"),
        rx.cond(DevMailState.gate == NOT_FOUND, not_found(), rx.center(rx.spinner(size="3"), padding="4em")),
    )
