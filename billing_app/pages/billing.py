"""The billing dashboard: plan, status and dates for everyone; actions for admins.

Every admin action calls Stripe, so each runs as a background event: the Stripe calls happen in a
thread with the state lock released (a slow Stripe never stalls the backend's event loop), and each
counts against the organization's Stripe rate limit (billing_app/limits.py).
"""

from __future__ import annotations

import asyncio
import copy

import reflex as rx

from billing_app import limits, live, routes
from billing_app.billing import turns
from billing_app.billing.dashboard import DashboardView, dashboard_view, member_billing_view
from billing_app.billing.portal import portal_url
from billing_app.billing.subscriptions import cancel_scheduled_change, change_plan, reactivate
from billing_app.billing.views import BillingView, ChangeOption, billing_view, change_options
from billing_app.components.billing_ui import banner, billing_frame, detail, empty_state
from billing_app.components.layout import error_callout, focus_on_close, info_callout, link_button
from billing_app.components.seats import SeatsBarState, seats_bar
from billing_app.db import session_scope
from billing_app.errors import AppError
from billing_app.formatting import format_amount, format_date
from billing_app.models import Role
from billing_app.pages.billing_dashboard import (
    DashboardMixin, admin_sections, cancel_flow_dialog, dashboard_styles, details_dialog, paused_banner,
)
from billing_app.state import AuthState, id_from_page, in_a_thread

# What the change dialog says when its plan choice names no plan (nothing picked, or a forged event).
CHOOSE_A_PLAN = "Choose a plan."


class BillingState(DashboardMixin, AuthState):
    view: BillingView = BillingView()
    options: list[ChangeOption] = []
    error: str = ""
    message: str = ""
    busy: str = ""  # which action is running: portal, change, cancel, reactivate
    # Change-plan dialog
    change_open: bool = False
    change_target: str = ""
    change_preview: str = ""

    @staticmethod
    def _read(org_id: int, admin: bool) -> tuple[BillingView, list[ChangeOption], DashboardView]:
        """What the page shows; a member's copy holds plan and status only (state reaches the browser)."""
        with session_scope() as session:
            view = billing_view(session, org_id)
            dash = dashboard_view(session, org_id, admin=admin)
            if not admin:
                return member_billing_view(view), [], dash
            return view, change_options(session, org_id) if view.can_change else [], dash

    def _refresh(self, actor) -> None:
        self.view, self.options, self.dash = self._read(actor.require_org(), actor.is_admin)

    @in_a_thread
    def load(self):
        self.error = self.message = self.busy = ""
        self.change_open, self.cancel_step, self.details_open = False, "", False
        try:
            actor = self._actor()
            org_id = actor.require_org()
        except AppError as error:
            return self._signed_out(error)
        self._watch_live(org_id)  # before the read: a change meanwhile refreshes it
        self._refresh(actor)
        wanted = self.router.url.query_parameters.get("change", "")
        if wanted and actor.is_admin and self.view.can_change:
            return BillingState.open_change(wanted)

    def _on_billing_changed(self, shared: dict | None = None):
        """Called by `live` when a webhook changed this org's billing (in a thread, the state held).
        Private: a public method would be an event any browser could send, run on the event loop.

        `shared` holds what the org's other open billing pages read for the same change, by org and
        role: this page's own user and role are still checked here, its copy is its own."""
        try:
            actor = self._actor(shared, keep_org=True)
            key = (actor.require_org(), actor.is_admin)
        except AppError:
            return
        if shared is None:
            self.view, self.options, self.dash = self._read(*key)
            return
        self.view, self.options, self.dash = copy.deepcopy(live.read_once(shared, ("billing", *key), lambda: self._read(*key)))

    async def _act(self, busy: str, fn, *, changes: bool = True, done: str = "") -> tuple[object, bool]:
        """Run an admin action that calls Stripe, from a background event.

        The state lock is held only to show `busy` and to write the outcome: the Stripe calls and
        the database work run in a thread, so this page (and every other) stays responsive. Every
        such action is an admin's, and counts against the organization's Stripe rate limit. Errors become a message
        on the page, never a traceback; a session gone sends the tab to login. Returns (result, succeeded).

        The same action again while it runs (a double-click) is ignored: it would fail against the
        first one's outcome ("You are already on this plan.") beside its success. A preview is not
        (the newest pick's counts). `changes`: the action changed the org's billing, so its other
        open pages refresh (a preview or the portal's link changes nothing). `done`: the message shown on success.
        """
        async with self:
            if busy != "preview" and self.busy == busy:
                return None, False
            self.error = self.message = ""
            self.busy = busy
        try:
            actor = await self._actor_in_background(keep_org=True)
            org_id = actor.require_role(Role.ADMIN)  # before the org's limit: a member's forged events spend none of it
            await limits.hit_in_thread(limits.STRIPE_ORG, org_id)
            result = await turns.in_turn(org_id, fn, actor)
            view, options, dash = await asyncio.to_thread(self._read, org_id, actor.is_admin)
        except AppError as error:
            await self._show_refusal(error)
            return None, False
        async with self:
            self.view, self.options, self.dash, self.busy = view, options, dash, ""
            if done:
                self.message = done
        if changes:
            await live.notify_after_action(org_id)
        return result, True

    @rx.event(background=True)
    async def open_portal(self, flow: str = ""):
        url, ok = await self._act("portal", lambda actor: portal_url(actor, flow or None), changes=False)
        if ok and url:
            async with self:
                self.busy = "portal"  # keep the button busy while the browser leaves
            yield rx.redirect(url)

    @rx.event
    def open_change(self, period_id: str = ""):
        self.change_open, self.change_target, self.change_preview = True, period_id, ""
        if period_id:
            return BillingState.preview_change(period_id)

    @rx.event
    def close_change(self):
        self.change_open, self.change_preview = False, ""

    @rx.event(background=True)
    async def preview_change(self, period_id: str):
        async with self:
            self.change_target, self.change_preview = period_id, ""
        change, ok = await self._act("preview", lambda actor: change_plan(actor, id_from_page(period_id, CHOOSE_A_PLAN), preview=True),
                                     changes=False)
        if not ok or not change:
            return
        if change.upgrade:
            text = (
                f"{change.from_plan} → {change.to_plan}. Due now: {format_amount(change.amount_due_now, change.currency)} "
                "(the prorated difference for the rest of this period)."
            )
        else:
            text = (
                f"{change.from_plan} → {change.to_plan} on {format_date(change.effective_at)}, when this period ends. "
                "Nothing is due now; you keep your current plan until then."
            )
        async with self:
            if self.change_target == period_id:  # the user may have picked another plan meanwhile
                self.change_preview = text

    @rx.event(background=True)
    async def confirm_change(self):
        async with self:
            wanted = self.change_target
        change, ok = await self._act("change", lambda actor: change_plan(actor, id_from_page(wanted, CHOOSE_A_PLAN), preview=False))
        if ok and change:
            async with self:
                self.change_open, self.change_preview = False, ""
                self.message = (
                    f"Your bank needs you to confirm the payment first: use Confirm the payment above. "
                    f"Your plan changes to {change.to_plan} once it is confirmed." if change.confirm_url
                    else f"Your plan is now {change.to_plan}." if change.upgrade
                    else f"Your plan changes to {change.to_plan} on {format_date(change.effective_at)}."
                )

    @rx.event(background=True)
    async def keep_current_plan(self):
        await self._act("keep", cancel_scheduled_change, done="You will stay on your current plan.")

    @rx.event(background=True)
    async def do_reactivate(self):
        await self._act("reactivate", reactivate, done="Your subscription is active again.")


