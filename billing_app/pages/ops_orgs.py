"""/ops/orgs: every organization with plan, status, MRR, seats and created; search, filter, sort,
keyset pages, CSV export."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

import reflex as rx

from billing_app import routes
from billing_app.components.layout import data_table, error_callout
from billing_app.components.pagination import KeysetPages, pager
from billing_app.db import session_scope
from billing_app.errors import AppError
from billing_app.formatting import format_amount, format_date, plan_label
from billing_app.ops import orgs
from billing_app.pages.ops_common import OpsState, field, ops_page
from billing_app.state import form_text, in_a_thread

ALL = "all"
SORT_LABELS = {"-created": "Newest", "created": "Oldest", "name": "Name A–Z", "-name": "Name Z–A", "-mrr": "MRR, highest", "mrr": "MRR, lowest"}
STATUS_COLOR = {"active": "green", "trialing": "blue", "past_due": "red", "unpaid": "red", "paused": "amber",
                "canceled": "gray", "incomplete": "amber", "incomplete_expired": "gray", "lifetime": "iris"}


@dataclass
class OrgLine:
    id: str = ""
    url: str = ""
    name: str = ""
    plan: str = ""
    status: str = ""
    color: str = "gray"
    mrr: str = ""
    seats: str = ""
    created: str = ""


def org_line(row: orgs.OrgRow) -> OrgLine:
    status = "lifetime" if row.lifetime and row.status == "active" else (row.status or "none")
    plan = plan_label(row.plan, row.period_type) if row.plan and row.period_type else (row.plan or "—")
    return OrgLine(
        id=str(row.id), url=routes.ops_org_url(row.id), name=row.name, plan=plan, status=status.replace("_", " "),
        color=STATUS_COLOR.get(status, "gray"), mrr=format_amount(row.mrr, row.currency) if row.currency else "—",
        seats=f"{row.seats_used} / {'∞' if row.seat_limit is None else row.seat_limit}", created=format_date(row.created),
    )


class OpsOrgsState(KeysetPages, OpsState):
    rows: list[OrgLine] = []
    q: str = ""
    status: str = ALL
    sort: str = "-created"
    error: str = ""

    def _fetch(self, cursor: str) -> bool:
        self.error = ""
        if self._acting_operator() is None:  # the not-found answer: none of the page's data stays
            return False
        try:
            filters = orgs.OrgFilter.parse(self.q, self.status, self.sort)
            with session_scope() as session:
                page = orgs.list_orgs(session, filters, cursor=cursor or None)
        except AppError as error:
            return self._page_refused(error.message)
        return self._show_page([org_line(r) for r in page.rows], page.next_cursor)

    @in_a_thread
    def load(self):
        if self._gate() is None:
            self.rows = []
            return
        self._first_page()

    @in_a_thread
    def apply_filters(self, form: dict):
        self.q = form_text(form, "q")[:254]
        self.status = form_text(form, "status") or ALL
        self.sort = form_text(form, "sort") or "-created"
        self._first_page()

    @rx.var
    def export_url(self) -> str:
        query = {k: v for k, v in {"q": self.q, "status": "" if self.status == ALL else self.status, "sort": self.sort}.items() if v}
        url = rx.config.get_config().api_url.rstrip("/") + routes.API_OPS_ORGS_CSV
        return f"{url}?{urlencode(query)}"


S = OpsOrgsState


def _filters() -> rx.Component:
    return rx.form(
        rx.flex(
            field("Search", rx.input(name="q", id="org-search", placeholder="Name, member email or cus_…", width="16em"), id="org-search"),
            field("Status", rx.select([ALL, *orgs.STATUS_FILTERS], name="status", default_value=ALL, id="org-status"), id="org-status"),
            field("Sort", rx.select.root(
                rx.select.trigger(id="org-sort"),
                rx.select.content(*[rx.select.item(label, value=value) for value, label in SORT_LABELS.items()]),
                name="sort", default_value="-created"), id="org-sort"),
            rx.button("Apply", type="submit", id="apply-org-filters"),
            rx.spacer(),
            rx.link(rx.button(rx.icon("download", size=16), "Export CSV", variant="outline", type="button"),
                    href=S.export_url, is_external=True, id="export-orgs"),
            spacing="3", align="end", wrap="wrap", width="100%",
        ),
        on_submit=S.apply_filters,
        width="100%",
    )


def _table() -> rx.Component:
    return data_table(
        ("Organization", "Plan", "Status", "MRR", "Seats", "Created"),
        rx.foreach(S.rows, lambda row: rx.table.row(
            rx.table.row_header_cell(rx.link(row.name, href=row.url, weight="medium")),
            rx.table.cell(row.plan),
            rx.table.cell(rx.badge(row.status, color_scheme=row.color, variant="soft")),
            rx.table.cell(row.mrr, white_space="nowrap"),
            rx.table.cell(row.seats, white_space="nowrap"),
            rx.table.cell(row.created, white_space="nowrap"),
            class_name="org-row",
        )),
    )


@rx.page(route=routes.OPS_ORGS, title="Billing", on_load=OpsOrgsState.load)
def ops_orgs_page() -> rx.Component:
    return ops_page(
        "Organizations",
        _filters(),
        error_callout(S.error),
        rx.cond(S.rows.length() > 0, rx.vstack(_table(), pager(S, "orgs-prev", "orgs-next"), spacing="3", width="100%"),
                rx.text("No organization matches.", color_scheme="gray", id="no-orgs")),
    )
