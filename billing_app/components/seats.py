"""The billing dashboard's seats bar: members against the plan's cap (or a per-seat plan's paid
seats), with the warning when the paid seats fell below the members. Its own small state, loaded
with the page and refreshed by live updates; it reads the mirror only."""

from __future__ import annotations

import reflex as rx

from billing_app import live, routes
from billing_app.billing.seats import seats_of
from billing_app.billing.team_views import seat_warning, seats_summary
from billing_app.db import session_scope
from billing_app.errors import AppError
from billing_app.state import AuthState


class SeatsBarState(AuthState):
    text: str = ""
    used: int = 0
    cap: int = 0  # 0: unlimited, no bar
    warning: str = ""

    def _refresh(self, org_id: int) -> None:
        with session_scope() as session:
            seats = seats_of(session, org_id)
        self.text, self.used = seats_summary(seats), seats.used
        self.cap = (seats.purchased if seats.per_seat else seats.limit) or 0
        self.warning = seat_warning(seats)

    @rx.event
    def load(self):
        try:
            org_id = self._actor().require_org()
        except AppError:
            return
        self._refresh(org_id)
        live.watch(org_id, self.router.session.client_token, type(self))

    def on_billing_changed(self):
        """Called by `live` when a webhook changed this org's billing (a quantity set in the portal)."""
        try:
            self._refresh(self._actor().require_org())
        except AppError:
            pass


def seats_bar() -> rx.Component:
    return rx.cond(
        SeatsBarState.text != "",
        rx.card(
            rx.vstack(
                rx.hstack(
                    rx.text("Seats", weight="medium"),
                    rx.text(SeatsBarState.text, size="2", color_scheme="gray", id="billing-seats"),
                    rx.link("Manage members", href=routes.MEMBERS, size="2"),
                    justify="between",
                    width="100%",
                    wrap="wrap",
                ),
                rx.cond(
                    SeatsBarState.cap > 0,
                    rx.progress(value=SeatsBarState.used, max=SeatsBarState.cap, width="100%", aria_label="Seats used"),
                ),
                rx.cond(
                    SeatsBarState.warning != "",
                    rx.callout(SeatsBarState.warning, icon="triangle-alert", color_scheme="orange", width="100%",
                               role="alert", id="billing-seat-warning"),
                ),
                spacing="2",
                width="100%",
            ),
            width="100%",
            id="seats-bar",
        ),
    )