V = BillingState.view


def _change_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Change plan"),
            rx.dialog.description(
                "Upgrades apply now; you pay the prorated difference for the rest of this period. "
                "Downgrades apply when the period ends.",
                size="2",
            ),
            rx.vstack(
                rx.select.root(
                    rx.select.trigger(
                        placeholder="Choose a plan", width="100%", aria_label="New plan",
                        # Radix's placeholder grey fails contrast on the dialog (axe); gray-11 is its readable grey.
                        style={"&[data-placeholder] .rt-SelectTriggerInner": {"color": "var(--gray-11)"}},
                    ),
                    rx.select.content(rx.foreach(BillingState.options, lambda o: rx.select.item(o.label, value=o.period_id))),
                    value=BillingState.change_target,
                    on_change=BillingState.preview_change,
                ),
                rx.cond(BillingState.busy == "preview", rx.hstack(rx.spinner(), rx.text("Calculating…", size="2"))),
                info_callout(BillingState.change_preview),
                error_callout(BillingState.error),
                rx.hstack(
                    rx.dialog.close(rx.button("Keep current plan", variant="soft", color_scheme="gray", on_click=BillingState.close_change)),
                    rx.button(
                        "Confirm change",
                        on_click=BillingState.confirm_change.throttle(2000),  # a double-click sends one event (the server ignores a second too)
                        loading=BillingState.busy == "change",
                        disabled=BillingState.change_preview == "",
                        id="confirm-change",
                    ),
                    justify="end",
                    width="100%",
                ),
                spacing="3",
                padding_top="1em",
            ),
            on_close_auto_focus=focus_on_close("#change-plan"),
        ),
        open=BillingState.change_open,
        on_open_change=lambda open_: rx.cond(open_, BillingState.open_change(""), BillingState.close_change()),
    )


