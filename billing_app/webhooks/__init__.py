"""Stripe webhooks: route, event log, one handler per event type, worker, replay.

    Stripe --signed POST--> route (verify, INSERT once, 200)
                             --> event log (webhookevent rows)
                             --> worker (claim, one sync_customer per customer, mark; retry with backoff)

For the admin: `recent(state="failed")` lists stored events (no payload) and
`replay(event_id)` puts any stored event back in the queue; `counts()` per state.
"""

from billing_app.webhooks.eventlog import counts, recent, replay

__all__ = ["counts", "recent", "replay"]
