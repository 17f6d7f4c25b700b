"""The billing dashboard's admin sections and the cancellation flow, for pages/billing.py.

`DashboardMixin` adds their state and handlers to `BillingState` (which mixes it in); the
components take that state class, so this module imports no page. Every control has a label tied
to it (`get_by_label` finds it); actions that call Stripe run as background events through
`BillingState._act` (lock held only to show progress and write the outcome).

The cancellation flow, in one dialog: reason (one of Stripe's, required) and an optional comment;
pause instead (1, 2 or 3 months); the retention offer (once per organization); confirm at the
period end or now.
"""

from __future__ import annotations

import reflex as rx

from billing_app import routes
from billing_app.billing import billing_details, retention
from billing_app.billing.billing_details import TAX_ID_TYPES, Details
from billing_app.billing.dashboard import DashboardView
from billing_app.billing.subscriptions import CANCELLATION_FEEDBACK
from billing_app.components.billing_ui import banner
from billing_app.components.forms import labelled, native_select
from billing_app.components.layout import error_callout, focus_on_close, warning_callout
from billing_app.formatting import format_date
from billing_app.state import form_text

REASON_LABELS = {
    "too_expensive": "It's too expensive", "missing_features": "Some features are missing",
    "switched_service": "I'm switching to another service", "unused": "I don't use it enough",
    "customer_service": "Customer service was less than expected", "too_complex": "It's too complicated",
    "low_quality": "Quality was less than expected", "other": "Another reason",
}
STEPS = ("reason", "pause", "offer", "confirm")


class DashboardMixin(rx.State, mixin=True):
    dash: DashboardView = DashboardView()
    # The cancellation flow: which step shows ("" when closed) and what was chosen so far.
    cancel_step: str = ""
    cancel_feedback: str = ""
    cancel_comment: str = ""
    flow_error: str = ""
    # The billing details dialog.
    details_open: bool = False
    details_error: str = ""

    # --- the cancellation flow --------------------------------------------------------------------------

    @rx.event
    def start_cancel(self):
        self.cancel_step, self.cancel_feedback, self.cancel_comment, self.flow_error = "reason", "", "", ""
        self.error = self.message = ""

    @rx.event
    def close_cancel(self, open_: bool = False):
        if not open_:
            self.cancel_step, self.flow_error = "", ""

    def _after(self, step: str) -> str:
        """The next step that applies: pause only when the subscription can pause, the offer while it stands."""
        for nxt in STEPS[STEPS.index(step) + 1:]:
            if nxt == "pause" and not self.dash.can_pause:
                continue
            if nxt == "offer" and not self.dash.offer_description:
                continue
            return nxt
        return "confirm"

    @rx.event
    def submit_reason(self, form: dict):
        feedback = form_text(form, "feedback")
        if feedback not in CANCELLATION_FEEDBACK:
            self.flow_error = "Choose a reason: it helps us improve."
            return
        self.cancel_feedback, self.cancel_comment = feedback, form_text(form, "comment").strip()[:500]
        self.flow_error, self.cancel_step = "", self._after("reason")

    @rx.event
    def skip_step(self):
        self.flow_error = ""
        self.cancel_step = self._after(self.cancel_step or "reason")

    @rx.event(background=True)
    async def pause_instead(self, form: dict):
        try:
            months = int(form_text(form, "months"))
        except ValueError:
            months = 0
        resumes, ok = await self._act("pause", lambda actor: retention.pause(actor, months))
        async with self:
            if ok:
                self.cancel_step = ""
                self.message = f"Your subscription is paused until {format_date(resumes)}. Nothing is charged meanwhile."
            else:
                self.flow_error, self.error = self.error, ""

    @rx.event(background=True)
    async def accept_offer(self):
        coupon, ok = await self._act("offer", retention.accept)
        async with self:
            if ok:
                self.cancel_step = ""
                self.message = f"Thank you for staying: {coupon.describe()} is applied to your subscription."
            else:
                self.flow_error, self.error = self.error, ""

    @rx.event(background=True)
    async def confirm_cancel_flow(self, form: dict):
        now = form_text(form, "when") == "now"
        async with self:
            feedback, comment = self.cancel_feedback or None, self.cancel_comment or None
        _, ok = await self._act("cancel", lambda actor: retention.cancel(actor, at_period_end=not now, feedback=feedback, comment=comment))
        async with self:
            if ok:
                self.cancel_step = ""
                self.message = ("Your subscription has ended." if now else
                                "Your subscription will end at the end of the period. You can reactivate it until then.")
            else:
                self.flow_error, self.error = self.error, ""

    @rx.event(background=True)
    async def resume_now(self):
        await self._act("resume", retention.resume, done="Your subscription is active again.")

    # --- billing details ----------------------------------------------------------------------------------

    @rx.event
    def set_details_open(self, open_: bool):
        self.details_open, self.details_error = open_, ""

    async def _details(self, busy: str, fn, done: str, close: bool = False):
        _, ok = await self._act(busy, fn)
        async with self:
            if ok:
                self.details_error, self.message = "", done
                self.details_open = not close
            else:
                self.details_error, self.error = self.error, ""

    @rx.event(background=True)
    async def save_details(self, form: dict):
        details = Details(**{k: form_text(form, k) for k in ("email", "name", "line1", "line2", "city", "state", "postal_code", "country")})
        await self._details("details", lambda actor: billing_details.update(actor, details), "Your billing details are saved.", close=True)

    @rx.event(background=True)
    async def add_tax_id(self, form: dict):
        kind, value = form_text(form, "tax_type"), form_text(form, "tax_value")
        await self._details("tax_id", lambda actor: billing_details.add_tax_id(actor, kind, value), "The tax ID is added.")

    @rx.event(background=True)
    async def remove_tax_id(self, tax_id: str):
        await self._details("tax_id", lambda actor: billing_details.remove_tax_id(actor, tax_id), "The tax ID is removed.")


