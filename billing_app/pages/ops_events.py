"""/ops/events: the webhook event log (type, state, customer, date), the error text of failures,
replay one or all failed, and counts that stay live while the page is open."""

from __future__ import annotations

import asyncio
import uuid

import reflex as rx

from billing_app import routes
from billing_app.components.layout import data_table, error_callout, info_callout
from billing_app.components.pagination import KeysetPages, pager
from billing_app.errors import AppError
from billing_app.ops import events
from billing_app.pages.ops_common import EventLine, OpsState, event_line, field, ops_page
from billing_app.state import form_text, id_from_page, in_a_thread

ALL = "all"
LIVE_SECONDS = 3.0
LIVE_MAX_MINUTES = 30


class OpsEventsState(KeysetPages, OpsState):
    rows: list[EventLine] = []
    types: list[str] = [ALL]
    counts: dict[str, int] = {state: 0 for state in events.STATES}
    type: str = ALL
    state: str = ALL
    customer: str = ""
    start: str = ""
    end: str = ""
    error: str = ""
    message: str = ""
    # Which page visit the live-count loop belongs to: unique, so a loop from before a logout (which
    # resets this state) never passes for the next visit's.
    _live: str = ""

    def _filters(self) -> events.EventFilter:
        return events.EventFilter.parse(self.type, self.state, self.customer, self.start or None, self.end or None)

    def _fetch(self, cursor: str) -> bool:
        """`cursor` is the event id the page starts below, as text ("" for the newest)."""
        self.error = ""
        if self._acting_operator() is None:  # the not-found answer: none of the page's data stays
            return False
        try:
            rows, next_before = events.list_events(self._filters(), before_id=int(cursor) if cursor else None)
        except AppError as error:
            return self._page_refused(error.message)
        self.counts = events.counts()
        return self._show_page([event_line(e) for e in rows], str(next_before) if next_before else "")

    @in_a_thread
    def load(self):
        self.error = self.message = ""
        if self._gate() is None:
            self.rows = []
            return
        self.types = [ALL, *events.event_types()]
        self._first_page()
        self._live = uuid.uuid4().hex
        return OpsEventsState.keep_counts_live(self._live)

    @in_a_thread
    def apply_filters(self, form: dict):
        self.type = form_text(form, "type") or ALL
        self.state = form_text(form, "state") or ALL
        self.customer = form_text(form, "customer").strip()[:255]
        self.start, self.end = form_text(form, "start"), form_text(form, "end")
        self._first_page()

    @in_a_thread
    def show_failed(self):
        self.type, self.state, self.customer, self.start, self.end = ALL, "failed", "", "", ""
        self._first_page()

    @in_a_thread
    def replay(self, event_id: int):
        self.error = self.message = ""
        operator = self._acting_operator()
        if operator is None:
            return
        try:
            events.replay_one(operator, id_from_page(event_id, "No such event."))
        except AppError as error:
            self.error = error.message
            return
        self.message = "Queued again: the worker processes it now."
        self._refetch()

    @in_a_thread
    def replay_all_failed(self):
        self.error = self.message = ""
        operator = self._acting_operator()
        if operator is None:
            return
        count = events.replay_failed(operator)
        self.message = f"{count} failed event(s) queued again." if count else "No failed events to replay."
        self._refetch()

    @rx.event(background=True)
    async def keep_counts_live(self, visit: str):
        for _ in range(int(LIVE_MAX_MINUTES * 60 / LIVE_SECONDS)):
            await asyncio.sleep(LIVE_SECONDS)
            async with self:
                if visit != self._live or self.gate != "ok" or not self.router.url.path.rstrip("/").endswith(routes.OPS_EVENTS):
                    return
            if not await self._still_operator():  # revoked, or another user on this tab since the load
                return
            counts = await asyncio.to_thread(events.counts)
            async with self:
                self.counts = counts


S = OpsEventsState


def _counts() -> rx.Component:
    def badge(state: str, color: str) -> rx.Component:
        return rx.badge(state.title(), ": ", S.counts[state].to_string(), color_scheme=color, variant="soft", size="2",
                        id=f"count-{state}")

    return rx.hstack(badge("pending", "amber"), badge("processed", "green"), badge("failed", "red"),
                     rx.text("(live)", size="1", color_scheme="gray"), spacing="2", align="center", wrap="wrap",
                     id="event-counts", role="status", aria_live="polite")


def _filters() -> rx.Component:
    return rx.form(
        rx.flex(
            field("Type", rx.select(S.types, name="type", default_value=ALL, id="event-type"), id="event-type"),
            field("State", rx.select([ALL, *events.STATES], name="state", default_value=ALL, id="event-state"), id="event-state"),
            field("Customer", rx.input(name="customer", id="event-customer", placeholder="cus_…", width="12em"), id="event-customer"),
            field("From", rx.input(type="date", name="start", id="event-start"), id="event-start"),
            field("To", rx.input(type="date", name="end", id="event-end"), id="event-end"),
            rx.button("Apply", type="submit", id="apply-event-filters"),
            spacing="3", align="end", wrap="wrap", width="100%",
        ),
        on_submit=S.apply_filters,
        width="100%",
    )


def _table() -> rx.Component:
    return data_table(
        ("Received", "Event", "Type", "Customer", "State", "Error", ""),
        rx.foreach(S.rows, lambda e: rx.table.row(
            rx.table.cell(e.received, white_space="nowrap"),
            rx.table.cell(rx.code(e.stripe_event_id, size="1")),
            rx.table.cell(e.type),
            rx.table.cell(e.customer),
            rx.table.cell(rx.badge(e.state, color_scheme=e.color, variant="soft"), rx.text(e.attempts, " attempt(s)", size="1", color_scheme="gray")),
            rx.table.cell(rx.text(e.error, size="1", color_scheme="red", class_name="event-error")),
            rx.table.cell(rx.button("Replay", size="1", variant="soft", on_click=S.replay(e.id), aria_label="Replay " + e.stripe_event_id)),
            class_name="event-row",
        )),
        size="1",
    )


@rx.page(route=routes.OPS_EVENTS, title="Billing", on_load=OpsEventsState.load)
def ops_events_page() -> rx.Component:
    return ops_page(
        "Webhook events",
        rx.hstack(_counts(), rx.spacer(),
                  rx.button("Show failed", variant="soft", on_click=S.show_failed, id="show-failed"),
                  rx.button("Replay all failed", color_scheme="red", on_click=S.replay_all_failed,
                            disabled=S.counts["failed"] == 0, id="replay-all-failed"),
                  width="100%", align="center", wrap="wrap"),
        _filters(),
        error_callout(S.error),
        info_callout(S.message),
        rx.cond(S.rows.length() > 0,
                rx.vstack(_table(), pager(S, "events-prev", "events-next"), spacing="3", width="100%"),
                rx.text("No event matches.", color_scheme="gray", id="no-events")),
    )
