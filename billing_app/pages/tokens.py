"""API tokens: make one for scripts (shown once), see yours, revoke them.

A new token goes to the browser once, into a client-side variable (`NEW_TOKEN`, React state that
never comes back to the server), and is dropped there on the next visit: no state holds it, since
Reflex persists states. Making a token asks for the current password (a token outlives every
browser session, so a borrowed session alone must not mint one); wrong guesses count in the login
throttle, and every try (argon2) in the user's account limit (RATE_LIMIT_ACCOUNT_USER).
"""

from __future__ import annotations

from dataclasses import dataclass

import reflex as rx
from reflex.experimental.client_state import ClientStateVar

from billing_app import routes
from billing_app.auth import accounts, api_tokens
from billing_app.components.layout import data_table, error_callout, page_frame, page_heading, shown_once
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.formatting import format_date
from billing_app.state import AuthState, form_text, id_from_page, in_a_thread


@dataclass
class TokenRow:
    id: str = ""
    name: str = ""
    prefix: str = ""
    created: str = ""
    last_used: str = ""
    expires: str = ""


# The plain token, shown once right after it is made: in the browser only, never in a state.
NEW_TOKEN = ClientStateVar.create("new_api_token", "")
EXPIRY_CHOICES = {"never": None, "30": 30, "90": 90, "365": 365}


class TokensState(AuthState):
    tokens: list[TokenRow] = []
    error: str = ""

    def _reload(self, actor) -> None:
        with session_scope() as session:
            rows = api_tokens.list_tokens(session, actor)
        self.tokens = [
            TokenRow(id=str(r.id), name=r.name or "(unnamed)", prefix=r.prefix + "…", created=format_date(r.created_at),
                     last_used=format_date(r.last_used_at) or "never", expires=format_date(r.expires_at) or "never")
            for r in rows
        ]

    @in_a_thread
    def load(self):
        self.error = ""
        try:
            self._reload(self._actor())
        except AppError as error:
            return self._signed_out(error)
        return NEW_TOKEN.push("")

    @in_a_thread
    def create(self, form: dict):
        self.error = ""
        choice = form_text(form, "expires") or "never"
        try:
            if choice not in EXPIRY_CHOICES:
                raise AppError(ErrorCode.VALIDATION_ERROR, "Choose when the token expires.")
            actor = self._actor(keep_org=True)
            with session_scope() as session:
                created = api_tokens.create_token_confirmed(
                    session, actor, form_text(form, "password"), form_text(form, "name"),
                    client=self._client(), expires_in_days=EXPIRY_CHOICES[choice],
                )
            self._reload(actor)
        except AppError as error:
            self.error = error.message
            return self._signed_out_if(error) or NEW_TOKEN.push("")
        return NEW_TOKEN.push(created.token)

    def _client(self) -> accounts.Client:
        """Where the request comes from, for the login throttle (the socket's address)."""
        return accounts.Client(ip=self.router.session.client_ip or "unknown",
                               user_agent=self.router.headers.user_agent[:255])

    @in_a_thread
    def revoke(self, token_id: str):
        self.error = ""
        try:
            actor = self._actor(keep_org=True)
            with session_scope() as session:
                api_tokens.revoke_token(session, actor, id_from_page(token_id, "No such API token."))
            self._reload(actor)
        except AppError as error:
            self.error = error.message
            return self._signed_out_if(error)


@rx.page(route=routes.ACCOUNT_TOKENS, title="API tokens · Billing", on_load=TokensState.load)
def tokens_page() -> rx.Component:
    return page_frame(
        page_heading("API tokens"),
        rx.text(
            "A token lets a script use the REST API as you, in ", rx.text.strong(AuthState.org_name),
            ", with your role there. Send it as ", rx.code("Authorization: Bearer <token>"), ".",
            size="2", color_scheme="gray",
        ),
        rx.link("Password and sessions", href=routes.ACCOUNT_SECURITY, size="2", id="account-security-link"),
        error_callout(TokensState.error),
        shown_once(NEW_TOKEN.value, "token", id="new-token"),
        rx.card(
            rx.form(
                rx.flex(
                    rx.input(name="name", placeholder="What is it for? e.g. nightly export", max_length=120, flex="1", min_width="12em", id="token-name"),
                    rx.input(name="password", type="password", placeholder="Your current password", required=True,
                             auto_complete="current-password", aria_label="Your current password", min_width="12em", id="token-password"),
                    rx.el.label(
                        rx.text("Expires", size="2", as_="span", margin_right="0.5em"),
                        rx.select.root(
                            rx.select.trigger(id="token-expiry", aria_label="Expires"),
                            rx.select.content(
                                rx.select.item("Never", value="never"),
                                rx.select.item("In 30 days", value="30"),
                                rx.select.item("In 90 days", value="90"),
                                rx.select.item("In a year", value="365"),
                            ),
                            name="expires",
                            default_value="never",
                        ),
                    ),
                    rx.button("Create token", type="submit", id="create-token"),
                    spacing="2",
                    wrap="wrap",
                    width="100%",
                ),
                on_submit=TokensState.create,
                reset_on_submit=True,
            ),
            width="100%",
        ),
        data_table(
            ("Name", "Token", "Created", "Last used", "Expires", ""),
            rx.foreach(
                TokensState.tokens,
                lambda t: rx.table.row(
                    rx.table.cell(t.name),
                    rx.table.cell(rx.code(t.prefix)),
                    rx.table.cell(t.created),
                    rx.table.cell(t.last_used),
                    rx.table.cell(t.expires),
                    rx.table.cell(rx.button("Revoke", size="1", color_scheme="red", variant="soft", on_click=TokensState.revoke(t.id))),
                    class_name="token-row",
                ),
            ),
            region="API tokens",
        ),
    )
