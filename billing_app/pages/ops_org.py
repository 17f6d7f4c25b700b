"""/ops/orgs/<id>: one organization in full (subscription, payments, members, Stripe customer, its
webhook events) with Reconcile now; and /ops/orgs/<id>/view, its billing pages as its admin sees
them, read-only (nothing on it acts)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import reflex as rx

from billing_app import routes
from billing_app.billing.views import BillingView, status_badge
from billing_app.components.billing_ui import detail
from billing_app.components.layout import data_table, error_callout, info_callout
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.formatting import format_date, plan_label
from billing_app.ops import orgs
from billing_app.pages.ops_common import EventLine, OpsState, event_line, ops_page
from billing_app.state import BusyForm, in_a_thread
from billing_app.pages.ops_orgs import OrgLine, org_line
from billing_app.pages.payments import PaymentRow, payment_row

_ORG_IN_PATH = re.compile(r"^/ops/orgs/(\d{1,9})(?:/view)?/?$")


@dataclass
class SubLine:
    stripe_id: str = ""
    status: str = ""
    color: str = "gray"
    plan: str = ""
    started: str = ""
    period_end: str = ""
    ended: str = ""


@dataclass
class MemberLine:
    email: str = ""
    name: str = ""
    role: str = ""


def _org_id(path: str) -> int | None:
    match = _ORG_IN_PATH.match(path or "")
    return int(match.group(1)) if match else None


def _members(rows) -> list[MemberLine]:
    return [MemberLine(m.email, m.name, m.role.replace("_", " ")) for m in rows]


class OpsOrgState(BusyForm, OpsState):
    found: bool = False
    org: OrgLine = OrgLine()
    customer_id: str = ""
    dashboard_url: str = ""
    subscriptions: list[SubLine] = []
    payments: list[PaymentRow] = []
    members: list[MemberLine] = []
    events: list[EventLine] = []
    changes: list[str] = []

    def _refresh(self, org_id: int) -> None:
        with session_scope() as session:  # the plan chain is read while the session is open
            d = orgs.org_detail(session, org_id)
            subscriptions = []
            for s in d.subscriptions:
                label, color = status_badge(session, s)
                period = s.period
                plan = plan_label(period.plan.name, period.period_type) if period else (s.stripe_price_id or "—")
                subscriptions.append(SubLine(s.stripe_id, label, color, plan, format_date(s.started_at),
                                             format_date(s.current_period_end), format_date(s.ended_at)))
        self.found = True
        self.org = org_line(d.summary)
        self.customer_id, self.dashboard_url = d.customer_id or "", d.stripe_dashboard_url or ""
        self.subscriptions = subscriptions
        self.payments = [payment_row(p, links=False) for p in d.payments]
        self.members = _members(d.members)
        self.events = [event_line(e) for e in d.events]

    @in_a_thread
    def load(self):
        self.error = self.message = ""
        self.changes, self.found = [], False
        if self._gate() is None:
            return
        org_id = _org_id(self.router.url.path)
        try:
            if org_id is None:
                raise AppError(ErrorCode.NOT_FOUND, "No such organization.")
            self._refresh(org_id)
        except AppError as error:
            self.error = error.message

    @rx.event(background=True)
    async def reconcile_now(self):
        operator = await self._operator_in_background()
        if operator is None:
            return
        async with self:
            self.error = self.message = ""
            self.changes = []
            org_id = _org_id(self.router.url.path)
            self.busy = True
        try:
            changes = await asyncio.to_thread(orgs.reconcile_org, operator, org_id or 0)
        except AppError as error:
            await self._refused(error)
            return
        except Exception as error:  # Stripe failed: say so, nothing half-done (sync writes in one transaction)
            async with self:
                self.error, self.busy = f"The reconcile failed: {getattr(error, 'message', error)}", False
            return
        if not await self._still_operator():  # revoked while Stripe answered: no data for this tab
            return
        async with self:
            self.busy = False
            self.changes = changes
            self.message = f"Reconciled with Stripe: {len(changes)} change(s)." if changes else "Reconciled with Stripe: the mirror was already right."
            await asyncio.to_thread(self._refresh, org_id)  # a database read: off the event loop


class OpsReadOnlyState(OpsState):
    """The org's billing pages as its admin sees them: the same views, and no control that acts."""

    org_name: str = ""
    view: BillingView = BillingView()
    payments: list[PaymentRow] = []
    members: list[MemberLine] = []
    error: str = ""

    @in_a_thread
    def load(self):
        self.error, self.org_name = "", ""
        operator = self._gate()
        if operator is None:
            return
        try:
            view = orgs.open_read_only(operator, _org_id(self.router.url.path) or 0)
        except AppError as error:
            self.error = error.message
            return
        self.org_name, self.view = view.org_name, view.billing
        self.payments, self.members = [payment_row(p, links=False) for p in view.payments], _members(view.members)


O = OpsOrgState


def _table(headers: list[str], rows, cells, row_class: str) -> rx.Component:
    return data_table(headers, rx.foreach(rows, lambda row: rx.table.row(*cells(row), class_name=row_class)), size="1")


def _section(title: str, *children, id: str) -> rx.Component:
    return rx.vstack(rx.heading(title, size="4", as_="h3"), *children, spacing="2", width="100%", id=id)


