"""Benchmark reconcile: per-customer (sync_customer for each) against bulk (list calls), in one run.

Run:  .venv/bin/python benchmarks/reconcile.py [--customers 2000] [--concurrency 4]

Setup (127.0.0.1, free ports, everything stopped by pid at the end): the offline Stripe sandbox
as a subprocess and a fresh, migrated, temporary SQLite database with the catalog synced. Then
N organizations, each tied to a Stripe customer with a history made through the API: a
subscription paid by card (its invoice, payment and charge), and for some an upgrade billed at
once (a second invoice), a cancellation, a lifetime purchase through Checkout instead, a refund,
an expired Checkout; plus 1 customer in 100 that no organization holds (an orphan).

Both paths start from an empty mirror (every webhook missed) and must leave the same mirror:
per-customer first (`sync_customer` for each known customer, one after another, as
`reconcile --per-customer` does), then the mirror is emptied and the bulk path runs
(`reconcile`, the default). Stripe calls are counted by the gateway's counter (every HTTP
request the SDK makes). Not a test: it prints figures; the goal is at most 0.1 calls per
customer plus one per 100 objects, and at least 10x fewer calls than per-customer.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make billing_app importable
KEY = "sk_test_sandbox"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sandbox(port: int) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "billing_app.sandbox", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/_sandbox/health", timeout=0.5).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("the sandbox did not start")


def make_history(client, n: int, org_id: int | None, prices: dict[str, str]) -> str:
    """One customer and its history; returns the customer id."""
    customer = client.v1.customers.create(params={
        "email": f"customer{n}@bench.example", "payment_method": "pm_card_visa",
        "invoice_settings": {"default_payment_method": "pm_card_visa"},
        **({"metadata": {"org_id": str(org_id)}} if org_id else {}),
    })
    if n % 20 == 7:  # a lifetime purchase through Checkout instead of a subscription
        session = client.v1.checkout.sessions.create(params={
            "mode": "payment", "customer": customer.id, "line_items": [{"price": prices["lifetime"], "quantity": 1}],
            "success_url": "http://127.0.0.1:3999/ok", "invoice_creation": {"enabled": True},
        })
        client.raw_request("post", f"/v1/test_helpers/checkout/sessions/{session.id}/complete", payment_method="pm_card_visa")
        if n % 40 == 7:  # and refunded
            intent = client.v1.checkout.sessions.retrieve(session.id).payment_intent
            client.v1.refunds.create(params={"payment_intent": intent})
        return customer.id
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": prices["starter"]}]})
    if n % 4 == 1:  # upgraded, billed at once: a second invoice and charge
        client.v1.subscriptions.update(sub.id, params={
            "items": [{"id": sub["items"].data[0].id, "price": prices["pro"]}], "proration_behavior": "always_invoice"})
    if n % 10 == 3:
        client.v1.subscriptions.cancel(sub.id)
    if n % 25 == 11:  # an abandoned second checkout, expired
        session = client.v1.checkout.sessions.create(params={
            "mode": "subscription", "customer": customer.id, "line_items": [{"price": prices["pro"], "quantity": 1}],
            "success_url": "http://127.0.0.1:3999/ok"})
        client.v1.checkout.sessions.expire(session.id)
    return customer.id


def mirror_rows() -> tuple[list, list]:
    from sqlmodel import select

    from billing_app.db import session_scope
    from billing_app.models import OrgSubscription, Payment

    skip = {"id", "updated_at"}
    # A checkout expired early is dated when a mirror first saw it expired (Stripe keeps only its
    # planned expires_at; README "Payment history"): two mirrors built a moment apart differ there.
    skip_expired = skip | {"created"}
    with session_scope() as s:
        subs = [tuple(sorted((k, str(v)) for k, v in r.model_dump().items() if k not in skip))
                for r in s.exec(select(OrgSubscription).order_by(OrgSubscription.stripe_id))]
        pays = [tuple(sorted((k, str(v)) for k, v in r.model_dump().items()
                             if k not in (skip_expired if r.status == "EXPIRED" else skip)))
                for r in s.exec(select(Payment).order_by(Payment.stripe_id))]
    return subs, pays


def empty_mirror() -> None:
    from sqlmodel import delete

    from billing_app.db import session_scope
    from billing_app.models import OrgSubscription, Payment

    with session_scope() as s:
        s.exec(delete(OrgSubscription))
        s.exec(delete(Payment))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4, help="bulk: lists read at once")
    parser.add_argument("--setup-threads", type=int, default=8)
    args = parser.parse_args()

    with offline_billing("bench-reconcile-"):
        run(args)


@contextlib.contextmanager
def offline_billing(prefix: str):
    """A fresh, migrated SQLite database with the catalog synced, and the sandbox on a free port
    (stopped at the end), as this process's settings."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    port = free_port()
    os.environ.update(DATABASE_URL=f"sqlite:///{work}/bench.db", STRIPE_SECRET_KEY=KEY,
                      STRIPE_API_BASE=f"http://127.0.0.1:{port}", APP_URL="http://127.0.0.1:3999")
    sandbox = start_sandbox(port)
    try:
        from billing_app.billing.catalog import sync_catalog
        from billing_app.db import session_scope
        from billing_app.migrations import upgrade
        from billing_app.settings import get_settings

        upgrade(get_settings().database_url)
        with session_scope() as s:
            sync_catalog(s)
        yield
    finally:
        from billing_app.serve import stop

        stop([sandbox])


