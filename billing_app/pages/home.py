"""The signed-in landing page: where you are and what you can do.

Someone in no organization (they left, or were removed from, their last one) is sent here by the
organization's pages (`AuthState._signed_out`): it says so, and lets them create one or explains
how to join one.
"""

from __future__ import annotations

import reflex as rx

from billing_app import limits, routes
from billing_app.auth import accounts
from billing_app.components.forms import labelled
from billing_app.components.layout import error_callout, page_frame
from billing_app.db import session_scope
from billing_app.errors import AppError
from billing_app.state import AuthState, form_text, in_a_thread


class HomeState(AuthState):
    error: str = ""

    @in_a_thread
    def load(self):
        self.error = ""
        try:
            self._actor()
        except AppError as error:
            return self._signed_out(error)

    @in_a_thread
    def create_org(self, form: dict):
        """Create an organization, its admin the user; the session (every tab) switches to it."""
        self.error = ""
        try:
            actor = self._actor()
            limits.hit(limits.ACCOUNT_USER, actor.user_id)
            with session_scope() as session:
                accounts.create_org_hash(session, self._session_hash, form_text(form, "org_name"))
            self._actor()  # shows the new organization
        except AppError as error:
            self.error = error.message


def _tile(title: str, text: str, href: str, icon: str) -> rx.Component:
    return rx.link(
        rx.card(
            rx.hstack(rx.icon(icon, size=22), rx.vstack(rx.heading(title, size="4", as_="h2"), rx.text(text, size="2", color_scheme="gray"), spacing="1"), spacing="3"),
            width="100%",
        ),
        href=href,
        underline="none",
        width="100%",
    )


def _in_an_org() -> rx.Component:
    return rx.fragment(
        rx.text(
            "You are ", rx.text.strong(AuthState.role_label), " of ", rx.text.strong(AuthState.org_name), ".",
            id="whoami",
        ),
        rx.grid(
            _tile("Pricing", "Plans and prices", routes.PRICING, "tag"),
            _tile("Billing", "Your plan and its status", routes.BILLING, "credit-card"),
            rx.cond(AuthState.is_admin, _tile("Payments", "Invoices and receipts", routes.PAYMENTS, "receipt")),
            _tile("Members", "Who is in this organization", routes.MEMBERS, "users"),
            columns=rx.breakpoints(initial="1", sm="2"),
            spacing="3",
            width="100%",
        ),
    )


def _in_no_org() -> rx.Component:
    return rx.fragment(
        rx.text("You are not a member of any organization yet.", id="whoami"),
        rx.card(
            rx.form(
                rx.vstack(
                    rx.heading("Create an organization", size="4", as_="h2"),
                    rx.text("You will be its admin, and can invite others to it.", size="2", color_scheme="gray"),
                    labelled("Organization name", rx.input(id="new-org-name", name="org_name", required=True, max_length=120,
                                                           autocomplete="organization"), "new-org-name"),
                    error_callout(HomeState.error),
                    rx.button("Create organization", type="submit", id="create-org"),
                    spacing="3",
                    width="100%",
                ),
                on_submit=HomeState.create_org,
                width="100%",
            ),
            width="100%",
        ),
        rx.text("To join an existing organization, ask one of its admins for an invitation link.", id="join-by-invitation"),
    )


@rx.page(route=routes.HOME, title="Billing", on_load=HomeState.load)
def home_page() -> rx.Component:
    return page_frame(
        rx.heading(rx.text.span("Welcome, "), rx.text.span(AuthState.user_name), size="7"),
        # Shown once the page load has read who is signed in: never "You are  of ." meanwhile.
        rx.cond(AuthState.is_authenticated, rx.cond(AuthState.org_id != 0, _in_an_org(), _in_no_org())),
    )
