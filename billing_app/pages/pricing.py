"""Pricing (public): plan cards from the catalog mirror, Monthly / Yearly, Subscribe."""

from __future__ import annotations

import reflex as rx

from billing_app import limits, routes
from billing_app.billing import reservations, turns
from billing_app.billing.checkout import start_checkout
from billing_app.billing.entitlements import count_members
from billing_app.billing.views import PlanCard, pricing_view
from billing_app.components.billing_ui import billing_frame
from billing_app.components.layout import error_callout, info_callout, link_button
from billing_app.db import session_scope
from billing_app.errors import AppError
from billing_app.models import Role
from billing_app.state import AuthState, id_from_page, in_a_thread


class PricingState(AuthState):
    plans: list[PlanCard] = []
    yearly: bool = False
    has_subscription: bool = False
    holds_lifetime: bool = False
    awaiting_payment: str = ""  # a purchase still clearing: nothing to buy until it settles
    # The period whose button is busy (starting a checkout), for its loading state.
    pending_period_id: str = ""
    error: str = ""
    # Per-seat plans: the seats an admin picks (default and least: the members, at least min_seats).
    seats: str = ""
    members: int = 0

    @in_a_thread
    def load(self):
        self.error, self.pending_period_id = "", ""
        org_id = None
        if self._session_hash:
            try:
                org_id = self._actor().org_id
            except AppError:
                org_id = None
        with session_scope() as session:
            view = pricing_view(session, org_id)
            self.members = count_members(session, org_id) if org_id else 0
        self.plans, self.has_subscription, self.holds_lifetime = view.plans, view.has_subscription, view.holds_lifetime
        self.awaiting_payment = view.awaiting_payment
        least = max([p.min_seats for p in view.plans if p.per_seat] or [1])
        self.seats = str(max(least, self.members))

    @rx.event
    def set_seats(self, value: str):
        self.seats = value

    @rx.event
    def set_yearly(self, value: bool):
        self.yearly = value

    @rx.event(background=True)
    async def subscribe(self, period_id: str, per_seat: bool = False):
        """Start a hosted Checkout and send the browser to it in the same tab (a per-seat plan for
        the seats picked; the buyer may still add seats on the Checkout page).

        A background event: the Stripe calls run in a thread, in one of the org's turns (billing/turns.py),
        with the state lock held only to read inputs and show the outcome.
        """
        async with self:
            self.error, self.pending_period_id = "", period_id
            seats_text = self.seats
        try:
            seats = int(seats_text) if per_seat is True else None
        except (TypeError, ValueError):
            async with self:
                self.error, self.pending_period_id = "Enter how many seats to buy.", ""
            return
        try:
            actor = await self._actor_in_background(keep_org=True)
            org_id = actor.require_role(Role.ADMIN)  # before the org's limit: a member's forged events spend none of it
            await limits.hit_in_thread(limits.STRIPE_ORG, org_id)
            period = id_from_page(period_id, "Unknown plan.")
            started = await turns.in_turn(org_id, start_checkout, actor, period, seats,
                                          when_busy=reservations.purchase_busy())
        except AppError as error:
            async with self:
                self.error, self.pending_period_id = error.message, ""
                signed_out = self._signed_out_if(error)
            if signed_out:
                yield signed_out
            return
        yield rx.redirect(started.url)


def _action(plan, period, label: str = "Subscribe") -> rx.Component:
    """The card's button for one period, by who is looking and what the org has (the first that applies)."""
    def unavailable(text: str) -> rx.Component:
        return rx.button(text, size="3", width="100%", disabled=True, variant="soft")

    buy = rx.button(
        label,
        size="3",
        width="100%",
        loading=PricingState.pending_period_id == period.period_id,
        disabled=PricingState.pending_period_id != "",
        on_click=PricingState.subscribe(period.period_id, plan.per_seat),
        class_name="subscribe",
    )
    switch = link_button("Switch plan", href=routes.BILLING + "?change=" + period.period_id, size="3", width="100%", variant="outline")
    ask_an_admin = rx.text("Ask an admin to upgrade", size="2", color_scheme="gray", align="center", width="100%")
    return rx.cond(
        ~AuthState.is_authenticated, link_button("Sign up", href=routes.REGISTER, size="3", width="100%"),
        # Signed in, in no organization (left or removed): the home page makes one to buy for.
        rx.cond(AuthState.org_id == 0, link_button("Create an organization", href=routes.HOME, size="3", width="100%", variant="soft"),
        rx.cond(plan.is_current, unavailable("Current plan"),
        rx.cond(~AuthState.is_admin, ask_an_admin,
        rx.cond(PricingState.holds_lifetime, unavailable("You have lifetime access"),
        rx.cond(PricingState.awaiting_payment != "", unavailable("Payment clearing"),
        rx.cond(PricingState.has_subscription, switch, buy))))))
    )


