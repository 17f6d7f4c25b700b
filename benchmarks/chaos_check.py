"""Stripe's truth against the app's view, for benchmarks/chaos.py.

Truth is read from the sandbox with the Stripe SDK: the org's customer(s) (the app's own row,
and any customer whose metadata names the org), their subscriptions (all statuses, schedules
expanded), Checkout sessions and charges. The app's view is read twice: what a client sees
(GET /api/subscriptions/my) and the mirror tables themselves (one row per subscription and per
lifetime purchase). An org has converged when every Stripe subscription and lifetime purchase
has its row with the same status, price, cancel_at_period_end and schedule, no row names
something Stripe does not have, and /my shows the subscription the app's one rule picks
(a held lifetime purchase, else the newest live subscription, else the newest of any). Money
is checked too: every paid invoice and lifetime payment is in the payment history, marked
REFUNDED exactly when Stripe refunded it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import stripe
from sqlalchemy import create_engine, select
from sqlalchemy.engine import Engine

from billing_app.models import (
    BillingCustomer,
    OrgSubscription,
    Payment,
    PlanPeriod,
    WebhookEvent,
)

MANAGEABLE = {"active", "trialing", "past_due", "unpaid", "paused"}
LIVE_SCHEDULE = ("active", "not_started")


class Mirror:
    """The app's database, read with the app's own table definitions (aware UTC times on both engines)."""

    def __init__(self, url: str):
        self.engine: Engine = create_engine(url)

    def close(self) -> None:
        self.engine.dispose()

    def customer_of(self, org_id: int) -> str | None:
        with self.engine.connect() as c:
            return c.execute(select(BillingCustomer.stripe_customer_id).where(BillingCustomer.org_id == org_id)).scalar()

    def rows_of(self, org_id: int) -> dict[str, dict]:
        t = OrgSubscription.__table__
        with self.engine.connect() as c:
            rows = c.execute(select(t).where(t.c.org_id == org_id)).mappings().all()
        return {r["stripe_id"]: dict(r) for r in rows}

    def payments_of(self, org_id: int) -> dict[str, str]:
        with self.engine.connect() as c:
            return dict(c.execute(select(Payment.stripe_id, Payment.status).where(Payment.org_id == org_id)).all())

    def period_by_price(self) -> dict[str, int]:
        with self.engine.connect() as c:
            return {price: pid for pid, price in c.execute(select(PlanPeriod.id, PlanPeriod.stripe_price_id)) if price}

    def events(self) -> list[dict]:
        t = WebhookEvent.__table__
        columns = (t.c.stripe_event_id, t.c.type, t.c.state, t.c.attempts, t.c.received_at, t.c.processed_at, t.c.last_error)
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(select(*columns)).mappings()]


def plain(obj) -> dict:
    return obj.to_dict() if isinstance(obj, stripe.StripeObject) else obj


def list_all(method, params: dict) -> list[dict]:
    return [plain(o) for o in method(params={**params, "limit": 100}).auto_paging_iter()]


@dataclass
class Truth:
    customers: list[str]
    subscriptions: list[dict] = field(default_factory=list)
    sessions: list[dict] = field(default_factory=list)
    charges: list[dict] = field(default_factory=list)
    invoices: list[dict] = field(default_factory=list)
    invoice_intents: dict[str, set[str]] = field(default_factory=dict)  # paid invoice -> its payment intents

    @property
    def refunded_intents(self) -> set[str]:
        return {c["payment_intent"] for c in self.charges if c.get("refunded") and c.get("payment_intent")}

    @property
    def lifetimes(self) -> dict[str, bool]:
        """Paid one-off purchases (payment-mode Checkouts) by payment intent: refunded or not."""
        refunded = self.refunded_intents
        return {
            s["payment_intent"]: s["payment_intent"] in refunded
            for s in self.sessions
            if s["mode"] == "payment" and s["status"] == "complete" and s["payment_status"] == "paid" and s.get("payment_intent")
        }

    @property
    def live(self) -> list[dict]:
        return [s for s in self.subscriptions if s["status"] in MANAGEABLE]

    @property
    def held_lifetimes(self) -> list[str]:
        return [pi for pi, refunded in self.lifetimes.items() if not refunded]

    @property
    def duplicates(self) -> int:
        """Plans held at once beyond the first: live subscriptions plus unrefunded lifetime purchases, minus one."""
        return max(0, len(self.live) + len(self.held_lifetimes) - 1)


def read_truth(client: stripe.StripeClient, org_id: int, mirror_customer: str | None) -> Truth:
    found = list_all(client.v1.customers.search, {"query": f"metadata['org_id']:'{org_id}'"})
    customers = sorted({c for c in [mirror_customer] if c} | {c["id"] for c in found})
    truth = Truth(customers)
    for customer in customers:
        truth.subscriptions += list_all(client.v1.subscriptions.list, {"customer": customer, "status": "all", "expand": ["data.schedule"]})
        truth.sessions += list_all(client.v1.checkout.sessions.list, {"customer": customer})
        truth.charges += list_all(client.v1.charges.list, {"customer": customer})
        truth.invoices += list_all(client.v1.invoices.list, {"customer": customer})
    for invoice in truth.invoices:
        if invoice["status"] == "paid" and invoice["amount_paid"] > 0:
            payments = list_all(client.v1.invoice_payments.list, {"invoice": invoice["id"]})
            truth.invoice_intents[invoice["id"]] = {(p.get("payment") or {}).get("payment_intent") for p in payments} - {None}
    return truth


def _price(sub: dict) -> str | None:
    items = sub["items"]["data"]
    return items[0]["price"]["id"] if items else None


def _schedule(sub: dict) -> tuple[str | None, str | None]:
    """The live schedule's id, and the price its next phase switches to (when it differs)."""
    schedule = sub.get("schedule")
    if not isinstance(schedule, dict) or schedule.get("status") not in LIVE_SCHEDULE:
        return None, None
    items = sub["items"]["data"]
    now = items[0].get("current_period_start") or 0 if items else 0
    for phase in schedule.get("phases") or []:
        if phase.get("start_date", 0) > now and phase.get("items"):
            price = phase["items"][0].get("price")
            price = price["id"] if isinstance(price, dict) else price
            if price != _price(sub):
                return schedule["id"], price
    return schedule["id"], None


