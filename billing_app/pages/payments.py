"""Payment history (admins): newest first, date and status filters, 25 a page, CSV export."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

import reflex as rx

from billing_app import routes
from billing_app.billing.payments import PaymentFilter, list_payments
from billing_app.components.billing_ui import billing_frame, empty_state
from billing_app.components.forms import field_label, native_select
from billing_app.components.layout import data_table, error_callout, link_button
from billing_app.components.pagination import KeysetPages, pager
from billing_app.db import session_scope
from billing_app.errors import AppError
from billing_app.formatting import format_amount, format_date
from billing_app.models import Payment, PaymentStatus
from billing_app.state import AuthState, form_text, in_a_thread

PAGE_SIZE = 25
STATUS_LABEL = {"COMPLETED": "Completed", "FAILED": "Failed", "EXPIRED": "Expired", "CANCELLED": "Canceled", "REFUNDED": "Refunded", "PENDING": "Pending",
                "DISPUTED": "Disputed"}
STATUS_COLOR = {"COMPLETED": "green", "FAILED": "red", "EXPIRED": "gray", "CANCELLED": "gray", "REFUNDED": "orange", "PENDING": "amber",
                "DISPUTED": "red"}
ALL = "all"


@dataclass
class PaymentRow:
    """One line of the table, display-ready ("" where a link is absent)."""

    date: str = ""
    description: str = ""
    amount: str = ""
    breakdown: str = ""  # "$9.00 − $0.90 discount + $1.54 tax" when there is a discount or tax
    refunded: str = ""  # "$4.50 refunded": a partial refund (a full one is the status Refunded)
    status: str = ""
    color: str = "gray"
    invoice_url: str = ""
    pdf_url: str = ""
    receipt_url: str = ""


def _breakdown(p) -> str:
    """What the amount is made of, when a discount or tax changed it."""
    if not (p.discount or p.tax):
        return ""
    parts = [format_amount(p.subtotal if p.subtotal is not None else p.amount + p.discount - p.tax, p.currency)]
    if p.discount:
        parts.append(f"− {format_amount(p.discount, p.currency)} discount")
    if p.tax:
        parts.append(f"+ {format_amount(p.tax, p.currency)} tax")
    return " ".join(parts)


def payment_row(p: Payment, *, links: bool = True) -> PaymentRow:
    """`links`: Stripe's invoice, PDF and receipt links, which open for anyone holding them: only
    for the org's own admins (the operator console shows the rows without them)."""
    row = PaymentRow(
        date=format_date(p.created),
        description=p.description,
        amount=format_amount(p.amount, p.currency),
        breakdown=_breakdown(p),
        refunded=f"{format_amount(p.amount_refunded, p.currency)} refunded"
        if p.amount_refunded and p.status != PaymentStatus.REFUNDED.value else "",
        status=STATUS_LABEL.get(p.status, p.status),
        color=STATUS_COLOR.get(p.status, "gray"),
    )
    if links:
        row.invoice_url, row.pdf_url, row.receipt_url = p.invoice_url or "", p.pdf_url or "", p.receipt_url or ""
    return row


class PaymentsState(KeysetPages, AuthState):
    rows: list[PaymentRow] = []
    start: str = ""
    end: str = ""
    status: str = ALL
    error: str = ""

    def _filters(self) -> PaymentFilter:
        return PaymentFilter.parse(self.start or None, self.end or None, None if self.status == ALL else self.status)

    def _fetch(self, cursor: str, shared: dict | None = None) -> bool:
        self.error = ""
        try:
            actor = self._actor(shared, keep_org=True)
            filters = self._filters()
            with session_scope() as session:
                page = list_payments(session, actor, filters, limit=PAGE_SIZE, cursor=cursor or None)
        except AppError as error:
            return self._page_refused(error.message)
        return self._show_page([payment_row(p) for p in page.rows], page.next_cursor)

    @in_a_thread
    def load(self):
        try:
            actor = self._actor()
            actor.require_org()
        except AppError as error:
            return self._signed_out(error)
        self.cursors = [""]
        if actor.is_admin:
            self._watch_live(actor.org_id)  # before the read: a change meanwhile refreshes it
            self._fetch("")
        else:
            self.rows, self.next_cursor = [], ""

    def _on_billing_changed(self, shared: dict | None = None):
        """A webhook changed this org's billing: show the current page again (called by `live`;
        private, so no browser can send it as an event run on the event loop)."""
        if self.cursors:
            self._fetch(self.cursors[-1], shared)

    @in_a_thread
    def apply_filters(self, form: dict):
        self.start, self.end = form_text(form, "start"), form_text(form, "end")
        self.status = form_text(form, "status") or ALL
        self._first_page()

    @in_a_thread
    def clear_filters(self):
        self.start, self.end, self.status = "", "", ALL
        self._first_page()

    @rx.var
    def export_url(self) -> str:
        """On the backend's address: in development the page is served from another port."""
        filters = {"start": self.start, "end": self.end, "status": "" if self.status == ALL else self.status}
        query = {"org": str(self.org_id), **{k: v for k, v in filters.items() if v}}
        url = rx.config.get_config().api_url.rstrip("/") + routes.API_PAYMENTS_CSV
        return f"{url}?{urlencode(query)}"