# --- components --------------------------------------------------------------------------------------------


def _section(title: str, *children, **props) -> rx.Component:
    return rx.card(rx.vstack(rx.heading(title, size="4", as_="h2"), *children, spacing="3", width="100%"), width="100%", **props)


def paused_banner(S) -> rx.Component:
    D = S.dash
    return banner(
        D.paused,
        "circle-pause",
        rx.cond(D.paused_until != "", rx.text("Paused until ", rx.text.strong(D.paused_until), ". "), rx.text("Paused. ")),
        "Nothing is charged and the plan's features are off meanwhile; it resumes by itself.",
        action=rx.button("Resume now", size="2", on_click=S.resume_now, loading=S.busy == "resume", id="resume-now"),
        color_scheme="amber",
        id="paused-banner",
    )


def _payment_method(S) -> rx.Component:
    D = S.dash
    return _section(
        "Payment method",
        rx.cond(
            D.card != "",
            rx.vstack(rx.text(D.card, weight="medium", id="card"), rx.text(D.card_expiry, size="2", color_scheme="gray"), spacing="1"),
            rx.text("No card on file.", color_scheme="gray"),
        ),
        warning_callout(D.card_warning, "amber", id="card-warning"),
        rx.button("Update payment method", variant="soft", on_click=S.open_portal("payment_method_update"),
                  loading=S.busy == "portal", id="update-card"),
        id="payment-method",
    )


def _next_invoice(S) -> rx.Component:
    D = S.dash
    return _section(
        "Next invoice",
        rx.cond(
            D.next_amount != "",
            rx.vstack(
                rx.hstack(rx.text(D.next_amount, size="6", weight="bold", id="next-amount"),
                          rx.text("on ", D.next_date, color_scheme="gray", id="next-date"), align="baseline", spacing="2", wrap="wrap"),
                rx.el.ul(rx.foreach(D.next_details, lambda d: rx.el.li(rx.text(d, size="2"))), class_name="plain-list", id="next-details"),
                spacing="2",
            ),
            rx.text(rx.cond(D.paused, "Nothing while the subscription is paused.", "No upcoming invoice."), color_scheme="gray"),
        ),
        rx.cond(
            D.discounts.length() > 0,
            rx.hstack(rx.foreach(D.discounts, lambda d: rx.badge(d, color_scheme="green", variant="soft", size="2")),
                      wrap="wrap", spacing="2", id="discounts"),
        ),
        id="next-invoice",
    )