def _admin_actions() -> rx.Component:
    return rx.flex(
        rx.button(
            rx.icon("external-link", size=16), "Manage billing",
            on_click=BillingState.open_portal(""), loading=BillingState.busy == "portal", id="manage-billing",
        ),
        rx.cond(V.can_change, rx.button("Change plan", variant="soft", on_click=BillingState.open_change(""), id="change-plan")),
        rx.cond(
            V.can_cancel,
            rx.button("Cancel subscription", variant="soft", color_scheme="red", on_click=BillingState.start_cancel, id="cancel-subscription"),
        ),
        rx.cond(
            V.can_reactivate,
            rx.button("Reactivate", color_scheme="green", on_click=BillingState.do_reactivate, loading=BillingState.busy == "reactivate", id="reactivate"),
        ),
        spacing="2",
        wrap="wrap",
    )


def _summary() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.vstack(
                    rx.text("Current plan", size="1", color_scheme="gray", weight="medium"),
                    rx.heading(V.plan_name, size="6", as_="h2", id="plan-name"),  # under the page's h1
                    rx.text(V.price, size="2", color_scheme="gray"),
                    spacing="1",
                ),
                rx.badge(V.status, color_scheme=V.status_color, size="3", variant="soft", id="status-badge"),
                justify="between",
                align="start",
                width="100%",
                wrap="wrap",
            ),
            rx.grid(
                detail("Period", V.period),
                detail(V.renewal_label, V.renewal_date),
                detail("Trial ends", V.trial_end),
                detail("Started", V.start_date),
                detail("Auto-renew", V.auto_renew),
                columns=rx.breakpoints(initial="2", sm="3"),
                spacing="4",
                width="100%",
            ),
            rx.cond(
                V.scheduled_change != "",
                rx.callout.root(
                    rx.callout.icon(rx.icon("calendar-clock")),
                    rx.callout.text(V.scheduled_change, id="scheduled-change"),
                    rx.cond(
                        AuthState.is_admin,
                        rx.button("Keep current plan", size="1", variant="soft", on_click=BillingState.keep_current_plan,
                                  loading=BillingState.busy == "keep", id="keep-current-plan"),
                    ),
                    width="100%",
                ),
            ),
            rx.cond(
                V.lifetime,
                rx.text("A lifetime plan is paid once: there is nothing to renew, cancel or change.", size="2", color_scheme="gray", id="lifetime-note"),
            ),
            rx.cond(AuthState.is_admin, rx.cond(~V.lifetime, _admin_actions()), rx.text("Only admins can change billing.", size="2", color_scheme="gray")),
            spacing="4",
            width="100%",
        ),
        size="3",
        width="100%",
    )


def _payment_problem_banner() -> rx.Component:
    return banner(
        V.payment_problem & (V.confirm_payment_url == ""),  # a payment awaiting the bank has its own banner
        "triangle-alert",
        rx.text.strong("Your last payment failed. "),
        "Update your payment method to keep your plan.",
        action=rx.cond(
            AuthState.is_admin,
            rx.button("Update payment method", size="2", color_scheme="red", on_click=BillingState.open_portal("payment_method_update"), id="update-payment-method"),
        ),
        color_scheme="red",
        role="alert",
        id="payment-problem",
    )


def _confirm_payment_banner() -> rx.Component:
    """While a payment waits for the bank (3-D Secure): the link to confirm it on Stripe's page."""
    return banner(
        V.confirm_payment_url != "",
        "shield-check",
        rx.text.strong("Your bank needs you to confirm a payment. "),
        "Until then it is not made.",
        action=rx.link(rx.button("Confirm the payment", size="2", color_scheme="amber"), href=V.confirm_payment_url, is_external=True, id="confirm-payment"),
        color_scheme="amber",
        role="alert",
        id="action-required",
    )


def _empty_state() -> rx.Component:
    return empty_state(
        "credit-card", "No subscription yet",
        rx.cond(
            V.awaiting_payment == "",
            rx.fragment(rx.text("Pick a plan to get started.", color_scheme="gray"), link_button("See plans", href=routes.PRICING)),
            rx.text("Your purchase shows here once its payment clears.", color_scheme="gray"),
        ),
        id="no-subscription",
    )


@rx.page(route=routes.BILLING, title="Billing", on_load=[BillingState.load, SeatsBarState.load])
def billing_page() -> rx.Component:
    return billing_frame(
        "Billing",
        dashboard_styles(),
        error_callout(rx.cond(BillingState.change_open | BillingState.details_open | (BillingState.cancel_step != ""), "", BillingState.error)),
        info_callout(BillingState.message),
        info_callout(V.awaiting_payment),
        rx.cond(
            V.has_subscription,
            rx.vstack(
                _confirm_payment_banner(),
                _payment_problem_banner(),
                rx.cond(AuthState.is_admin, paused_banner(BillingState)),
                _summary(),
                rx.cond(AuthState.is_admin, admin_sections(BillingState)),
                width="100%",
                spacing="4",
            ),
            _empty_state(),
        ),
        seats_bar(),
        _change_dialog(),
        cancel_flow_dialog(BillingState, V.renewal_date),
        details_dialog(BillingState),
    )
