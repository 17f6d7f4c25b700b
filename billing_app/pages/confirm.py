"""After Checkout: confirm the session's outcome, re-checking for a short while."""

from __future__ import annotations

import asyncio

import reflex as rx

from billing_app import limits, routes
from billing_app.auth import accounts
from billing_app.billing import payments
from billing_app.billing.checkout import checkout_status
from billing_app.billing.views import billing_view
from billing_app.components.layout import link_button, page_frame
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.state import RELOAD_TO_CONTINUE, AuthState, refuse_if_switched

# Re-check every POLL_SECONDS, POLL_TIMES times (about 10 s) while the outcome is pending.
POLL_SECONDS = 2
POLL_TIMES = 5


def check_outcome(session_ref: str, session_id: str, shown: tuple[int, str] | None = None) -> tuple[str, str, str]:
    """(phase, plan name, renewal line) for a checkout, from Stripe and the mirror.

    Plain function of its inputs (the session as its hash, as pages hold it, or a session token),
    so it runs in a thread outside the state lock. Each check counts against a Stripe rate limit
    (limits.hit_stripe: an admin's against the organization's, a member's against their own).
    `shown`: the (id, name) of the org the tab shows; a session switched to another org since is
    refused (ORG_SWITCHED) before any check, and so is a user no longer in it (NOT_A_MEMBER). Raises
    AppError only for those: the browser session is not valid, it switched, or the org is not theirs.
    A user in no organization (they left, or were removed from, the checkout's while it was open) is
    told so: every checkout is an organization's, none is theirs.
    """
    with session_scope() as session:
        if session_ref.startswith("sess_"):
            actor = accounts.actor_for_session(session, session_ref)
        else:
            actor = accounts.actor_for_session_hash(session, session_ref)
        orgs = accounts.organizations_of(session, actor.user_id) if shown is not None else []
    if actor.org_id is None:  # before the switch check: they switched to nothing, they left
        return "no_organization", "", ""
    if shown is not None:
        refuse_if_switched(actor, orgs, *shown)
    try:
        limits.hit_stripe(actor)
        status = checkout_status(actor, session_id)
    except AppError as error:
        return ("not_found" if error.code == ErrorCode.INVALID_SESSION else "processing"), "", ""
    if status.outcome == "paid":
        with session_scope() as session:
            view = billing_view(session, actor.require_org())
        return "success", view.plan_name, f"{view.renewal_label}: {view.renewal_date}" if view.renewal_date else ""
    if status.outcome in ("expired", "clearing", "failed"):
        return status.outcome, "", ""
    return "processing", "", ""


class ConfirmState(AuthState):
    # checking | success | clearing | failed | expired | processing | not_found | no_organization
    # | switched (`error` says why) | not_member (no longer in the org shown, still in another)
    phase: str = "checking"
    error: str = ""
    plan_name: str = ""
    renewal: str = ""
    # Each visit gets a number, so a poller from an earlier visit knows to stop.
    visit: int = 0
    # Backend-only: a poller is running (one at a time, however often the event is sent).
    _polling: bool = False

    @rx.event(background=True)
    async def load(self):
        """Show "checking" at once; Stripe and the sync run in a thread, outside the state lock."""
        async for event in self._check(for_shown_org=False):
            yield event

    @rx.event(background=True)
    async def retry(self):
        """"Check again": for the org this page shows. Not `load`, which adopts the session's current
        org: after a switch in another tab it would call this checkout not found."""
        async for event in self._check(for_shown_org=True):
            yield event

    async def _check(self, *, for_shown_org: bool):
        async with self:
            self.visit += 1
            visit = self.visit
            self.phase, self.plan_name, self.renewal, self.error = "checking", "", "", ""
            session_id = self.router.url.query_parameters.get("session_id", "")
            shown = (self.org_id, self.org_name) if for_shown_org else None

        async def check() -> tuple[str, str, str]:
            await self._actor_in_background(keep_org=for_shown_org)  # refreshes the navbar; raises when signed out
            return await asyncio.to_thread(check_outcome, await self._hash(), session_id, shown)

        async for event in self._show_check(visit, check):
            yield event

    async def _show_check(self, visit: int, check):
        """Await `check` and show what it found: the outcome (polling while it is pending), or for a
        refusal its panel or the way out."""
        try:
            outcome = await check()
        except AppError as error:  # no longer a member, switched meanwhile, or signed out
            async with self:
                redirect = self._after_refusal(visit, error)
            if redirect is not None:
                yield redirect
            return
        if await self._show_outcome(visit, outcome):
            yield ConfirmState.poll(visit)

    def _after_refusal(self, visit: int, error: AppError):
        """A check's refusal: a panel for the org this tab shows, else the way out (`_signed_out`:
        login, or home for a user in no organization)."""
        return None if self._show_not_shown_org(visit, error) else self._signed_out(error)

    def _show_not_shown_org(self, visit: int, error: AppError) -> bool:
        """A refusal to act for the org this tab shows: the "switched" panel, whose buttons are the
        ways on (a reload would adopt the other org), or "not_member" when it is not the user's any
        more (nothing to switch back to). False for any other refusal."""
        phase = {ErrorCode.ORG_SWITCHED: "switched", ErrorCode.NOT_A_MEMBER: "not_member"}.get(error.code)
        if phase is not None and self.visit == visit:
            self.phase, self.error = phase, error.message.removesuffix(" " + RELOAD_TO_CONTINUE)
        return phase is not None

    async def _show_outcome(self, visit: int, outcome: tuple[str, str, str]) -> bool:
        """Show a check's outcome (unless the page was opened again meanwhile); True: still pending, poll."""
        async with self:
            if self.visit != visit:
                return False
            self.phase, self.plan_name, self.renewal = outcome
            if self.phase in ("checking", "processing"):
                self.phase = "checking"
                return True
            return False

    @rx.event(background=True)
    async def switch_back(self):
        """The "switched" panel's way on: make the org this tab shows the session's current org again
        (membership checked, as the navbar's switch does), then check the checkout for that org.

        Not `load`: it adopts the session's current org, so it would check this checkout as the org
        switched to in the other tab (spending that org's Stripe limit) and call it not found."""
        async with self:
            self.visit += 1
            visit = self.visit
            shown = (self.org_id, self.org_name)
            session_hash, session_id = self._session_hash, self.router.url.query_parameters.get("session_id", "")
            self.phase, self.error = "checking", ""

        def switch_and_check() -> tuple[str, str, str]:
            with session_scope() as session:
                accounts.switch_org_hash(session, session_hash, shown[0])
            # `shown`: if yet another switch came in between, it is refused before any Stripe check.
            return check_outcome(session_hash, session_id, shown)

        async def check() -> tuple[str, str, str]:
            outcome = await asyncio.to_thread(switch_and_check)
            await self._actor_in_background(keep_org=True)  # the navbar shows the org switched back to
            return outcome

        async for event in self._show_check(visit, check):
            yield event

    async def _hash(self) -> str:
        async with self:
            return self._session_hash

    @rx.event(background=True)
    async def poll(self, visit: int):
        async with self:
            if self._polling or visit != self.visit:
                return
            self._polling = True
        try:
            await self._poll(visit)
        finally:
            async with self:
                self._polling = False

    async def _poll(self, visit: int):
        for _ in range(POLL_TIMES):
            await asyncio.sleep(POLL_SECONDS)
            async with self:
                # Stop when the user left the page or opened it again.
                if self.visit != visit or not self.router.url.path.rstrip("/").endswith(routes.BILLING_CONFIRM):
                    return
                token, session_id = self._session_hash, self.router.url.query_parameters.get("session_id", "")
                shown = (self.org_id, self.org_name)  # the org whose checkout the page shows (load adopted it)
            try:
                # Stripe and the database are read outside the lock, so the page stays responsive.
                outcome = await asyncio.to_thread(check_outcome, token, session_id, shown)
            except AppError as error:
                async with self:
                    self._show_not_shown_org(visit, error)
                return
            if outcome[0] not in ("processing", "checking"):
                async with self:
                    if self.visit == visit:
                        self.phase, self.plan_name, self.renewal = outcome
                return
        async with self:
            if self.visit == visit and self.phase == "checking":
                self.phase = "processing"