def _labelled_value(label: str, value: rx.Component) -> rx.Component:
    return rx.vstack(rx.text(label, size="1", color_scheme="gray"), value, spacing="1")


def _billing_details(S) -> rx.Component:
    D = S.dash
    return _section(
        "Billing details",
        rx.grid(
            _labelled_value("Billing email", rx.text(D.billing_email, id="billing-email")),
            _labelled_value("Company name", rx.text(rx.cond(D.company_name != "", D.company_name, "—"), id="company-name")),
            _labelled_value("Address", rx.cond(D.address_lines.length() > 0,
                                               rx.vstack(rx.foreach(D.address_lines, rx.text), spacing="0", id="address"),
                                               rx.text("—"))),
            _labelled_value("Tax IDs", rx.cond(D.tax_ids.length() > 0,
                                               rx.vstack(rx.foreach(D.tax_ids, lambda t: rx.text(t.label, rx.cond(t.status != "", " (" + t.status + ")", ""),
                                                                                                  class_name="tax-id")), spacing="0", id="tax-ids"),
                                               rx.text("—"))),
            columns=rx.breakpoints(initial="1", sm="2"),
            spacing="4",
            width="100%",
        ),
        rx.flex(
            rx.button("Edit billing details", variant="soft", on_click=S.set_details_open(True), id="edit-details"),
            rx.button("Edit in the Stripe portal", variant="ghost", on_click=S.open_portal("customer_update"), id="details-portal"),
            spacing="3",
            wrap="wrap",
        ),
        id="billing-details",
    )


def _invoices(S) -> rx.Component:
    D = S.dash
    return _section(
        "Recent invoices",
        rx.cond(
            D.invoices.length() > 0,
            rx.el.ul(
                rx.foreach(D.invoices, lambda i: rx.el.li(
                    rx.hstack(
                        rx.text(i.date, size="2", min_width="7em"),
                        rx.text(i.amount, size="2", weight="medium"),
                        rx.badge(i.status, variant="soft", color_scheme=rx.match(i.status, ("Paid", "green"), ("Failed", "red"), "gray")),
                        rx.spacer(),
                        rx.link("View", href=i.url, is_external=True, size="2", aria_label="View the invoice of " + i.date),
                        rx.cond(i.pdf_url != "", rx.link("PDF", href=i.pdf_url, is_external=True, size="2",
                                                          aria_label="Download the PDF of the invoice of " + i.date)),
                        align="center", spacing="3", wrap="wrap", width="100%",
                    ),
                    class_name="invoice-row",
                )),
                class_name="plain-list",
                id="recent-invoices",
            ),
            rx.text("No invoices yet.", color_scheme="gray"),
        ),
        rx.link("All payments", href=routes.PAYMENTS, size="2"),
        id="invoices",
    )


def admin_sections(S) -> rx.Component:
    """Payment method, next invoice, billing details and recent invoices (admins only)."""
    return rx.grid(
        _payment_method(S), _next_invoice(S), _billing_details(S), _invoices(S),
        columns=rx.breakpoints(initial="1", md="2"),
        spacing="4",
        width="100%",
    )


def _dialog_form(on_submit, *children: rx.Component) -> rx.Component:
    """A form in a dialog: its fields and buttons one under the other; what was typed stays when it is
    sent (a refusal shows above it, to correct and send again)."""
    return rx.form(rx.vstack(*children, spacing="3", width="100%"), on_submit=on_submit, reset_on_submit=False)


def _buttons(*buttons: rx.Component) -> rx.Component:
    """A dialog's buttons, on the right: the way back first, the action last."""
    return rx.flex(*buttons, justify="end", spacing="3", wrap="wrap", width="100%")