def _seat_picker(plan) -> rx.Component:
    """Admins of an org without a plan pick the seats to buy (at least the members and min_seats)."""
    return rx.cond(
        AuthState.is_admin & ~PricingState.has_subscription & ~PricingState.holds_lifetime & (PricingState.awaiting_payment == ""),
        rx.hstack(
            rx.text("Seats", as_="label", html_for="seat-count", size="2", weight="medium"),
            rx.input(
                id="seat-count", type="number", value=PricingState.seats, on_change=PricingState.set_seats,
                min=rx.cond(PricingState.members > plan.min_seats, PricingState.members, plan.min_seats),
                max=1000, width="6em", size="2",
            ),
            rx.text("at least ", plan.min_seats, size="1", color_scheme="gray"),
            align="center",
            spacing="2",
        ),
    )


def _price(period, size: str = "8") -> rx.Component:
    return rx.flex(
        rx.text(period.price, size=size, weight="bold"),  # a figure, not a heading: each page has one h1
        rx.text(period.interval, size="2", color_scheme="gray", white_space="nowrap"),
        align="baseline",
        spacing="2",
        wrap="wrap",
    )


def _card(plan) -> rx.Component:
    period = rx.cond(PricingState.yearly & (plan.yearly.period_id != ""), plan.yearly, plan.monthly)
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.heading(plan.name, size="5", as_="h2"),
                rx.cond(plan.most_popular, rx.badge("Most popular", color_scheme="iris", variant="solid")),
                rx.cond(plan.is_current, rx.badge("Current plan", color_scheme="green", variant="soft")),
                justify="between",
                width="100%",
                wrap="wrap",
            ),
            rx.text(plan.description, size="2", color_scheme="gray"),
            rx.cond(period.period_id != "", rx.vstack(_price(period), rx.cond(period.trial != "", rx.text(period.trial, size="1", color_scheme="green")), spacing="1")),
            rx.vstack(
                rx.foreach(plan.features, lambda f: rx.hstack(rx.icon("check", size=16, color="var(--green-9)"), rx.text(f, size="2"), spacing="2", align="center")),
                spacing="2",
            ),
            rx.spacer(),
            rx.cond(plan.per_seat, _seat_picker(plan)),
            rx.cond(period.period_id != "", _action(plan, period)),
            rx.cond(
                plan.lifetime.period_id != "",
                rx.vstack(
                    rx.separator(),
                    rx.text("Or pay once, for life", size="2", weight="medium"),
                    _price(plan.lifetime, size="6"),
                    _action(plan, plan.lifetime, "Buy lifetime"),
                    spacing="2",
                    width="100%",
                ),
            ),
            spacing="4",
            height="100%",
            width="100%",
        ),
        size="3",
        border=rx.cond(plan.most_popular, "2px solid var(--accent-9)", "none"),
        data_plan=plan.key,
        class_name="plan-card",
    )


@rx.page(route=routes.PRICING, title="Pricing · Billing", on_load=PricingState.load)
def pricing_page() -> rx.Component:
    return billing_frame(
        "Pricing",
        rx.vstack(
            rx.text("Pick a plan for your organization. Change or cancel any time.", color_scheme="gray", align="center"),
            rx.segmented_control.root(
                rx.segmented_control.item("Monthly", value="monthly"),
                rx.segmented_control.item("Yearly", value="yearly"),
                value=rx.cond(PricingState.yearly, "yearly", "monthly"),
                on_change=lambda v: PricingState.set_yearly(v == "yearly"),
                id="period-toggle",
            ),
            align="center",
            width="100%",
            spacing="3",
        ),
        error_callout(PricingState.error),
        info_callout(PricingState.awaiting_payment),
        rx.grid(
            rx.foreach(PricingState.plans, _card),
            columns=rx.breakpoints(initial="1", sm="2", lg="3"),
            spacing="4",
            width="100%",
        ),
        max_width="76em",
    )
