"""Bulk reconcile heals the drift sync_customer heals, from list calls across all customers.

Each test drifts the mirror the way missed webhooks do (changes made at Stripe that nobody
told us about, rows lost), runs the bulk path, and checks two things: the mirror shows
Stripe's truth, and sync_customer run afterwards on every customer finds nothing left to
change (the bulk path wrote exactly what the per-customer path writes).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from sqlmodel import delete, select

from billing_app.billing import gateway
from billing_app.billing.checkout import start_checkout
from billing_app.billing.customers import ensure_customer
from billing_app.billing.sync import customers_to_reconcile, sync_customer
from billing_app.db import session_scope
from billing_app.models import BillingCustomer, OrgSubscription, OrphanCustomer, Payment, ReconcileRun, ReconcileStage
from billing_app.ops import reconcile
from tests.billing.helpers import buy, free_lifetime_behind_the_apps_back, make_org, period_id
from tests.ops.helpers import customer_of_org, mirror_of


def price_of(plan: str, period: str) -> str:
    from billing_app.models import PlanPeriod

    with session_scope() as s:
        return s.get(PlanPeriod, period_id(plan, period)).stripe_price_id


def per_customer_finds_nothing() -> None:
    with session_scope() as s:
        customers = customers_to_reconcile(s)
    leftovers = {c: sync_customer(c).changes for c in customers}
    assert {c: lines for c, lines in leftovers.items() if lines} == {}


@pytest.fixture
def drifted(org, stripe_env, db):
    """Five orgs with histories, then drift: a cancel, a refund, lost rows, an expiry, a plan change."""
    client = stripe_env.client
    orgs = {"canceled": org}
    for key in ("refunded", "lost", "expired", "changed"):
        orgs[key] = make_org(key.title(), f"admin@{key}.example", f"member@{key}.example")
    _, canceled = buy(orgs["canceled"], "starter", "MONTHLY", sandbox=stripe_env)
    lifetime, _ = buy(orgs["refunded"], "business", "ALL_TIME", sandbox=stripe_env)
    buy(orgs["lost"], "pro", "YEARLY", sandbox=stripe_env)
    expiring = start_checkout(orgs["expired"].admin, period_id("starter", "YEARLY"))
    _, changed = buy(orgs["changed"], "starter", "MONTHLY", sandbox=stripe_env)

    # Drift: nothing below reaches the mirror (no webhooks run in these tests).
    client.v1.subscriptions.cancel(canceled.subscription_id)
    intent = client.v1.checkout.sessions.retrieve(lifetime.session_id).payment_intent
    client.v1.refunds.create(params={"payment_intent": intent})
    with session_scope() as s:
        s.exec(delete(OrgSubscription).where(OrgSubscription.org_id == orgs["lost"].id))
        s.exec(delete(Payment).where(Payment.org_id == orgs["lost"].id))
    client.v1.checkout.sessions.expire(expiring.session_id)
    sub = client.v1.subscriptions.retrieve(changed.subscription_id)
    client.v1.subscriptions.update(sub.id, params={
        "items": [{"id": sub["items"].data[0].id, "price": price_of("business", "MONTHLY")}], "proration_behavior": "none"})
    return orgs


def test_bulk_heals_what_sync_customer_heals(drifted, stripe_env):
    result = reconcile.bulk_reconcile()

    status = {k: [(s["status"], s["one_off"]) for s in mirror_of(o.id)["subscriptions"]] for k, o in drifted.items()}
    assert status["canceled"] == [("canceled", False)]
    assert status["refunded"] == [("canceled", True)]  # a refunded lifetime purchase
    assert status["lost"] == [("trialing", False)]  # Pro yearly starts with its 14-day trial
    assert status["changed"] == [("active", False)]
    pays = {k: sorted(p["status"] for p in mirror_of(o.id)["payments"]) for k, o in drifted.items()}
    assert pays["refunded"] == ["REFUNDED"]
    assert pays["expired"] == ["EXPIRED"]
    assert pays["lost"] == ["COMPLETED"]
    changed = mirror_of(drifted["changed"].id)["subscriptions"][0]
    assert changed["stripe_price_id"] == price_of("business", "MONTHLY")
    assert result.customers == 5 and result.orphans == 0 and result.changes
    per_customer_finds_nothing()
    with session_scope() as s:
        assert s.exec(select(ReconcileStage)).all() == []  # staged objects go once applied
        assert s.get(ReconcileRun, result.run_id).state == "done"


def test_bulk_makes_fewer_calls_than_per_customer(drifted, stripe_env):
    before = gateway.call_counter["count"]
    result = reconcile.bulk_reconcile()
    bulk_calls = gateway.call_counter["count"] - before
    assert result.calls == bulk_calls
    before = gateway.call_counter["count"]
    per_customer_finds_nothing()
    per_customer_calls = gateway.call_counter["count"] - before
    # Five lists of one page each, plus one lookup for the refunded payment.
    assert bulk_calls <= 7 < per_customer_calls


def test_a_second_purchase_is_undone_as_sync_customer_undoes_it(org, stripe_env, db):
    _, status = buy(org, "starter", "MONTHLY", sandbox=stripe_env)
    customer = customer_of_org(org.id)
    extra = stripe_env.client.v1.subscriptions.create(params={
        "customer": customer, "items": [{"price": price_of("business", "MONTHLY")}], "default_payment_method": "pm_card_visa"})

    result = reconcile.bulk_reconcile()

    assert result.repaired == [customer]
    assert stripe_env.client.v1.subscriptions.retrieve(extra.id).status == "canceled"
    rows = {s["stripe_id"]: s["status"] for s in mirror_of(org.id)["subscriptions"]}
    assert rows == {status.subscription_id: "active", extra.id: "canceled"}
    per_customer_finds_nothing()


def test_a_free_lifetime_beside_a_subscription_is_undone_once_by_the_bulk_reconcile(org, stripe_env, db):
    _, status = buy(org, "starter", "MONTHLY", sandbox=stripe_env)
    customer = customer_of_org(org.id)
    free = free_lifetime_behind_the_apps_back(stripe_env, customer, price_of("business", "ALL_TIME"))

    assert reconcile.bulk_reconcile().repaired == [customer]

    assert stripe_env.client.v1.subscriptions.retrieve(status.subscription_id).status == "active"
    rows = {s["stripe_id"]: s["status"] for s in mirror_of(org.id)["subscriptions"]}
    assert rows == {status.subscription_id: "active", free.id: "canceled"}  # the free extra grants nothing
    assert reconcile.bulk_reconcile().repaired == []  # undone for good
    per_customer_finds_nothing()


def test_customers_stripe_has_and_we_do_not_are_orphans_never_attached_by_metadata(org, stripe_env, db):
    buy(org, "starter", "MONTHLY", sandbox=stripe_env)
    other = make_org("Globex", "admin@globex.example", "member@globex.example")
    # A customer whose metadata names an org: anyone with dashboard access can write that.
    stray = stripe_env.client.v1.customers.create(params={"email": "stray@example.com", "metadata": {"org_id": str(other.id)}})
    stripe_env.client.v1.subscriptions.create(params={
        "customer": stray.id, "items": [{"price": price_of("pro", "MONTHLY")}], "default_payment_method": "pm_card_visa"})

    result = reconcile.bulk_reconcile()

    assert result.orphans == 1
    with session_scope() as s:
        orphan = s.exec(select(OrphanCustomer)).one()
        assert (orphan.stripe_customer_id, orphan.email, orphan.claimed_org_id) == (stray.id, "stray@example.com", str(other.id))
        assert s.exec(select(BillingCustomer).where(BillingCustomer.org_id == other.id)).first() is None
        assert s.exec(select(OrgSubscription).where(OrgSubscription.org_id == other.id)).all() == []
    # Once an org holds it, it is no orphan.
    with session_scope() as s:
        s.add(BillingCustomer(org_id=other.id, stripe_customer_id=stray.id))
    assert reconcile.bulk_reconcile().orphans == 0
    assert [s["status"] for s in mirror_of(other.id)["subscriptions"]] == ["active"]


def test_an_interrupted_run_resumes_where_it_stopped(drifted, stripe_env, monkeypatch):
    real = reconcile.BulkReconcile._apply_batch
    calls = {"n": 0}

    def dies_after_the_first_batch(self, *args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C, or the process killed
        return real(self, *args)

    monkeypatch.setattr(reconcile, "BATCH", 2)
    monkeypatch.setattr(reconcile.BulkReconcile, "_apply_batch", dies_after_the_first_batch)
    with pytest.raises(KeyboardInterrupt):
        reconcile.bulk_reconcile()
    with session_scope() as s:
        run = s.exec(select(ReconcileRun)).one()
        assert (run.state, run.phase, run.customers_done, run.customers_total) == ("failed", "apply", 2, 5)
        assert json.loads(run.cursors_json) == {k: "done" for k in ("customer", "subscription", "invoice", "charge", "session")}

    monkeypatch.setattr(reconcile.BulkReconcile, "_apply_batch", real)
    before = gateway.call_counter["count"]
    result = reconcile.bulk_reconcile()
    assert result.resumed and result.run_id == run.id
    assert gateway.call_counter["count"] - before <= 1  # no list is read again (one refund lookup at most)
    with session_scope() as s:
        assert s.get(ReconcileRun, run.id).customers_done == 5
    per_customer_finds_nothing()


def test_a_fetch_interrupted_mid_list_resumes_at_the_next_page(org, stripe_env, monkeypatch):
    for n in range(5):
        stripe_env.client.v1.customers.create(params={"email": f"c{n}@example.com"})
    monkeypatch.setattr(reconcile, "_lists", lambda client, incremental: [
        reconcile._List("customer", client.v1.customers.list, {"limit": 2}, True)])
    real = gateway.list_page
    pages = {"n": 0}

    def fails_on_the_third_page(method, params):
        pages["n"] += 1
        if pages["n"] == 3:
            raise gateway.StripeFailure("connection reset", status=None)
        return real(method, params)

    monkeypatch.setattr(gateway, "list_page", fails_on_the_third_page)
    with pytest.raises(gateway.StripeFailure):
        reconcile.bulk_reconcile()
    with session_scope() as s:
        assert len(s.exec(select(ReconcileStage)).all()) == 4
    result = reconcile.bulk_reconcile()
    assert result.resumed and pages["n"] == 4  # the third page, which was the last
    assert result.orphans == 5


def test_one_run_at_a_time(org, stripe_env):
    with session_scope() as s:
        s.add(ReconcileRun(mode="full"))
    with pytest.raises(reconcile.ReconcileBusy):
        reconcile.bulk_reconcile()


def test_a_run_without_stripe_fails_and_the_next_start_is_not_refused_as_running(org, monkeypatch):
    from billing_app.errors import AppError, ErrorCode
    from billing_app.settings import get_settings

    monkeypatch.delenv("STRIPE_SECRET_KEY", raising=False)
    get_settings.cache_clear()
    gateway.reset_client()
    for _ in range(2):  # the second resumes the failed run, and fails the same way (not RECONCILE_RUNNING)
        with pytest.raises(AppError) as error:
            reconcile.bulk_reconcile()
        assert error.value.code == ErrorCode.BILLING_NOT_CONFIGURED
        with session_scope() as s:
            assert s.exec(select(ReconcileRun)).one().state == "failed"
    get_settings.cache_clear()


def test_incremental_run_reads_only_the_window_and_heals_older_objects_from_events(org, stripe_env, db, monkeypatch):
    monkeypatch.setattr(reconcile, "WINDOW_MARGIN", timedelta(0))
    buy(org, "starter", "MONTHLY", sandbox=stripe_env)
    time.sleep(1.1)  # Stripe's `created` is in whole seconds
    assert reconcile.bulk_reconcile().mode == "full"
    # Later: the older invoice's payment is refunded, and a new customer appears.
    intent = stripe_env.client.v1.charges.list(params={"customer": customer_of_org(org.id)}).data[0].payment_intent
    stripe_env.client.v1.refunds.create(params={"payment_intent": intent})
    stripe_env.client.v1.customers.create(params={"email": "new@example.com"})
    staged = []
    real_row = reconcile.BulkReconcile._row
    monkeypatch.setattr(reconcile.BulkReconcile, "_row", lambda self, kind, obj: staged.append(real_row(self, kind, obj)) or staged[-1])

    result = reconcile.bulk_reconcile(incremental=True)

    assert result.mode == "incremental" and result.orphans == 1
    kinds = sorted((row["kind"], row["rank"]) for row in staged if row)
    # The new customer and the subscription (always listed) from lists; the refunded charge from its event;
    # nothing older read again.
    assert ("customer", 2) in kinds and ("subscription", 2) in kinds and ("charge", 1) in kinds
    assert ("charge", 2) not in kinds and ("invoice", 2) not in kinds and ("session", 2) not in kinds
    assert [p["status"] for p in mirror_of(org.id)["payments"]] == ["REFUNDED"]
    per_customer_finds_nothing()


class RateLimitingProxy:
    """Stands between the app and the sandbox: answers 429 with Retry-After to every other list call."""

    def __init__(self, upstream: str, retry_after: str = "0.2"):
        self.seen_429 = 0
        self.forwarded = 0
        proxy = self
        client = httpx.Client(base_url=upstream, timeout=30)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if self.path.startswith("/v1/") and "limit=" in self.path and (proxy.forwarded + proxy.seen_429) % 2 == 0:
                    proxy.seen_429 += 1
                    body = json.dumps({"error": {"type": "invalid_request_error", "code": "rate_limit",
                                                 "message": "Too many requests"}}).encode()
                    self.send_response(429)
                    self.send_header("Retry-After", retry_after)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                proxy.forwarded += 1
                upstream_response = client.get(self.path, headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                self.send_response(upstream_response.status_code)
                for key in ("Content-Type", "Request-Id", "Stripe-Version"):
                    if key in upstream_response.headers:
                        self.send_header(key, upstream_response.headers[key])
                self.send_header("Content-Length", str(len(upstream_response.content)))
                self.end_headers()
                self.wfile.write(upstream_response.content)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_429_is_answered_with_backoff_that_honours_retry_after(org, stripe_env, monkeypatch):
    from billing_app.settings import get_settings

    buy(org, "starter", "MONTHLY", sandbox=stripe_env)
    proxy = RateLimitingProxy(stripe_env.base_url)
    try:
        monkeypatch.setenv("STRIPE_API_BASE", proxy.url)
        get_settings.cache_clear()
        gateway.reset_client()
        started = time.monotonic()
        result = reconcile.bulk_reconcile(concurrency=1)
        elapsed = time.monotonic() - started
    finally:
        proxy.close()
        gateway.reset_client()
    assert proxy.seen_429 >= 5 and result.customers == 1
    assert elapsed >= 0.2 * proxy.seen_429  # waited what Stripe asked each time
    assert [s["status"] for s in mirror_of(org.id)["subscriptions"]] == ["active"]


def test_ensure_customer_is_no_orphan(org, stripe_env):
    ensure_customer(org.id, "admin@acme.example")
    assert reconcile.bulk_reconcile().orphans == 0


@pytest.mark.parametrize("plan, period, after", [("starter", "MONTHLY", "DISPUTED"), ("business", "ALL_TIME", "DISPUTED")])
def test_an_incremental_run_finds_a_chargeback_lost_on_an_older_payment(org, stripe_env, db, monkeypatch, plan, period, after):
    """The webhooks were missed: only charge.dispute.* events tell (their object a dispute, naming no
    customer), so the run reads the dispute's charge: the payment reads DISPUTED, and a lifetime
    purchase ends as it does after a full refund."""
    from tests.billing.helpers import access

    monkeypatch.setattr(reconcile, "WINDOW_MARGIN", timedelta(0))
    buy(org, plan, period, sandbox=stripe_env, card="pm_card_createDispute")
    time.sleep(1.1)  # Stripe's `created` is in whole seconds
    assert reconcile.bulk_reconcile().mode == "full"
    stripe_env.client.v1.disputes.close(stripe_env.client.v1.disputes.list().data[0].id)  # lost; no webhook arrives
    assert reconcile.bulk_reconcile(incremental=True).mode == "incremental"
    assert [p["status"] for p in mirror_of(org.id)["payments"]] == [after]
    assert access(org).access is (period != "ALL_TIME")



def test_an_incremental_run_ends_an_older_lifetime_purchase_refunded_in_full(org, stripe_env, db, monkeypatch):
    """Its checkout session is older than the window: read for the refunded payment, so the purchase ends."""
    from tests.billing.helpers import access

    monkeypatch.setattr(reconcile, "WINDOW_MARGIN", timedelta(0))
    buy(org, "business", "ALL_TIME", sandbox=stripe_env)
    time.sleep(1.1)
    assert reconcile.bulk_reconcile().mode == "full"
    charge = stripe_env.client.v1.charges.list(params={"customer": customer_of_org(org.id)}).data[0]
    stripe_env.client.v1.refunds.create(params={"charge": charge.id})  # no webhook arrives
    reconcile.bulk_reconcile(incremental=True)
    assert [p["status"] for p in mirror_of(org.id)["payments"]] == ["REFUNDED"] and not access(org).access