def _close_button(label: str) -> rx.Component:
    return rx.dialog.close(rx.button(label, variant="soft", color_scheme="gray", type="button"))


def _skip_button(S, id: str) -> rx.Component:
    """Turns down what a step offers and goes on to the next."""
    return rx.button("No thanks, continue", variant="soft", color_scheme="gray", type="button", on_click=S.skip_step, id=id)


def _reason_step(S) -> rx.Component:
    return _dialog_form(
        S.submit_reason,
        labelled("Why are you canceling?", native_select("cancel-reason", "feedback", list(REASON_LABELS.items()),
                                                         placeholder="Choose a reason", required=True), "cancel-reason"),
        labelled("Anything else you'd like to tell us? (optional)",
                 rx.text_area(id="cancel-comment", name="comment", max_length=500, width="100%"), "cancel-comment"),
        _buttons(_close_button("Keep subscription"), rx.button("Continue", type="submit", id="cancel-continue")),
    )


def _pause_step(S) -> rx.Component:
    return _dialog_form(
        S.pause_instead,
        rx.text("Need a break instead? Pause for up to three months: nothing is charged and the plan's features are off "
                "until it resumes by itself. You can resume early from this page.", size="2"),
        labelled("Pause for", native_select("pause-months", "months", [(str(n), f"{n} month{'s' if n > 1 else ''}")
                                                                     for n in retention.PAUSE_MONTHS]), "pause-months"),
        _buttons(_skip_button(S, "skip-pause"), rx.button("Pause instead", type="submit", loading=S.busy == "pause", id="pause-instead")),
    )


def _offer_step(S) -> rx.Component:
    D = S.dash
    return rx.vstack(
        rx.callout.root(
            rx.callout.icon(rx.icon("gift")),
            rx.callout.text(rx.text.strong("Before you go: ", D.offer_description), ". Stay, and it applies to your next invoices."),
            color_scheme="green",
            high_contrast=True,
            width="100%",
            id="retention-offer",
        ),
        _buttons(
            _skip_button(S, "decline-offer"),
            rx.button("Accept offer", color_scheme="green", high_contrast=True, on_click=S.accept_offer, loading=S.busy == "offer",
                      id="accept-offer"),
        ),
        spacing="3",
        width="100%",
    )


def _confirm_step(S, period_end) -> rx.Component:
    return _dialog_form(
        S.confirm_cancel_flow,
        rx.el.fieldset(
            rx.el.legend("When should it end?", class_name="field-label"),
            rx.vstack(
                rx.el.label(rx.el.input(type="radio", name="when", value="period_end", default_checked=True, id="when-period-end"),
                            " At the end of the period (", period_end, "): you keep access until then", class_name="radio-label"),
                rx.el.label(rx.el.input(type="radio", name="when", value="now", id="when-now"),
                            " Now: access ends at once, nothing is refunded", class_name="radio-label"),
                spacing="2",
            ),
            class_name="plain-fieldset",
        ),
        _buttons(_close_button("Keep subscription"), rx.button("Cancel subscription", color_scheme="red", high_contrast=True, type="submit",
                                                               loading=S.busy == "cancel", id="confirm-cancel")),
    )


# Keyboard focus when the flow's dialog closes: back to the button that opened it, or, when the
# outcome replaced that button (canceled, paused), to the status message saying what happened.
_FOCUS_AFTER_FLOW = focus_on_close("#cancel-subscription", "main [role=status]")


def cancel_flow_dialog(S, period_end) -> rx.Component:
    step = S.cancel_step
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title(rx.match(step, ("pause", "Pause instead?"), ("offer", "An offer before you go"),
                                     ("confirm", "Confirm the cancellation"), "Cancel subscription")),
            rx.dialog.description(
                rx.match(step, ("reason", "Tell us why, then choose how it ends. You can change your mind until the last step."), ""),
                size="2",
            ),
            rx.vstack(
                error_callout(S.flow_error),
                rx.match(step, ("reason", _reason_step(S)), ("pause", _pause_step(S)), ("offer", _offer_step(S)),
                         ("confirm", _confirm_step(S, period_end)), rx.fragment()),
                spacing="3",
                padding_top="1em",
                width="100%",
            ),
            id="cancel-flow",
            on_close_auto_focus=_FOCUS_AFTER_FLOW,
        ),
        open=step != "",
        on_open_change=S.close_cancel,
    )


