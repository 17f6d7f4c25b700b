"""Log in and sign up: plain HTML forms posting to the backend's session routes.

The routes (billing_app/api/session.py) check the password off the event loop, set the HttpOnly
session cookie and redirect; a refusal comes back as `?error=<key>` and is shown here from a fixed
list (auth/form_errors.py). No state ever sees the password or the session token.
"""

from __future__ import annotations

import reflex as rx
from reflex_components_core.el.elements.base import BaseHTML

from billing_app import routes
from billing_app.auth import form_errors
from billing_app.components.forms import field_label
from billing_app.components.layout import error_callout, info_callout, page_frame
from billing_app.state import AuthState, backend_url


# Why the user is on the login page; the URL carries only the key, never the text.
LOGIN_NOTICES = {
    "expired": "Your session has expired. Please log in again.",
    "logged_out": "You have been logged out.",
    "password_changed": "Your password was changed. Please log in again.",
}


class NativeForm(BaseHTML):
    """A plain <form> the browser submits itself (Reflex's own form always prevents that)."""

    tag = "form"
    action: rx.Var[str]
    method: rx.Var[str]


class LoginState(AuthState):
    error: str = ""
    notice: str = ""
    next_path: str = ""

    @rx.event
    def open(self):
        query = self.router.url.query_parameters
        self.error = form_errors.text_for(query.get("error", ""), query.get("retry", ""))
        self.notice = "" if self.error else LOGIN_NOTICES.get(query.get("reason", ""), "")
        self.next_path = routes.safe_next(query.get("next"), "")


class RegisterState(AuthState):
    error: str = ""
    # What the user typed before a refusal (never the password), so they need not type it again.
    name: str = ""
    email: str = ""
    org_name: str = ""
    # Where to go after signing up (an invitation's page, say).
    next_path: str = ""

    @rx.var
    def invited(self) -> bool:
        """Signing up to accept an invitation: no organization of one's own is asked for."""
        return self.next_path.startswith("/invite/")

    @rx.event
    def open(self):
        query = self.router.url.query_parameters
        self.error = form_errors.text_for(query.get("error", ""), query.get("retry", ""))
        self.name, self.email, self.org_name = (query.get(k, "")[:254] for k in ("name", "email", "org_name"))
        self.next_path = routes.safe_next(query.get("next"), "")


def _field(label: str, name: str, type_: str = "text", placeholder: str = "", **props) -> rx.Component:
    if "default_value" in props:
        # Remount when the prefill arrives, so the typed-in value shows after a refused sign-up.
        props["key"] = props["default_value"]
    return rx.vstack(
        field_label(label, name),
        rx.input(id=name, name=name, type=type_, placeholder=placeholder, size="3", width="100%", **props),
        spacing="1",
        width="100%",
    )


def _session_form(route: str, submit: str, submit_id: str, *fields: rx.Component) -> rx.Component:
    """A plain HTML form posting to a session route (api/session.py), so the token goes straight into a cookie."""
    return NativeForm.create(
        rx.vstack(*fields, rx.button(submit, type="submit", size="3", width="100%", id=submit_id), spacing="3", width="100%"),
        action=backend_url(route),
        method="post",
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
            _session_form(
                routes.API_SESSION_LOGIN, "Log in", "login-submit",
                _field("Email", "email", "email", "you@company.com", required=True, auto_complete="email"),
                _field("Password", "password", "password", required=True, auto_complete="current-password"),
                rx.el.input(type="hidden", name="next", value=LoginState.next_path, read_only=True),
            ),
            rx.text("New here? ", rx.link("Create an account", href=routes.REGISTER, underline="always"), size="2"),
            rx.text(rx.link("Forgot your password?", href=routes.FORGOT_PASSWORD, underline="always"), size="2"),
        )
    )


@rx.page(route=routes.REGISTER, title="Sign up · Billing", on_load=[AuthState.load_identity, RegisterState.open])
def register_page() -> rx.Component:
    return page_frame(
        _card(
            rx.heading("Create your account", size="6"),
            rx.text(
                rx.cond(RegisterState.invited, "Then accept your invitation.", "You will be the admin of your new organization."),
                size="2", color_scheme="gray",
            ),
            error_callout(RegisterState.error),
            _session_form(
                routes.API_SESSION_REGISTER, "Create account", "register-submit",
                _field("Your name", "name", placeholder="Ada Lovelace", auto_complete="name", default_value=RegisterState.name),
                _field("Email", "email", "email", "you@company.com", required=True, auto_complete="email", default_value=RegisterState.email),
                _field("Password (10 characters or more)", "password", "password", required=True, auto_complete="new-password"),
                rx.cond(
                    RegisterState.invited,
                    rx.el.input(type="hidden", name="next", value=RegisterState.next_path, read_only=True),
                    _field("Organization name", "org_name", placeholder="Acme Inc", required=True, default_value=RegisterState.org_name),
                ),
            ),
            rx.text("Already have an account? ", rx.link("Log in", href=rx.cond(RegisterState.invited, routes.LOGIN + "?next=" + RegisterState.next_path, routes.LOGIN), underline="always"), size="2"),
        )
    )
