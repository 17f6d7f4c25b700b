"""/account/notifications: an org admin chooses which optional emails they receive for this org.

Receipts and plan changes are optional; password resets, failed payments and payments that need
the customer's bank are always sent (shown, not switchable). Members get no billing email at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import reflex as rx

from billing_app import routes
from billing_app.components.layout import page_frame, page_heading
from billing_app.db import session_scope
from billing_app.errors import AppError
from billing_app.models import Role
from billing_app.notifications import outbox
from billing_app.notifications.kinds import OPTIONAL, Kind
from billing_app.state import AuthState, in_a_thread

ALWAYS = [Kind.PAYMENT_FAILED, Kind.PAYMENT_ACTION_REQUIRED, Kind.TRIAL_ENDING, Kind.SUBSCRIPTION_CANCELED,
          Kind.CANCEL_SCHEDULED, Kind.PASSWORD_RESET]


@dataclass
class Choice:
    kind: str = ""
    label: str = ""
    on: bool = True


class NotificationSettingsState(AuthState):
    choices: list[Choice] = []
    error: str = ""
    message: str = ""

    def _reload(self, actor) -> None:
        with session_scope() as session:
            prefs = outbox.preferences(session, actor.user_id, actor.org_id)
        self.choices = [Choice(kind, Kind(kind).label, on) for kind, on in prefs.items()]

    @in_a_thread
    def load(self):
        self.error = self.message = ""
        self.choices = []
        try:
            actor = self._actor()
            actor.require_org()
        except AppError as error:
            return self._signed_out(error)
        try:
            actor.require_role(Role.ADMIN)  # members get no billing email, so they have nothing to choose
        except AppError as error:
            self.error = error.message
            return
        self._reload(actor)

    @in_a_thread
    def toggle(self, kind: str, on: bool):
        self.error = self.message = ""
        try:
            actor = self._actor(keep_org=True)
            actor.require_role(Role.ADMIN)  # checked on the server, whatever the page showed
            chosen = Kind(kind) if kind in {k.value for k in OPTIONAL} else None
            if chosen is None:
                self.error = "That email is always sent."
                return
            with session_scope() as session:
                outbox.set_preference(session, actor.user_id, actor.org_id, chosen, bool(on))
            self._reload(actor)
            self.message = "Saved."
        except AppError as error:
            self.error = error.message
            return self._signed_out_if(error)


def _choice(choice: Choice) -> rx.Component:
    return rx.hstack(
        rx.switch(checked=choice.on, on_change=lambda on: NotificationSettingsState.toggle(choice.kind, on),
                  id="notify-" + choice.kind, aria_label=choice.label),
        rx.text(choice.label),
        align="center", spacing="3",
    )


@rx.page(route=routes.ACCOUNT_NOTIFICATIONS, title="Email notifications · Billing",
         on_load=[AuthState.load_identity, NotificationSettingsState.load])
def notification_settings_page() -> rx.Component:
    return page_frame(
        page_heading("Email notifications", NotificationSettingsState.error, NotificationSettingsState.message),
        rx.cond(
            NotificationSettingsState.choices.length() > 0,
            rx.card(rx.vstack(
                rx.heading("Optional emails for this organization", size="4", as_="h2"),
                rx.foreach(NotificationSettingsState.choices, _choice),
                rx.divider(),
                rx.heading("Always sent", size="4", as_="h2"),
                rx.text(", ".join(k.label for k in ALWAYS) + ".", size="2", color_scheme="gray"),
                spacing="3", width="100%",
            ), width="100%"),
        ),
    )
