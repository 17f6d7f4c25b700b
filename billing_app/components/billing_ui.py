"""Billing pieces shared by pages: the not-configured notice and small layouts."""

from __future__ import annotations

import reflex as rx


def not_configured_notice() -> rx.Component:
    return rx.callout(
        "Billing is not configured: set STRIPE_SECRET_KEY (or run `make run`, which starts the offline Stripe sandbox).",
        icon="info",
        id="billing-not-configured",
    )


def detail(label: str, value) -> rx.Component:
    """A label/value pair in the dashboard's details grid; hidden when the value is empty."""
    return rx.cond(
        value != "",
        rx.vstack(rx.text(label, size="1", color_scheme="gray", weight="medium"), rx.text(value, size="3", weight="medium"), spacing="1"),
    )
