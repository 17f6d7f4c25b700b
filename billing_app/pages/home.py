"""The signed-in landing page: where you are and what you can do."""

from __future__ import annotations

import reflex as rx

from billing_app import routes
from billing_app.components.layout import page_frame
from billing_app.state import AuthState


def _tile(title: str, text: str, href: str, icon: str) -> rx.Component:
    return rx.link(
        rx.card(
            rx.hstack(rx.icon(icon, size=22), rx.vstack(rx.heading(title, size="4"), rx.text(text, size="2", color_scheme="gray"), spacing="1"), spacing="3"),
            width="100%",
        ),
        href=href,
        underline="none",
        width="100%",
    )


@rx.page(route=routes.HOME, title="Billing", on_load=AuthState.require_login)
def home_page() -> rx.Component:
    return page_frame(
        rx.heading(rx.text.span("Welcome, "), rx.text.span(AuthState.user_name), size="7"),
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
