"""The kinds of email, who gets them, and which ones an admin may turn off."""

from __future__ import annotations

import enum


class Kind(str, enum.Enum):
    INVITATION = "invitation"
    PASSWORD_RESET = "password_reset"
    TRIAL_ENDING = "trial_ending"
    PAYMENT_FAILED = "payment_failed"
    PAYMENT_ACTION_REQUIRED = "payment_action_required"
    RECEIPT = "receipt"
    SUBSCRIPTION_CANCELED = "subscription_canceled"
    CANCEL_SCHEDULED = "cancel_scheduled"
    PLAN_CHANGED = "plan_changed"
    SEATS_CHANGED = "seats_changed"

    @property
    def preference(self) -> Kind:
        """The kind whose opt-out governs this one (a seat change goes with plan changes)."""
        return SHARES_PREFERENCE.get(self, self)

    @property
    def optional(self) -> bool:
        """Admins may turn these off; everything else (security, money at risk) is always sent."""
        return self.preference in OPTIONAL

    @property
    def label(self) -> str:
        return LABELS[self]


OPTIONAL = frozenset({Kind.RECEIPT, Kind.PLAN_CHANGED})
# One switch for "Plan and seat changes": the seat confirmation follows the plan change's opt-out.
SHARES_PREFERENCE = {Kind.SEATS_CHANGED: Kind.PLAN_CHANGED}
# Sent to one person (their own account or invitation), not to the org's billing contacts.
PERSONAL = frozenset({Kind.INVITATION, Kind.PASSWORD_RESET})

LABELS = {
    Kind.INVITATION: "Invitation",
    Kind.PASSWORD_RESET: "Password reset",
    Kind.TRIAL_ENDING: "Trial ending",
    Kind.PAYMENT_FAILED: "Payment failed",
    Kind.PAYMENT_ACTION_REQUIRED: "Payment needs confirmation",
    Kind.RECEIPT: "Receipts",
    Kind.SUBSCRIPTION_CANCELED: "Subscription canceled",
    Kind.CANCEL_SCHEDULED: "Cancellation scheduled",
    Kind.PLAN_CHANGED: "Plan and seat changes",
    Kind.SEATS_CHANGED: "Seat changes",
}
