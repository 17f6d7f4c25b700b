"""Forgotten password: /forgot asks for a link by email, /reset?token=... sets a new password.

The link is single use and valid for an hour (billing_app/auth/reset.py); using it ends every
session of the user and revokes their API tokens. Asking answers the same whether or not the email
has an account, and is limited per client address (one browser cannot mail every account) and per
email (many clients cannot flood one inbox: past RATE_LIMIT_RESET_EMAIL nothing is sent, the answer
unchanged). The token is read from the page's URL when the form is sent and never copied into a
state variable.
"""

from __future__ import annotations

import asyncio

import reflex as rx

from billing_app import limits, routes
from billing_app.auth import reset
from billing_app.components.layout import error_callout, info_callout, page_frame
from billing_app.errors import AppError, ErrorCode, RateLimited
from billing_app.state import AuthState, BusyForm, form_text

SENT = "If an account uses this email, a link to reset its password is on its way. It works once, for one hour."


class ForgotState(BusyForm, AuthState):
    @rx.event
    def open(self):
        self.error = self.message = ""
        self.busy = False

    @rx.event(background=True)
    async def request(self, form: dict):
        async with self:
            self.error, self.message, self.busy = "", "", True
        email = form_text(form, "email").strip().lower()[:254]
        try:
            if email:
                # Per client too, not only per email: one browser must not mail every account it can name.
                async with self:
                    client_ip = self.router.session.client_ip or "unknown"
                await limits.hit_in_thread(limits.RESET_IP, client_ip)
                try:
                    await limits.hit_in_thread(limits.RESET_EMAIL, email)
                except RateLimited:
                    pass  # enough links went to this inbox: send none, answer as usual (whether it has an account stays unsaid)
                else:
                    await asyncio.to_thread(reset.request_reset, email)
        except AppError as error:
            await self._refused(error)
            return
        async with self:
            self.message, self.busy = SENT, False


class ResetState(BusyForm, AuthState):
    @rx.event
    def open(self):
        self.error = ""
        self.busy = False

    @rx.event(background=True)
    async def submit(self, form: dict):
        async with self:
            self.error, self.busy = "", True
            token = self.router.url.query_parameters.get("token", "")
        new, again = form_text(form, "new_password"), form_text(form, "new_password_again")
        try:
            if new != again:
                raise _mismatch()
            await asyncio.to_thread(reset.reset_password, token, new)
        except AppError as error:
            await self._refused(error)
            return
        async with self:
            self.busy = False
        return rx.redirect(routes.login_url(reason="password_changed"))


def _mismatch() -> AppError:
    return AppError(ErrorCode.VALIDATION_ERROR, "The passwords do not match.")


def _card(title: str, lead: str, *children) -> rx.Component:
    """A password page's card: its title, a line saying what the page does, then the rest."""
    return rx.center(
        rx.card(
            rx.vstack(rx.heading(title, size="6"), rx.text(lead, size="2", color_scheme="gray"), *children, spacing="4", width="100%"),
            size="3", width="100%", max_width="26em",
        ),
        width="100%",
    )


def _field(label: str, name: str, type_: str, **props) -> rx.Component:
    return rx.vstack(
        rx.text(label, as_="label", html_for=name, size="2", weight="medium"),
        rx.input(id=name, name=name, type=type_, size="3", width="100%", required=True, **props),
        spacing="1", width="100%",
    )


@rx.page(route=routes.FORGOT_PASSWORD, title="Forgot password · Billing", on_load=[AuthState.load_identity, ForgotState.open])
def forgot_page() -> rx.Component:
    return page_frame(
        _card(
            "Reset your password", "We will email you a link to choose a new password.",
            info_callout(ForgotState.message),
            error_callout(ForgotState.error),
            rx.form(
                rx.vstack(
                    _field("Email", "email", "email", auto_complete="email", placeholder="you@company.com"),
                    rx.button("Email me a link", type="submit", size="3", width="100%", loading=ForgotState.busy, id="forgot-submit"),
                    spacing="3", width="100%",
                ),
                on_submit=ForgotState.request,
                reset_on_submit=True,
                width="100%",
            ),
            rx.text(rx.link("Back to log in", href=routes.LOGIN), size="2"),
        )
    )


@rx.page(route=routes.RESET_PASSWORD, title="Choose a new password · Billing", on_load=[AuthState.load_identity, ResetState.open])
def reset_page() -> rx.Component:
    return page_frame(
        _card(
            "Choose a new password", "This signs you out on every device and revokes your API tokens.",
            error_callout(ResetState.error),
            rx.form(
                rx.vstack(
                    _field("New password (10 characters or more)", "new_password", "password", auto_complete="new-password"),
                    _field("New password again", "new_password_again", "password", auto_complete="new-password"),
                    rx.button("Set the new password", type="submit", size="3", width="100%", loading=ResetState.busy, id="reset-submit"),
                    spacing="3", width="100%",
                ),
                on_submit=ResetState.submit,
                width="100%",
            ),
            rx.text(rx.link("Ask for a new link", href=routes.FORGOT_PASSWORD), size="2"),
        )
    )