def run(args) -> None:
    import stripe
    from sqlmodel import func, select

    from billing_app.billing import gateway
    from billing_app.billing.sync import customers_to_reconcile, sync_customer
    from billing_app.db import session_scope
    from billing_app.models import BillingCustomer, Organization, PlanPeriod
    from billing_app.ops.reconcile import bulk_reconcile

    with session_scope() as s:
        prices = {
            key: s.exec(select(PlanPeriod.stripe_price_id).where(PlanPeriod.lookup_key == lookup)).one()
            for key, lookup in (("starter", "starter_monthly_v1"), ("pro", "pro_monthly_v1"), ("lifetime", "business_lifetime_v1"))
        }
        orgs = [Organization(name=f"Bench {n}") for n in range(args.customers)]
        s.add_all(orgs)
        s.flush()
        org_ids = [o.id for o in orgs]
    client = stripe.StripeClient(KEY, base_addresses={"api": os.environ["STRIPE_API_BASE"]}, max_network_retries=0)
    started = time.monotonic()
    orphans = max(1, args.customers // 100)
    jobs = [(n, org_ids[n]) for n in range(args.customers)] + [(args.customers + n, None) for n in range(orphans)]
    with ThreadPoolExecutor(args.setup_threads) as pool:
        customers = list(pool.map(lambda job: (job[1], make_history(client, job[0], job[1], prices)), jobs))
    with session_scope() as s:
        s.add_all(BillingCustomer(org_id=org_id, stripe_customer_id=c) for org_id, c in customers if org_id)
    print(f"setup: {args.customers} customers with histories and {orphans} orphan(s) in {time.monotonic() - started:.0f} s")

    # Per-customer, one after another (reconcile --per-customer).
    with session_scope() as s:
        known = customers_to_reconcile(s)
    before, started = gateway.call_counter["count"], time.monotonic()
    for customer_id in known:
        sync_customer(customer_id)
    per_calls, per_seconds = gateway.call_counter["count"] - before, time.monotonic() - started
    per_mirror = mirror_rows()

    empty_mirror()
    before, started = gateway.call_counter["count"], time.monotonic()
    result = bulk_reconcile(concurrency=args.concurrency, resume=False)
    bulk_calls, bulk_seconds = gateway.call_counter["count"] - before, time.monotonic() - started
    bulk_mirror = mirror_rows()

    with session_scope() as s:
        rows = s.exec(select(func.count()).select_from(BillingCustomer)).one()
    objects = count_objects(client)
    n = rows
    budget = 0.1 * n + objects / 100
    same = per_mirror == bulk_mirror
    print(f"objects at Stripe: {objects} (customers, subscriptions, invoices, charges, checkout sessions)")
    print(f"mirror rows: {len(bulk_mirror[0])} subscriptions, {len(bulk_mirror[1])} payments; "
          f"per-customer and bulk mirrors identical: {same}; orphans found: {result.orphans}")
    print(f"per-customer: {per_calls} Stripe calls ({per_calls / n:.2f} per customer), {per_seconds:.1f} s")
    print(f"bulk:         {bulk_calls} Stripe calls ({bulk_calls / n:.3f} per customer), {bulk_seconds:.1f} s "
          f"(budget {budget:.0f} = 0.1 x {n} customers + {objects} objects / 100)")
    print(f"calls_ratio={per_calls / bulk_calls:.1f}x fewer  time_ratio={per_seconds / bulk_seconds:.1f}x faster  "
          f"within_budget={bulk_calls <= budget}")
    if not same:
        sys.exit("the two paths left different mirrors")


def count_objects(client) -> int:
    """Everything a full reconcile reads, counted through list pages (not part of either figure)."""
    total = 0
    for method, params in ((client.v1.customers.list, {}), (client.v1.subscriptions.list, {"status": "all"}),
                           (client.v1.invoices.list, {}), (client.v1.charges.list, {}), (client.v1.checkout.sessions.list, {})):
        total += sum(1 for _ in method(params={"limit": 100, **params}).auto_paging_iter())
    return total


if __name__ == "__main__":
    main()