def _payments_table(rows) -> rx.Component:
    return _table(["Date", "Description", "Amount", "Status"], rows,
                  lambda p: [rx.table.cell(p.date, white_space="nowrap"), rx.table.cell(p.description),
                             rx.table.cell(p.amount, white_space="nowrap"), rx.table.cell(p.status)], "payment-row")


def _members_table(rows) -> rx.Component:
    return _table(["Email", "Name", "Role"], rows,
                  lambda m: [rx.table.cell(m.email), rx.table.cell(m.name), rx.table.cell(m.role)], "member-row")


def _detail() -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.heading(O.org.name, size="6", as_="h2", id="org-name"),  # under the page's h1; its sections are h3
            rx.badge(O.org.status, color_scheme=O.org.color, variant="soft", size="2", id="org-status-badge"),
            rx.spacer(),
            rx.button(rx.icon("refresh-cw", size=16), "Reconcile now", on_click=O.reconcile_now, loading=O.busy, id="reconcile-now"),
            rx.link(rx.button(rx.icon("eye", size=16), "Open as read-only", variant="soft", type="button"),
                    href=routes.OPS_ORGS + "/" + O.org.id + "/view", id="open-read-only"),
            width="100%", align="center", wrap="wrap",
        ),
        error_callout(O.error),
        info_callout(O.message),
        rx.cond(O.changes.length() > 0, rx.box(rx.foreach(O.changes, lambda line: rx.text(line, size="1", as_="div")), id="reconcile-changes")),
        rx.card(rx.grid(
            detail("Plan", O.org.plan), detail("MRR", O.org.mrr), detail("Seats", O.org.seats), detail("Created", O.org.created),
            rx.vstack(
                rx.text("Stripe customer", size="1", color_scheme="gray", weight="medium"),
                rx.cond(O.dashboard_url != "",
                        rx.link(O.customer_id, href=O.dashboard_url, is_external=True, id="stripe-customer"),
                        rx.text(rx.cond(O.customer_id != "", O.customer_id, "none yet"), size="3", weight="medium", id="stripe-customer")),
                spacing="1",
            ),
            columns=rx.breakpoints(initial="2", md="5"), spacing="4", width="100%",
        ), width="100%"),
        _section("Subscriptions", _table(
            ["Stripe id", "Plan", "Status", "Started", "Period end", "Ended"], O.subscriptions,
            lambda s: [rx.table.cell(rx.code(s.stripe_id)), rx.table.cell(s.plan),
                       rx.table.cell(rx.badge(s.status, color_scheme=s.color, variant="soft")), rx.table.cell(s.started),
                       rx.table.cell(s.period_end), rx.table.cell(s.ended)], "subscription-row"), id="org-subscriptions"),
        _section("Payments (latest 25)", _payments_table(O.payments), id="org-payments"),
        _section("Members", _members_table(O.members), id="org-members"),
        _section("Webhook events", _table(
            ["Received", "Event", "Type", "State", "Error"], O.events,
            lambda e: [rx.table.cell(e.received, white_space="nowrap"), rx.table.cell(rx.code(e.stripe_event_id)),
                       rx.table.cell(e.type), rx.table.cell(e.state), rx.table.cell(rx.text(e.error, size="1", color_scheme="red"))],
            "event-row"), id="org-events"),
        spacing="4", width="100%",
    )


@rx.page(route=routes.OPS_ORG, title="Billing", on_load=OpsOrgState.load)
def ops_org_page() -> rx.Component:
    return ops_page("Organization", rx.cond(O.found, _detail(), error_callout(O.error)))


R = OpsReadOnlyState
V = OpsReadOnlyState.view


def _read_only() -> rx.Component:
    return rx.vstack(
        rx.callout(
            rx.text("Read-only: ", rx.text.strong(R.org_name), "'s billing as its admin sees it. Nothing on this page acts."),
            icon="eye", color_scheme="amber", width="100%", id="read-only-banner",
        ),
        rx.card(rx.vstack(
            rx.hstack(
                rx.vstack(rx.text("Current plan", size="1", color_scheme="gray", weight="medium"),
                          rx.heading(rx.cond(V.has_subscription, V.plan_name, "No subscription"), size="6", as_="h2", id="plan-name"),
                          rx.text(V.price, size="2", color_scheme="gray"), spacing="1"),
                rx.badge(V.status, color_scheme=V.status_color, size="3", variant="soft", id="status-badge"),
                justify="between", align="start", width="100%", wrap="wrap",
            ),
            rx.grid(detail("Period", V.period), detail(V.renewal_label, V.renewal_date), detail("Trial ends", V.trial_end),
                    detail("Started", V.start_date), detail("Auto-renew", V.auto_renew),
                    columns=rx.breakpoints(initial="2", sm="3"), spacing="4", width="100%"),
            rx.cond(V.scheduled_change != "", rx.text(V.scheduled_change, size="2", id="scheduled-change")),
            rx.cond(V.payment_problem, rx.callout("The last payment failed.", icon="triangle-alert", color_scheme="red")),
            spacing="4", width="100%",
        ), size="3", width="100%"),
        _section("Payments", _payments_table(R.payments), id="read-only-payments"),
        _section("Members", _members_table(R.members), id="read-only-members"),
        spacing="4", width="100%", id="read-only",
    )


@rx.page(route=routes.OPS_ORG_READ_ONLY, title="Billing", on_load=OpsReadOnlyState.load)
def ops_org_read_only_page() -> rx.Component:
    return ops_page("Billing (read-only)", error_callout(R.error), rx.cond(R.org_name != "", _read_only()))
