"""/ops/audit: every operator action (who, what, when, target), newest first."""

from __future__ import annotations

from dataclasses import dataclass

import reflex as rx

from billing_app import routes
from billing_app.components.layout import data_table
from billing_app.components.pagination import KeysetPages
from billing_app.db import session_scope
from billing_app.formatting import format_datetime
from billing_app.ops import audit
from billing_app.pages.ops_common import OpsState, ops_page
from billing_app.state import in_a_thread


@dataclass
class AuditRow:
    at: str = ""
    operator: str = ""
    action: str = ""
    target: str = ""
    detail: str = ""


class OpsAuditState(KeysetPages, OpsState):
    rows: list[AuditRow] = []

    def _fetch(self, cursor: str) -> bool:
        """`cursor` is the entry id the page starts below, as text ("" for the newest)."""
        if self._gate() is None:
            self.rows = []
            return False
        with session_scope() as session:
            lines = audit.recent(session, before_id=int(cursor) if cursor else None, limit=audit.PAGE_SIZE + 1)
        more = len(lines) > audit.PAGE_SIZE
        lines = lines[:audit.PAGE_SIZE]
        rows = [AuditRow(format_datetime(a.at), a.operator, a.action.replace("_", " "), a.target, a.detail) for a in lines]
        return self._show_page(rows, str(lines[-1].id) if more and lines else "")

    @in_a_thread
    def load(self):
        self._first_page()


S = OpsAuditState


@rx.page(route=routes.OPS_AUDIT, title="Billing", on_load=OpsAuditState.load)
def ops_audit_page() -> rx.Component:
    return ops_page(
        "Audit log",
        data_table(
            ("When", "Operator", "Action", "Target", "Detail"),
            rx.foreach(S.rows, lambda a: rx.table.row(
                rx.table.cell(a.at, white_space="nowrap"), rx.table.cell(a.operator), rx.table.cell(a.action),
                rx.table.cell(rx.code(a.target, size="1")), rx.table.cell(rx.text(a.detail, size="1")), class_name="audit-row")),
            size="1",
        ),
        rx.hstack(
            rx.button("Newer", variant="soft", on_click=S.previous_page, disabled=S.page_number <= 1, id="audit-prev"),
            rx.button("Older", variant="soft", on_click=S.next_page, disabled=S.next_cursor == "", id="audit-next"),
            justify="end", width="100%",
        ),
    )
