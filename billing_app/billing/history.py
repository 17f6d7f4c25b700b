"""Entries of the payment history that are not money moving: cancellations (CANCELLED).

A subscription set to cancel, or ended by a cancellation, has one CANCELLED entry, keyed by its
`sub_...` id and dated when the cancellation was asked for; it says which plan and how it ends
("canceled at period end on Dec 22, 2026", "canceled now", "canceled after failed payments").
It follows Stripe: undoing a cancellation at the period end removes the entry.
"""

from __future__ import annotations

from datetime import datetime, timezone

from billing_app.formatting import format_date
from billing_app.models import set_to_cancel


def _at(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=timezone.utc) if value else None


def cancellation(sub: dict, plan_label: str) -> dict | None:
    """The CANCELLED entry's values for this Stripe subscription, or None when it is not canceled."""
    status = sub["status"]
    canceling = status not in ("canceled", "incomplete_expired") and set_to_cancel(sub.get("cancel_at_period_end"), sub.get("cancel_at"))
    if not canceling and status != "canceled":
        return None
    items = (sub.get("items") or {}).get("data") or []
    period_end = items[0].get("current_period_end") if items else None
    cancel_at = sub.get("cancel_at") or (period_end if sub.get("cancel_at_period_end") else None)
    ended_at = sub.get("ended_at")
    reason = (sub.get("cancellation_details") or {}).get("reason")
    if canceling:
        how = f"canceled at period end on {format_date(_at(cancel_at))}"
    elif reason == "payment_failed":
        how = "canceled after failed payments"
    elif cancel_at and ended_at and ended_at >= cancel_at:
        how = f"canceled at period end on {format_date(_at(ended_at))}"
    else:
        how = "canceled now"
    when = _at(sub.get("canceled_at")) or _at(ended_at) or _at(sub.get("created"))
    return {
        "amount": 0,
        "currency": sub.get("currency") or "usd",
        "created": when,
        "description": f"{plan_label} — {how}" if plan_label else f"Subscription — {how}",
    }