def _panel(icon: str, color: str, title: str, *children) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.icon(icon, size=40, color=f"var(--{color}-9)"),
            rx.heading(title, size="6", id="confirm-title"),
            *children,
            align="center",
            spacing="3",
            padding="2em",
        ),
        width="100%",
        max_width="32em",
    )


def _no_longer_in_the_org(way_on: rx.Component) -> rx.Component:
    return _panel(
        "building-2", "gray", "You are no longer in this organization",
        rx.text("This checkout was for an organization you have left or were removed from, so its "
                "outcome is for that organization's admins to see on their billing page."),
        way_on,
    )


def _back_to_pricing() -> rx.Component:
    return link_button("Back to pricing", href=routes.PRICING, variant="soft")


@rx.page(route=routes.BILLING_CONFIRM, title="Confirming payment · Billing", on_load=ConfirmState.load)
def confirm_page() -> rx.Component:
    return page_frame(
        rx.center(
            rx.match(
                ConfirmState.phase,
                ("success", _panel(
                    "circle-check", "green", "Payment successful",
                    rx.text("You are on the ", rx.text.strong(ConfirmState.plan_name), " plan."),
                    rx.text(ConfirmState.renewal, color_scheme="gray", size="2"),
                    link_button("Go to billing", href=routes.BILLING),
                )),
                ("clearing", _panel("hourglass", "amber", "Payment clearing",
                                    rx.text(payments.AWAITING_PAYMENT_MESSAGE), link_button("Go to billing", href=routes.BILLING))),
                ("failed", _panel("circle-x", "red", "Payment failed",
                                  rx.text("Your payment did not go through. No plan was started."), _back_to_pricing())),
                ("expired", _panel("clock", "orange", "Checkout expired",
                                   rx.text("This checkout expired before it was paid."), _back_to_pricing())),
                ("processing", _panel("hourglass", "amber", "Still processing",
                                      rx.text("Your payment is still being processed. This can take a minute."),
                                      rx.button("Check again", on_click=ConfirmState.retry, id="retry"))),
                ("switched", _panel("building-2", "gray", "You switched organization",
                                    rx.text(ConfirmState.error),
                                    rx.button("Switch back to " + ConfirmState.org_name, on_click=ConfirmState.switch_back,
                                              id="switch-back"),
                                    link_button("Go to billing", href=routes.BILLING, variant="soft"))),
                ("no_organization", _no_longer_in_the_org(link_button("Go to the home page", href=routes.HOME))),
                # Still in another organization: its billing page (the session's current org).
                ("not_member", _no_longer_in_the_org(link_button("Go to billing", href=routes.BILLING))),
                ("not_found", _panel("search-x", "gray", "We could not find this checkout",
                                     rx.text("The link may be wrong or belong to another organization."), _back_to_pricing())),
                _panel("loader", "iris", "Confirming your payment…", rx.spinner(size="3"), rx.text("This takes a few seconds.", color_scheme="gray")),
            ),
            width="100%",
        ),
    )
