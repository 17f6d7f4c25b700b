"""What a backend needs to be one of several (`serve --prod --backends N`, README "Deployment").

`install(app)` is called once where the app is made: with REFLEX_REDIS_URL, page states fall back
to memory while Redis is down (state_fallback), and with REDIS_URL this backend refreshes its
pages when another process announces a billing change (live.run_subscriber) and, when the
workers run as processes of their own, tells them of each stored webhook event (wake). In one
process (`make run`) none of this applies and nothing changes.
"""

from __future__ import annotations

from billing_app import live, state_fallback
from billing_app.webhooks import wake


def install(app) -> None:
    state_fallback.install(app)
    app.register_lifespan_task(live.run_subscriber)
    app.register_lifespan_task(wake.forward_stored_events)
