"""Reading a Stripe subscription schedule (how a downgrade waits for the period end).

Stripe keeps a schedule `active` through its last phase and keeps past phases in `phases`
until end_behavior applies; `current_phase` ({start_date, end_date}) names the running one.
So the current phase is never simply phases[0], nor the next one phases[1]: every reader
takes them from here.
"""

from __future__ import annotations

LIVE_STATUSES = ("not_started", "active")


def live(schedule: object) -> dict | None:
    """An expanded schedule that still owns its subscription (Stripe refuses some updates under it)."""
    return schedule if isinstance(schedule, dict) and schedule.get("status") in LIVE_STATUSES else None


def from_current(schedule: dict) -> list[dict]:
    """The running phase first, then the ones after it (all phases while none has started)."""
    start = (schedule.get("current_phase") or {}).get("start_date")
    return [p for p in schedule.get("phases") or [] if start is None or p["start_date"] >= start]


def waiting(schedule: object) -> list[dict]:
    """The phases still to come: a change is waiting only while there is one (none in the last phase)."""
    return from_current(schedule)[1:] if live(schedule) else []
