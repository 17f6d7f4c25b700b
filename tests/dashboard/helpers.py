"""Factories for the dashboard tests: an org made off the main thread, the dashboard as a page reads it."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from billing_app.billing.dashboard import dashboard_view
from billing_app.billing.views import billing_view
from billing_app.db import session_scope
from tests.billing.helpers import Org, make_org


def new_org(name: str = "Acme", domain: str = "acme.example") -> Org:
    """make_org on a worker thread: after a browser test, Playwright's loop runs on the main thread,
    where password hashing refuses to wait."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(make_org, name, f"admin@{domain}", f"member@{domain}").result()


def dashboard(org: Org, admin: bool = True, **kwargs):
    with session_scope() as s:
        return dashboard_view(s, org.id, admin=admin, **kwargs)


def billing(org: Org):
    with session_scope() as s:
        return billing_view(s, org.id)


def wait_for(predicate, what: str, timeout: float = 30.0):
    """Poll until `predicate()` is truthy (a webhook has to arrive and be handled); its value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
