"""Billing pieces shared by pages: the not-configured notice and small layouts."""

from __future__ import annotations

import reflex as rx

from billing_app.components.layout import page_frame, page_heading
from billing_app.settings import get_settings


def billing_frame(title: str, *children: rx.Component, **props) -> rx.Component:
    """A billing page's frame; without Stripe configured, it says so instead of the content."""
    if not get_settings().billing_configured:
        children = (
            rx.callout(
                "Billing is not configured: set STRIPE_SECRET_KEY (or run `make run`, which starts the offline Stripe sandbox).",
                icon="info",
                id="billing-not-configured",
            ),
        )
    return page_frame(page_heading(title), *children, **props)


def detail(label: str, value) -> rx.Component:
    """A label/value pair in the dashboard's details grid; hidden when the value is empty."""
    return rx.cond(
        value != "",
        rx.vstack(rx.text(label, size="1", color_scheme="gray", weight="medium"), rx.text(value, size="3", weight="medium"), spacing="1"),
    )


def empty_state(icon: str, title: str, *children: rx.Component, id: str) -> rx.Component:
    """A card saying there is nothing here yet, and what to do about it."""
    return rx.card(
        rx.vstack(rx.icon(icon, size=32), rx.heading(title, size="5", as_="h2"), *children, align="center", spacing="3", padding="2em"),
        width="100%",
        id=id,
    )


def banner(when, icon: str, *text, action: rx.Component, **props) -> rx.Component:
    """A callout across the page while `when` holds: an icon, the text and the control that acts on
    it; `props` are the callout's (color_scheme, id, and role="alert" for what needs acting on now)."""
    return rx.cond(
        when,
        rx.callout.root(rx.callout.icon(rx.icon(icon)), rx.callout.text(*text), action, width="100%", **props),
    )
