"""Emails for webhook events that change nothing in the mirror (trial ending, action required).

The webhook worker calls `rows_for` after a successful sync and hands the rows to
`eventlog.record`, which inserts them in the transaction that marks the events processed.
"""

from __future__ import annotations

import json

import structlog
from sqlmodel import select

from billing_app.db import session_scope
from billing_app.models import WebhookEvent
from billing_app.notifications.billing import EVENT_TYPES, for_events

log = structlog.get_logger("billing_app.notifications")


def rows_for(report, events) -> list[dict]:
    """Outbox rows for the claimed `events` of one synced customer (`report`: its SyncReport)."""
    wanted = [e for e in events if e.type in EVENT_TYPES]
    org_id, snap = getattr(report, "org_id", None), getattr(report, "snapshot", None)
    if not wanted or org_id is None or snap is None:
        return []
    try:
        with session_scope() as session:
            payloads = dict(session.exec(
                select(WebhookEvent.id, WebhookEvent.payload).where(WebhookEvent.id.in_([e.id for e in wanted]))
            ).all())
            triples = []
            for event in wanted:
                obj = ((json.loads(payloads.get(event.id) or "{}").get("data") or {}).get("object") or {})
                triples.append((event.stripe_event_id, event.type, obj.get("id")))
            return for_events(session, org_id, snap, triples)
    except Exception as error:  # an email is never worth failing the sync's bookkeeping for
        log.error("mail.event_notice_failed", error=f"{type(error).__name__}: {error}")
        return []
