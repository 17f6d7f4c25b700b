"""Log in and sign up."""

from __future__ import annotations

import reflex as rx

from billing_app import routes
from billing_app.auth import accounts
from billing_app.components.layout import error_callout, info_callout, page_frame
from billing_app.db import session_scope
from billing_app.errors import AppError
from billing_app.state import AuthState, form_text


# Why the user is on the login page; the URL carries only the key, never the text.
LOGIN_NOTICES = {
    "expired": "Your session has expired. Please log in again.",
    "logged_out": "You have been logged out.",
}


class LoginState(AuthState):
    error: str = ""
    notice: str = ""

    @rx.event
    def open(self):
        self.error = ""
        self.notice = LOGIN_NOTICES.get(self.router.url.query_parameters.get("reason", ""), "")

    @rx.event
    def submit(self, form: dict):
        self.error = ""
        try:
            with session_scope() as session:
                token = accounts.login(session, email=form_text(form, "email"), password=form_text(form, "password"))
        except AppError as error:
            self.error = error.message
            return
        self.session_token = token
        self._actor()
        next_path = self.router.url.query_parameters.get("next", routes.HOME)
        return rx.redirect(next_path if routes.is_local_path(next_path) else routes.HOME)


class RegisterState(AuthState):
    error: str = ""

    @rx.event
    def open(self):
        self.error = ""

    @rx.event
    def submit(self, form: dict):
        self.error = ""
        try:
            with session_scope() as session:
                user = accounts.register(
                    session,
                    email=form_text(form, "email"),
                    password=form_text(form, "password"),
                    name=form_text(form, "name"),
                    org_name=form_text(form, "org_name"),
                )
                token = accounts.start_session(session, user)
        except AppError as error:
            self.error = error.message
            return
        self.session_token = token
        self._actor()
        return rx.redirect(routes.HOME)


def _field(label: str, name: str, type_: str = "text", placeholder: str = "", **props) -> rx.Component:
    return rx.vstack(
        rx.text(label, as_="label", html_for=name, size="2", weight="medium"),
        rx.input(id=name, name=name, type=type_, placeholder=placeholder, size="3", width="100%", **props),
        spacing="1",
        width="100%",
    )


def _card(*children) -> rx.Component:
    return rx.center(rx.card(rx.vstack(*children, spacing="4", width="100%"), size="3", width="100%", max_width="26em"), width="100%")


@rx.page(route=routes.LOGIN, title="Log in · Billing", on_load=[AuthState.load_identity, LoginState.open])
def login_page() -> rx.Component:
    return page_frame(
        _card(
            rx.heading("Log in", size="6"),
            info_callout(LoginState.notice),
            error_callout(LoginState.error),
            rx.form(
                rx.vstack(
                    _field("Email", "email", "email", "you@company.com", required=True, auto_complete="email"),
                    _field("Password", "password", "password", required=True, auto_complete="current-password"),
                    rx.button("Log in", type="submit", size="3", width="100%", id="login-submit"),
                    spacing="3",
                    width="100%",
                ),
                on_submit=LoginState.submit,
                width="100%",
            ),
            rx.text("New here? ", rx.link("Create an account", href=routes.REGISTER), size="2"),
        )
    )


@rx.page(route=routes.REGISTER, title="Sign up · Billing", on_load=[AuthState.load_identity, RegisterState.open])
def register_page() -> rx.Component:
    return page_frame(
        _card(
            rx.heading("Create your account", size="6"),
            rx.text("You will be the admin of your new organization.", size="2", color_scheme="gray"),
            error_callout(RegisterState.error),
            rx.form(
                rx.vstack(
                    _field("Your name", "name", placeholder="Ada Lovelace", auto_complete="name"),
                    _field("Email", "email", "email", "you@company.com", required=True, auto_complete="email"),
                    _field("Password (10 characters or more)", "password", "password", required=True, auto_complete="new-password"),
                    _field("Organization name", "org_name", placeholder="Acme Inc", required=True),
                    rx.button("Create account", type="submit", size="3", width="100%", id="register-submit"),
                    spacing="3",
                    width="100%",
                ),
                on_submit=RegisterState.submit,
                width="100%",
            ),
            rx.text("Already have an account? ", rx.link("Log in", href=routes.LOGIN), size="2"),
        )
    )