def _filters() -> rx.Component:
    return rx.form(
        rx.flex(
            rx.vstack(field_label("From", "filter-start"), rx.input(type="date", name="start", id="filter-start"), spacing="1"),
            rx.vstack(field_label("To", "filter-end"), rx.input(type="date", name="end", id="filter-end"), spacing="1"),
            rx.vstack(
                field_label("Status", "filter-status"),
                native_select("filter-status", "status", [(ALL, "All")] + [(s.value, STATUS_LABEL[s.value]) for s in PaymentStatus
                                                                          if s != PaymentStatus.PENDING]),
                spacing="1",
            ),
            rx.button("Apply", type="submit", id="apply-filters"),
            rx.button("Clear", type="reset", variant="soft", color_scheme="gray", on_click=PaymentsState.clear_filters),
            rx.spacer(),
            link_button(rx.icon("download", size=16), "Export CSV", href=PaymentsState.export_url, is_external=True, variant="outline", id="export-csv"),
            spacing="3",
            align="end",
            wrap="wrap",
            width="100%",
        ),
        on_submit=PaymentsState.apply_filters,
        width="100%",
    )


def _links(row) -> rx.Component:
    return rx.hstack(
        rx.cond(row.invoice_url != "", rx.link("Invoice", href=row.invoice_url, is_external=True, size="2")),
        rx.cond(row.pdf_url != "", rx.link("PDF", href=row.pdf_url, is_external=True, size="2", class_name="pdf-link")),
        rx.cond(row.receipt_url != "", rx.link("Receipt", href=row.receipt_url, is_external=True, size="2")),
        spacing="3",
    )


def _table() -> rx.Component:
    return data_table(
        ("Date", "Description", "Amount", "Status", "Documents"),
        rx.foreach(
            PaymentsState.rows,
            lambda row: rx.table.row(
                rx.table.cell(row.date, white_space="nowrap"),
                rx.table.cell(row.description),
                rx.table.cell(
                    rx.text(row.amount, white_space="nowrap"),
                    rx.cond(row.breakdown != "", rx.text(row.breakdown, size="1", color_scheme="gray", class_name="amount-breakdown")),
                    rx.cond(row.refunded != "", rx.text(row.refunded, size="1", color_scheme="orange", class_name="amount-refunded")),
                ),
                rx.table.cell(rx.badge(row.status, color_scheme=row.color, variant="soft", high_contrast=True)),
                rx.table.cell(_links(row)),
                class_name="payment-row",
            ),
        ),
        region="Payments",
    )


@rx.page(route=routes.PAYMENTS, title="Payments · Billing", on_load=PaymentsState.load)
def payments_page() -> rx.Component:
    return billing_frame(
        "Payments",
        rx.cond(
            AuthState.is_admin,
            rx.vstack(
                _filters(),
                error_callout(PaymentsState.error),
                rx.cond(
                    PaymentsState.rows.length() > 0,
                    rx.vstack(_table(), pager(PaymentsState, "prev-page", "next-page"), width="100%", spacing="3"),
                    rx.cond(
                        PaymentsState.error == "",
                        empty_state("receipt", "No payments match", id="no-payments"),
                    ),
                ),
                width="100%",
                spacing="4",
            ),
            rx.callout("Only organization admins can see the payment history.", icon="lock", id="payments-admin-only"),
        ),
        max_width="72em",
    )
