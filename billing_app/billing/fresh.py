"""A subscription as Stripe has it right now (re-read, its schedule expanded): what every action on
it, and every judgement of a change set aside, decides on, as the mirror may lag."""

from __future__ import annotations

from dataclasses import dataclass

from billing_app.billing import schedules
from billing_app.models import ENDED_STATUSES, set_to_cancel


@dataclass(frozen=True)
class Fresh:
    """The subscription as Stripe has it right now, which every action decides on (the mirror may lag)."""

    stripe_sub: dict

    @property
    def customer_id(self) -> str:
        customer = self.stripe_sub["customer"]
        return customer if isinstance(customer, str) else customer["id"]

    @property
    def ended(self) -> bool:
        return self.stripe_sub["status"] in ENDED_STATUSES

    @property
    def canceling(self) -> bool:
        return set_to_cancel(self.stripe_sub.get("cancel_at_period_end"), self.stripe_sub.get("cancel_at"))

    @property
    def paused(self) -> bool:
        """Collection paused (the cancellation flow's pause) or a subscription Stripe paused."""
        return bool(self.stripe_sub.get("pause_collection")) or self.stripe_sub["status"] == "paused"

    @property
    def schedule_id(self) -> str | None:
        """A schedule that still owns the subscription: a downgrade waiting for the period end, or one
        in its last phase (Stripe keeps it until that phase ends; nothing waits any more)."""
        schedule = schedules.live(self.stripe_sub.get("schedule"))
        return schedule["id"] if schedule else None

    @property
    def change_waiting(self) -> bool:
        """A scheduled change still to come: a phase after the schedule's current one."""
        return bool(schedules.waiting(self.stripe_sub.get("schedule")))

    @property
    def price_id(self) -> str | None:
        items = self.stripe_sub["items"]["data"]
        return items[0]["price"]["id"] if items else None

    @property
    def pending_price_id(self) -> str | None:
        """The price an upgrade waiting for its invoice to be paid would switch to (Stripe's pending update)."""
        items = (self.stripe_sub.get("pending_update") or {}).get("subscription_items") or []
        return items[0]["price"]["id"] if items else None

    @property
    def plan_and_quantity(self) -> tuple[str | None, int]:
        items = self.stripe_sub["items"]["data"]
        return self.price_id, (items[0].get("quantity") or 1) if items else 0
