"""Stripe webhooks: route, event log, the event types that re-sync a customer, worker, replay.

    Stripe --signed POST--> route (verify, INSERT once, 200)
                             --> event log (webhookevent rows)
                             --> worker (claim on a short lease it renews, one sync_customer per customer,
                                         mark; retry with backoff; at start, free the claims of dead processes)

Imports run one way: route -> ingest -> eventlog -> handlers, owner; worker -> eventlog;
process (`python -m billing_app worker`) -> worker and the mail worker; and route, eventlog
(replay) and worker meet only in `signal` (the in-process wake-up).

For the admin: `recent(state="failed")` lists stored events (no payload) and
`replay(event_id)` puts any stored event back in the queue; `counts()` per state.
"""

from billing_app.webhooks.eventlog import counts, recent, replay

__all__ = ["counts", "recent", "replay"]