def differences(truth: Truth, rows: dict[str, dict], mine: dict | None, period_by_price: dict[str, int],
                payments: dict[str, str]) -> list[str]:
    """What the app shows that Stripe does not say (empty: converged)."""
    diffs: list[str] = []
    if len(truth.customers) > 1:
        diffs.append(f"several Stripe customers for one org: {truth.customers}")
    expected: dict[str, dict] = {}
    for sub in truth.subscriptions:
        schedule_id, _ = _schedule(sub)
        expected[sub["id"]] = {
            "status": sub["status"], "cancel_at_period_end": bool(sub.get("cancel_at_period_end")),
            "stripe_price_id": _price(sub), "stripe_schedule_id": schedule_id, "one_off": False,
        }
    for intent, refunded in truth.lifetimes.items():
        expected[intent] = {"status": "canceled" if refunded else "active", "one_off": True}
    for stripe_id, want in expected.items():
        row = rows.get(stripe_id)
        if row is None:
            diffs.append(f"mirror lacks {stripe_id} (Stripe: {want['status']})")
            continue
        for name, value in want.items():
            if row[name] != value:
                diffs.append(f"mirror {stripe_id}.{name}={row[name]!r}, Stripe says {value!r}")
    for stripe_id in rows.keys() - expected.keys():
        diffs.append(f"mirror has {stripe_id} ({rows[stripe_id]['status']}) that Stripe does not")
    diffs += _payment_differences(truth, payments)
    diffs += _view_differences(truth, mine, period_by_price)
    return diffs