def _details_form(S) -> rx.Component:
    D = S.dash
    field = lambda label, name, value, **p: labelled(  # noqa: E731
        label, rx.input(id=f"details-{name}", name=name, default_value=value, width="100%", **p), f"details-{name}")
    return _dialog_form(
        S.save_details,
        field("Billing email", "email", D.billing_email, type="email", required=True),
        field("Company name", "name", D.company_name),
        field("Address line 1", "line1", D.form_line1),
        field("Address line 2", "line2", D.form_line2),
        rx.grid(field("City", "city", D.form_city), field("Postal code", "postal_code", D.form_postal_code),
                columns=rx.breakpoints(initial="1", sm="2"), spacing="3", width="100%"),
        rx.grid(field("State or region", "state", D.form_state),
                field("Country (2-letter code)", "country", D.form_country, max_length=2, placeholder="US"),
                columns=rx.breakpoints(initial="1", sm="2"), spacing="3", width="100%"),
        _buttons(_close_button("Close"), rx.button("Save", type="submit", loading=S.busy == "details", id="save-details")),
    )


def _tax_ids_form(S) -> rx.Component:
    D = S.dash
    return rx.vstack(
        rx.heading("Tax IDs", size="3", as_="h3"),
        rx.cond(
            D.tax_ids.length() > 0,
            rx.el.ul(rx.foreach(D.tax_ids, lambda t: rx.el.li(rx.hstack(
                rx.text(t.label, size="2"),
                rx.button("Remove", size="1", variant="soft", color_scheme="red", type="button", on_click=S.remove_tax_id(t.id),
                          aria_label="Remove tax ID " + t.label),
                align="center", spacing="3"))), class_name="plain-list"),
            rx.text("None yet.", size="2", color_scheme="gray"),
        ),
        rx.form(
            rx.flex(
                labelled("Kind of tax ID", native_select("tax-type", "tax_type", list(TAX_ID_TYPES.items())), "tax-type"),
                labelled("Tax ID", rx.input(id="tax-value", name="tax_value", placeholder="DE123456789", width="100%"), "tax-value"),
                rx.button("Add tax ID", type="submit", loading=S.busy == "tax_id", id="add-tax-id"),
                spacing="3", align="end", wrap="wrap", width="100%",
            ),
            on_submit=S.add_tax_id,
            reset_on_submit=True,
        ),
        spacing="2",
        width="100%",
    )


def details_dialog(S) -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Billing details"),
            rx.dialog.description("Invoices and receipts show these details and go to the billing email.", size="2"),
            rx.vstack(error_callout(S.details_error), _details_form(S), rx.separator(), _tax_ids_form(S),
                      spacing="4", padding_top="1em", width="100%"),
            id="details-dialog",
            on_close_auto_focus=focus_on_close("#edit-details"),
        ),
        open=S.details_open,
        on_open_change=S.set_details_open,
    )


def dashboard_styles() -> rx.Component:
    """The dashboard's lists and radios (native controls and the focus ring: layout.FRAME_STYLE)."""
    return rx.el.style(
        ".radio-label{display:flex;gap:6px;align-items:baseline;font-size:var(--font-size-2)}"
        ".plain-list{list-style:none;margin:0;padding:0;display:flex;flex-direction:column;gap:6px;width:100%}"
        ".plain-fieldset{border:0;margin:0;padding:0;display:flex;flex-direction:column;gap:8px}"
    )


__all__ = ["DashboardMixin", "admin_sections", "cancel_flow_dialog", "dashboard_styles", "details_dialog", "paused_banner"]
