"""Every request the app sent to Stripe during the run is one Stripe accepts at the pinned version.

The plugin (tests/conformance/plugin.py) records what the app's own HTTP client sends
during the billing, webhook and API tests; this test, run last, checks each request's
parameter names, enum values and types against the SDK's params TypedDicts (a wrong
name or value is a 400 from real Stripe), whatever the sandbox made of it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from billing_app.billing.checkout import checkout_status, start_checkout
from billing_app.billing.subscriptions import change_plan
from tests.billing.helpers import make_org, period_id

from .check import Checker
from .plugin import APP_REQUESTS

# What the app sends in its main flows: the run must have checked each at least once.
ALWAYS = {"GET /v1/products", "POST /v1/products", "POST /v1/prices", "GET /v1/prices", "POST /v1/customers",
          "POST /v1/checkout/sessions", "GET /v1/checkout/sessions/{session}", "GET /v1/subscriptions",
          "POST /v1/subscription_schedules",
          "POST /v1/subscription_schedules/{schedule}"}
WITH_BILLING_TESTS = ALWAYS | {"POST /v1/subscriptions/{subscription_exposed_id}", "DELETE /v1/subscriptions/{subscription_exposed_id}",
                              "POST /v1/billing_portal/sessions", "GET /v1/invoices", "GET /v1/invoice_payments",
                              "POST /v1/invoices/create_preview",
                              "POST /v1/subscription_schedules/{schedule}/release", "POST /v1/refunds"}


@pytest.mark.conformance_last
def test_every_request_the_app_sent_conforms(request, stripe_env):
    # Of its own, so the check has the main flows to look at when run alone: buy, then schedule a downgrade.
    # The org is made on a worker thread: a browser test earlier in the run leaves Playwright's event loop
    # running on this one, where password hashing refuses to wait.
    with ThreadPoolExecutor(1) as pool:
        org = pool.submit(make_org, "Conformance", "admin@conformance.example", "member@conformance.example").result()
    started = start_checkout(org.admin, period_id("business", "MONTHLY"))
    stripe_env.complete_checkout(started.session_id)
    checkout_status(org.admin, started.session_id)
    change_plan(org.admin, period_id("starter", "MONTHLY"), preview=True)
    change_plan(org.admin, period_id("starter", "MONTHLY"), preview=False)

    checker = Checker()
    sent_by: dict = {}
    for sent in APP_REQUESTS:
        before = set(checker.problems)
        checker.exchange(sent["method"], sent["path"], sent["raw"])
        for problem in set(checker.problems) - before:
            sent_by[problem] = sent["test"]
    billing_ran = any(item.nodeid.startswith(("tests/billing/", "tests/webhooks/", "tests/api/")) for item in request.session.items)
    missing = (WITH_BILLING_TESTS if billing_ran else ALWAYS) - set(checker.requests)
    assert not missing, f"the app's requests never included {sorted(missing)}"
    assert not checker.problems, "requests real Stripe would refuse:\n" + "\n".join(
        f"{p}  (sent during {sent_by[p]})" for p in sorted(checker.problems, key=str))
