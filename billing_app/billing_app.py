"""The Reflex app: pages and the backend's HTTP routes. Nothing else lives here."""

import reflex as rx

from billing_app import scaling
from billing_app.api import build_api
from billing_app.auth.cookies import event_socket_sessions
from billing_app.settings import get_settings
from billing_app.notifications import hooks as notification_hooks
from billing_app.notifications.worker import run_mail_worker
from billing_app.webhooks.worker import run_worker

# Fail fast, with one clear line, on bad configuration (before any page compiles).
get_settings()

# Importing the page modules registers their @rx.page routes.
from billing_app.pages import account, auth_pages, billing, confirm, home, invite, members, payments, pricing, tokens  # noqa: E402,F401
from billing_app.pages import dev_mail, notification_settings, password_reset  # noqa: E402,F401
from billing_app.pages import ops, ops_audit, ops_events, ops_org, ops_orgs, ops_orphans  # noqa: E402,F401

app = rx.App(
    # Our HTTP routes, then (outermost) the event socket's session middleware: pages see the
    # session's hash, never the cookie (billing_app/auth/cookies.py).
    api_transformer=[build_api(), event_socket_sessions],
)
# The webhook worker runs inside the backend process for as long as it serves, and so does the mail
# worker (the outbox: billing_app/notifications; password resets send through it), unless they run
# as processes of their own (`python -m billing_app worker`, RUN_WORKERS_IN_BACKEND=false).
if get_settings().run_workers_in_backend:
    app.register_lifespan_task(run_worker)
    app.register_lifespan_task(run_mail_worker)
notification_hooks.install()
# One of several backends (Redis): live updates from other processes, page states while Redis is down.
scaling.install(app)
