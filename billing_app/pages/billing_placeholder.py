"""Pricing, billing and payments: the frames that the billing pages fill in.

Until the billing core is configured (STRIPE_SECRET_KEY), each says so plainly.
"""

from __future__ import annotations

import reflex as rx

from billing_app import routes
from billing_app.components.layout import page_frame
from billing_app.settings import get_settings
from billing_app.state import AuthState


def _not_ready(title: str) -> rx.Component:
    configured = get_settings().billing_configured
    text = (
        "Billing is configured, and this page arrives with the billing pages."
        if configured
        else "Billing is not configured: set STRIPE_SECRET_KEY (or run `make run`, which starts the offline Stripe sandbox)."
    )
    return page_frame(rx.heading(title, size="6"), rx.callout(text, icon="info", id="billing-not-configured"))


@rx.page(route=routes.PRICING, title="Pricing · Billing", on_load=AuthState.load_identity)
def pricing_page() -> rx.Component:
    return _not_ready("Pricing")


@rx.page(route=routes.BILLING, title="Billing", on_load=AuthState.require_login)
def billing_page() -> rx.Component:
    return _not_ready("Billing")


@rx.page(route=routes.PAYMENTS, title="Payments · Billing", on_load=AuthState.require_login)
def payments_page() -> rx.Component:
    return _not_ready("Payments")