def _payment_differences(truth: Truth, payments: dict[str, str]) -> list[str]:
    """Money taken: every paid invoice and lifetime payment in the payment history, refunded where Stripe refunded it."""
    refunded = truth.refunded_intents
    want = {i: "REFUNDED" if intents & refunded else "COMPLETED" for i, intents in truth.invoice_intents.items()}
    want |= {intent: "REFUNDED" if was_refunded else "COMPLETED" for intent, was_refunded in truth.lifetimes.items()}
    return [f"payment {stripe_id} is {payments.get(stripe_id, 'missing')}, Stripe says {status}"
            for stripe_id, status in want.items() if payments.get(stripe_id) != status]


def _view_differences(truth: Truth, mine: dict | None, period_by_price: dict[str, int]) -> list[str]:
    """GET /api/subscriptions/my against the subscription the app's rule should pick from Stripe's truth."""
    by_id = {s["id"]: s for s in truth.subscriptions}
    if truth.held_lifetimes:
        if mine is None or mine["id"] not in truth.held_lifetimes or mine["status"] != "active":
            return [f"/my shows {_short(mine)}, Stripe has lifetime purchase(s) {truth.held_lifetimes}"]
        return []
    if truth.live:
        newest = max(s["start_date"] for s in truth.live)
        candidates = {s["id"]: s for s in truth.live if s["start_date"] == newest}
    else:
        candidates = {**by_id, **{pi: None for pi in truth.lifetimes}}
    if not candidates:
        return [] if mine is None else [f"/my shows {_short(mine)}, Stripe has nothing for this org"]
    if mine is None or mine["id"] not in candidates:
        return [f"/my shows {_short(mine)}, Stripe's current one is {sorted(candidates)}"]
    sub = candidates[mine["id"]]
    if sub is None:  # a refunded lifetime purchase
        return [] if mine["status"] == "canceled" else [f"/my shows {_short(mine)}, Stripe: refunded lifetime purchase"]
    diffs = []
    _, next_price = _schedule(sub)
    want = {
        "status": sub["status"], "cancelAtPeriodEnd": bool(sub.get("cancel_at_period_end")),
        "subscriptionPeriodId": period_by_price.get(_price(sub)),
        "scheduledPeriodId": period_by_price.get(next_price) if next_price else None,
    }
    got = dict(mine, scheduledPeriodId=(mine.get("scheduledChange") or {}).get("subscriptionPeriodId"))
    for name, value in want.items():
        if got.get(name) != value:
            diffs.append(f"/my {mine['id']}.{name}={got.get(name)!r}, Stripe says {value!r}")
    return diffs


def _short(mine: dict | None) -> str:
    return "nothing" if mine is None else f"{mine['id']} ({mine['status']})"


@dataclass
class EventFigures:
    created: int  # events the sandbox made (all delivered to the app's endpoint)
    stored: int  # rows in the event log that came from Stripe
    lost_after_200: list[str]  # the sandbox got a 2xx, the log has no row: lost
    never_delivered: list[str]  # no delivery succeeded (retries running out or exhausted)
    unprocessed: list[str]  # stored but not processed (pending or failed)
    latencies: list[float]  # stored -> processed, seconds, of events the worker handled

    @property
    def lost(self) -> int:
        return len(self.lost_after_200) + len(self.never_delivered)

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def event_figures(client: stripe.StripeClient, mirror: Mirror) -> EventFigures:
    events = list_all(client.v1.events.list, {})
    rows = [r for r in mirror.events() if r["stripe_event_id"].startswith("evt_")]
    stored = {r["stripe_event_id"] for r in rows}
    lost_after_200 = [f"{e['id']} {e['type']}" for e in events if e["id"] not in stored and e["pending_webhooks"] == 0]
    never = [f"{e['id']} {e['type']}" for e in events if e["id"] not in stored and e["pending_webhooks"] > 0]
    unprocessed = [f"{r['stripe_event_id']} {r['type']} {r['state']} attempts={r['attempts']} {r['last_error'] or ''}".strip()
                   for r in rows if r["state"] != "processed"]
    latencies = [
        (r["processed_at"] - r["received_at"]).total_seconds()
        for r in rows
        if r["attempts"] > 0 and isinstance(r["processed_at"], datetime)
    ]
    return EventFigures(len(events), len(rows), lost_after_200, never, unprocessed, latencies)
