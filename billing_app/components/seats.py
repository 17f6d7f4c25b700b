"""The billing dashboard's seats bar: members against the plan's cap (or a per-seat plan's paid
seats), with the warning when the paid seats fell below the members. Its own small state, loaded
with the page and refreshed by live updates; it reads the mirror only."""

from __future__ import annotations

import reflex as rx

from billing_app import live, routes
from billing_app.billing.seats import seats_of
from billing_app.billing.team_views import seat_warning, seats_cap, seats_summary
from billing_app.components.layout import warning_callout
from billing_app.db import session_scope
from billing_app.errors import AppError
from billing_app.state import AuthState, in_a_thread


def _read(org_id: int):
    with session_scope() as session:
        return seats_of(session, org_id)


class SeatsBarState(AuthState):
    text: str = ""
    used: int = 0
    cap: int = 0  # 0: unlimited, no bar
    warning: str = ""

    def _refresh(self, org_id: int, shared: dict | None = None) -> None:
        seats = _read(org_id) if shared is None else live.read_once(shared, ("seats", org_id), lambda: _read(org_id))
        self.text, self.used = seats_summary(seats), seats.used
        self.cap = seats_cap(seats)
        self.warning = seat_warning(seats)

    @in_a_thread
    def load(self):
        try:
            org_id = self._actor().require_org()
        except AppError:
            return
        self._watch_live(org_id)  # before the read: a change meanwhile refreshes it
        self._refresh(org_id)

    def _on_billing_changed(self, shared: dict | None = None):
        """Called by `live` when a webhook changed this org's billing (a quantity set in the portal;
        private: a public method would be an event any browser could send, run on the event loop).
        `shared`: what the org's other pages read for the same notice (the seats are the org's,
        whoever looks; this page's own session is still checked)."""
        try:
            self._refresh(self._actor(shared, keep_org=True).require_org(), shared)
        except AppError:
            pass


def seats_card(text, used, cap, warning, *, text_id: str, warning_id: str, link: rx.Component | None = None,
               alert: bool = False, **card_props) -> rx.Component:
    """Members against the cap: the summary, a bar when there is a cap (`cap` > 0), the warning when
    there is one (`alert`: announced to screen readers as it appears)."""
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.text("Seats", weight="medium"),
                rx.text(text, size="2", color_scheme="gray", id=text_id),
                *([link] if link is not None else []),
                justify="between",
                width="100%",
                wrap="wrap",
            ),
            rx.cond(cap > 0, rx.progress(value=used, max=cap, width="100%", aria_label="Seats used")),
            warning_callout(warning, "orange", alert=alert, id=warning_id),
            spacing="2",
            width="100%",
        ),
        width="100%",
        **card_props,
    )


def seats_bar() -> rx.Component:
    return rx.cond(
        SeatsBarState.text != "",
        seats_card(SeatsBarState.text, SeatsBarState.used, SeatsBarState.cap, SeatsBarState.warning,
                   text_id="billing-seats", warning_id="billing-seat-warning",
                   link=rx.link("Manage members", href=routes.MEMBERS, size="2"), alert=True, id="seats-bar"),
    )
