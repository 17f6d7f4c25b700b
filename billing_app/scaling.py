"""What a backend needs to be one of several (`serve --prod --backends N`, README "Deployment").

`install(app)` is called once where the app is made: with REFLEX_REDIS_URL, page states fall back
to memory while Redis is down (state_fallback), and with REDIS_URL this backend refreshes its
pages when another process announces a billing change (live.run_subscriber). In one process
(`make run`) neither applies and nothing changes.
"""

from __future__ import annotations

from billing_app import live, state_fallback


def install(app) -> None:
    state_fallback.install(app)
    app.register_lifespan_task(live.run_subscriber)
