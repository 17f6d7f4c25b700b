"""What every operator console page shares: the gate, the frame and the not-found answer.

`OpsState._operator()` is the one server-side check of the pages: every page's on_load and
every handler that acts calls it (through `_gate` or directly). A visitor, a member or an org
admin sees what an unknown page shows ("404: Page not found"), and no data is ever loaded
for them; the console is not advertised in the navbar or anywhere else. A loop that keeps a page
live (event counts, a run's progress) asks again each round (`_still_operator`), as does an action
that waited on Stripe before it reads the page's data again: the operator may have been revoked
since the page loaded, or logged out and someone else signed in on the tab.
A refused page holds none of its data (`_not_found`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import reflex as rx

from billing_app import routes
from billing_app.components.layout import not_found, page_frame
from billing_app.db import session_scope
from billing_app.errors import AppError
from billing_app.formatting import format_datetime
from billing_app.ops import access
from billing_app.ops.access import Operator
from billing_app.state import AuthState

OK, NOT_FOUND = "ok", "404"
STATE_COLOR = {"pending": "amber", "processed": "green", "failed": "red"}
NAV = [("Overview", routes.OPS), ("Organizations", routes.OPS_ORGS), ("Events", routes.OPS_EVENTS),
       ("Orphans", routes.OPS_ORPHANS), ("Audit", routes.OPS_AUDIT)]


@dataclass
class EventLine:
    """A webhook event as the console's tables show it (the event log, an organization's events)."""

    id: int = 0
    stripe_event_id: str = ""
    type: str = ""
    customer: str = ""
    state: str = ""
    color: str = "gray"
    attempts: int = 0
    received: str = ""
    error: str = ""


def event_line(e) -> EventLine:
    """From a stored event (the model row or eventlog's summary of one)."""
    return EventLine(e.id, e.stripe_event_id, e.type, e.customer_id or "", e.state, STATE_COLOR.get(e.state, "gray"),
                     e.attempts, format_datetime(e.received_at), e.last_error or "")


class OpsState(AuthState):
    # "" until the server has answered, then "ok" for an operator or "404" for anyone else.
    gate: str = ""

    def _operator(self) -> Operator:
        """The signed-in operator, re-read from the database; NOT_FOUND for anyone else."""
        try:
            actor = self._actor()
        except AppError:
            raise access.not_found() from None
        with session_scope() as session:
            return access.operator_of(session, actor)

    async def _operator_in_background(self) -> Operator | None:
        """`_operator` for background events (call it outside `async with self`): the database is
        read in a thread; None after turning the page into the not-found answer."""
        try:
            actor = await self._actor_in_background()
            return await asyncio.to_thread(_operator_of, actor)
        except AppError:
            async with self:
                self._not_found()
            return None

    async def _still_operator(self) -> bool:
        """For each round of a live loop, or after an action's Stripe call (call it outside
        `async with self`): whether the tab's session is an operator's now, one read in a thread.
        The gate passed at load is not enough. False after turning the page into the not-found
        answer: the loop (or the action) stops."""
        async with self:
            session_hash = self._session_hash
        try:
            await asyncio.to_thread(access.operator_of_session_hash, session_hash)
        except AppError:
            async with self:
                self._not_found()
            return False
        return True

    def _acting_operator(self) -> Operator | None:
        """For a handler that acts: the operator, or None after turning the page into the not-found answer."""
        try:
            return self._operator()
        except AppError:
            self._not_found()
            return None

    def _not_found(self) -> None:
        """The not-found answer, and none of the page's data (figures, rows) left in the tab's state."""
        self.reset()  # the page's own fields; the gate is OpsState's
        self.gate = NOT_FOUND

    def _gate(self) -> Operator | None:
        """For on_load: `_acting_operator`, and the page shown when it is one."""
        operator = self._acting_operator()
        if operator is not None:
            self.gate = OK
        return operator


def _operator_of(actor) -> Operator:
    with session_scope() as session:
        return access.operator_of(session, actor)


def ops_nav() -> rx.Component:
    return rx.hstack(
        rx.badge("Operator console", color_scheme="tomato", variant="solid"),
        *[rx.link(label, href=href, size="2", weight="medium", high_contrast=True) for label, href in NAV],
        spacing="4",
        align="center",
        wrap="wrap",
        width="100%",
        id="ops-nav",
        role="navigation",
        aria_label="Operator console",
    )


def ops_page(title: str, *children: rx.Component, max_width: str = "80em") -> rx.Component:
    """The console's frame; the content only for an operator."""
    content = rx.vstack(ops_nav(), rx.heading(title, size="7"), *children, spacing="5", width="100%")
    return rx.cond(
        OpsState.gate == OK,
        page_frame(content, max_width=max_width),
        rx.cond(OpsState.gate == NOT_FOUND, not_found(), rx.center(rx.spinner(size="3"), padding="4em")),
    )


def field(label: str, control: rx.Component, id: str) -> rx.Component:
    """A labelled filter control (the label is tied to the control for screen readers)."""
    return rx.vstack(rx.text(label, as_="label", html_for=id, size="1", weight="medium"), control, spacing="1")


def stat(label: str, value, id: str, hint=None) -> rx.Component:
    """A figure on a card; `hint` (text or a state var) says what it is made of."""
    return rx.card(
        rx.vstack(
            rx.text(label, size="1", color_scheme="gray", weight="medium"),
            rx.text(value, size="6", weight="bold", id=id),  # a figure, not a heading: the page has one h1
            *([rx.text(hint, size="1", color_scheme="gray")] if hint is not None else []),
            spacing="1",
        ),
        width="100%",
    )
