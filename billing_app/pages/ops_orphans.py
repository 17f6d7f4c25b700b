"""/ops/orphans: Stripe customers no organization is tied to (found by the bulk reconcile), each with
an explicit Attach to an organization that has no Stripe customer yet."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import reflex as rx

from billing_app import routes
from billing_app.components.layout import data_table, error_callout, info_callout
from billing_app.errors import AppError
from billing_app.formatting import format_date
from billing_app.ops import orphans
from billing_app.pages.ops_common import OpsState, ops_page
from billing_app.state import form_text, id_from_page, in_a_thread


@dataclass
class OrphanLine:
    customer_id: str = ""
    email: str = ""
    name: str = ""
    first_seen: str = ""
    last_seen: str = ""
    hint: str = ""


class OpsOrphansState(OpsState):
    rows: list[OrphanLine] = []
    busy: str = ""  # the customer being attached
    error: str = ""
    message: str = ""

    def _refresh(self) -> None:
        self.rows = [OrphanLine(o.customer_id, o.email, o.name, format_date(o.first_seen_at), format_date(o.last_seen_at),
                                f"metadata names org {o.claimed_org_id} (not trusted)" if o.claimed_org_id else "")
                     for o in orphans.list_orphans()]

    @in_a_thread
    def load(self):
        self.error = self.message = self.busy = ""
        if self._gate() is None:
            self.rows = []
            return
        self._refresh()

    @rx.event(background=True)
    async def attach(self, form: dict):
        customer_id, org_text = form_text(form, "customer_id"), form_text(form, "org_id").strip()
        operator = await self._operator_in_background()
        if operator is None:
            return
        async with self:
            self.error = self.message = ""
            try:
                org_id = id_from_page(org_text, "Enter the id of the organization to attach it to (see Organizations).")
            except AppError as error:
                self.error = error.message
                return
            self.busy = customer_id
        try:
            changes = await asyncio.to_thread(orphans.attach_orphan, operator, customer_id, org_id)
        except Exception as error:  # an AppError, or Stripe failing
            async with self:
                self.error, self.busy = getattr(error, "message", str(error)), ""
            return
        if not await self._still_operator():  # revoked while Stripe answered: no data for this tab
            return
        async with self:
            self.busy = ""
            self.message = f"{customer_id} is now organization {org_text}'s Stripe customer ({len(changes)} mirror change(s))."
            await asyncio.to_thread(self._refresh)  # a database read: off the event loop


S = OpsOrphansState


def _row(o) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.code(o.customer_id, size="1")),
        rx.table.cell(rx.vstack(rx.text(o.email), rx.text(o.name, size="1", color_scheme="gray"), spacing="0")),
        rx.table.cell(o.first_seen, white_space="nowrap"),
        rx.table.cell(o.last_seen, white_space="nowrap"),
        rx.table.cell(rx.text(o.hint, size="1", color_scheme="gray")),
        rx.table.cell(rx.form(
            rx.hstack(
                rx.el.input(type="hidden", name="customer_id", value=o.customer_id),
                rx.input(name="org_id", placeholder="Org id", width="7em", size="1", aria_label="Organization id for " + o.customer_id),
                rx.button("Attach", size="1", type="submit", loading=S.busy == o.customer_id),
                spacing="2", align="center",
            ),
            on_submit=S.attach, reset_on_submit=True,
        )),
        class_name="orphan-row",
    )


@rx.page(route=routes.OPS_ORPHANS, title="Billing", on_load=OpsOrphansState.load)
def ops_orphans_page() -> rx.Component:
    return ops_page(
        "Orphan customers",
        rx.text("Stripe customers no organization is tied to, as the last bulk reconcile found them. Nothing ties one to an "
                "organization by itself (not even an org id in its metadata): attach it only once you know whose it is.",
                size="2", color_scheme="gray"),
        error_callout(S.error),
        info_callout(S.message),
        rx.cond(
            S.rows.length() > 0,
            data_table(("Customer", "Email", "First seen", "Last seen", "Note", "Attach to"), rx.foreach(S.rows, _row), size="1"),
            rx.text("No orphan customers. Run a bulk reconcile on the overview to look again.", color_scheme="gray", id="no-orphans"),
        ),
    )
