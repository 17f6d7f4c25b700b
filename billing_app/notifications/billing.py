"""Billing notifications, derived from what a sync changes in the mirror.

`billing.sync.write` calls `before(...)` first and `derive(...)` last, inside its one
transaction, so each email commits with the change that causes it (or not at all). The cause key
makes a repeat a no-op: `receipt:<invoice>`, `payment_failed:<invoice>:<attempt>`,
`subscription_canceled:<sub>`, `cancel_scheduled:<sub>:<end>:<mirror version>` (no version for a
subscription first seen set to cancel),
`plan_changed:<sub>:<old price>:<new price>:<mirror version>`,
`seats_changed:<sub>:<old quantity>:<new quantity>:<mirror version>` (the same price, another
quantity: the members page, the REST route, a member joining or leaving, the portal). The mirror
version is the subscription row's `updated_at` before this write: a change synced twice is measured
against the same row, and a change made again (3 -> 5 -> 3 -> 5 in one period, or cancel, reactivate,
cancel) against a newer one.

Events that change nothing in the mirror (`customer.subscription.trial_will_end`,
`invoice.payment_action_required`) are handled by `for_events`, which the webhook worker calls
and writes in the transaction that marks the events processed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlmodel import Session, select

from billing_app import routes
from billing_app.billing.prices import plan_for_price
from billing_app.formatting import format_amount, format_date
from billing_app.models import (
    ENDED_STATUSES,
    LIVE_STATUSES,
    Organization,
    OrgSubscription,
    Payment,
    PaymentStatus,
    SubscriptionStatus as S,
    set_to_cancel,
)
from billing_app.notifications import outbox
from billing_app.notifications.kinds import Kind
from billing_app.settings import get_settings

PAID = (PaymentStatus.COMPLETED.value, PaymentStatus.REFUNDED.value, PaymentStatus.DISPUTED.value)
# A change older than this is history, not news: a first sync of an existing Stripe account (or a
# reconcile after a long outage) does not email about it. Test-clock times run ahead, never behind.
NEWS_WINDOW_SECONDS = 7 * 86400


def _recent(ts: int | None) -> bool:
    return ts is None or ts >= datetime.now(timezone.utc).timestamp() - NEWS_WINDOW_SECONDS


@dataclass(frozen=True)
class _Sub:
    status: str
    canceling: bool  # set to cancel, at the period end or on a chosen date
    price_id: str | None
    quantity: int
    version: str  # the row's updated_at: what a plan or seat change is measured against


@dataclass
class Before:
    payments: dict[str, tuple[str, int]]  # invoice id -> (status, attempt_count)
    subscriptions: dict[str, _Sub]


def _epoch(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=timezone.utc) if value else None


def before(session: Session, org_id: int, snap) -> Before:
    """The mirror rows this snapshot is about, as they are before the write."""
    invoice_ids = [i["id"] for i in snap.invoices]
    sub_ids = [s["id"] for s in snap.subscriptions]
    payments = {}
    if invoice_ids:
        rows = session.exec(select(Payment.stripe_id, Payment.status, Payment.attempt_count).where(Payment.stripe_id.in_(invoice_ids))).all()
        payments = {sid: (status, attempts) for sid, status, attempts in rows}
    subs = {}
    if sub_ids:
        rows = session.exec(select(OrgSubscription).where(OrgSubscription.stripe_id.in_(sub_ids))).all()
        subs = {r.stripe_id: _Sub(r.status, r.is_canceling, r.stripe_price_id, r.quantity,
                                  r.updated_at.strftime("%Y%m%dT%H%M%S.%f")) for r in rows}
    return Before(payments, subs)


class _Context:
    """What every billing email needs about the org, read once per sync."""

    def __init__(self, session: Session, org_id: int, snap):
        self.session, self.org_id = session, org_id
        org = session.get(Organization, org_id)
        self.org_name = org.name if org else "your organization"
        self.billing_email = (snap.customer or {}).get("email")
        settings = get_settings()
        self.billing_url = settings.url(routes.BILLING)
        self.pricing_url = settings.url(routes.PRICING)

    def plan_name(self, price_id: str | None) -> str:
        if not price_id:
            return "plan"
        plan = plan_for_price(self.session, price_id)
        return plan.name if plan else "plan"

    def base(self, **values) -> dict:
        return {"org_name": self.org_name, "billing_url": self.billing_url, "pricing_url": self.pricing_url, **values}

    def enqueue(self, kind: Kind, key: str, **values) -> None:
        to = outbox.org_recipients(self.session, self.org_id, kind, self.billing_email)
        outbox.enqueue(self.session, kind, key, to, self.base(**values), org_id=self.org_id)


def _price_of(sub: dict) -> str | None:
    items = (sub.get("items") or {}).get("data") or []
    return ((items[0].get("price") or {}).get("id")) if items else None


def _item(sub: dict) -> dict:
    items = (sub.get("items") or {}).get("data") or []
    return items[0] if items else {}


def _invoice_subscription(invoice: dict) -> str | None:
    details = ((invoice.get("parent") or {}).get("subscription_details") or {})
    sub = details.get("subscription")
    return sub.get("id") if isinstance(sub, dict) else sub


def derive(session: Session, org_id: int, snap, was: Before) -> None:
    """Write the outbox rows for what this sync changed (the caller's transaction)."""
    ctx = _Context(session, org_id, snap)
    subs_by_id = {s["id"]: s for s in snap.subscriptions}

    def plan_for_invoice(invoice: dict) -> str:
        sub = subs_by_id.get(_invoice_subscription(invoice) or "")
        return ctx.plan_name(_price_of(sub)) if sub else "plan"

    for invoice in snap.invoices:
        status, attempts = was.payments.get(invoice["id"], (None, 0))
        paid_at = (invoice.get("status_transitions") or {}).get("paid_at")
        if invoice["status"] == "paid" and status not in PAID and (invoice.get("amount_paid") or 0) > 0 and _recent(paid_at):
            line = (((invoice.get("lines") or {}).get("data") or [{}])[0]).get("period") or {}
            start, end = _epoch(line.get("start")), _epoch(line.get("end"))
            ctx.enqueue(
                Kind.RECEIPT, invoice["id"],
                amount=format_amount(invoice["amount_paid"], invoice["currency"]),
                description=invoice.get("description") or (((invoice.get("lines") or {}).get("data") or [{}])[0]).get("description") or "Invoice",
                period=f"{format_date(start)} – {format_date(end)}" if start and end and end > start else "",
                paid_on=format_date(_epoch((invoice.get("status_transitions") or {}).get("paid_at")) or _epoch(invoice.get("created"))),
                pdf_url=invoice.get("invoice_pdf") or "",
            )
        new_attempts = invoice.get("attempt_count") or 0
        if not _recent(invoice.get("created")) and invoice["id"] not in was.payments:
            continue  # an old open invoice seen for the first time: history
        if invoice["id"] in getattr(snap, "action_required", ()) and new_attempts > attempts:
            # Not a failure: the bank wants the customer (3-D Secure). Same key as the event's email.
            ctx.enqueue(
                Kind.PAYMENT_ACTION_REQUIRED, f"{invoice['id']}:{new_attempts}",
                amount=format_amount(invoice["amount_due"], invoice["currency"]),
                plan=plan_for_invoice(invoice), invoice_url=invoice.get("hosted_invoice_url") or ctx.billing_url,
            )
        elif invoice["status"] == "open" and new_attempts > 0 and new_attempts > attempts:
            ctx.enqueue(
                Kind.PAYMENT_FAILED, f"{invoice['id']}:{new_attempts}",
                amount=format_amount(invoice["amount_due"], invoice["currency"]),
                plan=plan_for_invoice(invoice),
                next_retry=format_date(_epoch(invoice.get("next_payment_attempt"))),
                update_url=ctx.billing_url,
            )

    for sub in snap.subscriptions:
        old = was.subscriptions.get(sub["id"])
        status, price_id = sub["status"], _price_of(sub)
        plan = ctx.plan_name(price_id)
        if status == S.CANCELED.value and old is not None and old.status not in ENDED_STATUSES and _recent(sub.get("ended_at")):
            ctx.enqueue(Kind.SUBSCRIPTION_CANCELED, sub["id"], plan=plan, ended_on=format_date(_epoch(sub.get("ended_at"))))
            continue
        if status not in LIVE_STATUSES:
            continue
        period_end = _item(sub).get("current_period_end")
        ends = sub.get("cancel_at") or period_end
        if set_to_cancel(sub.get("cancel_at_period_end"), sub.get("cancel_at")):
            if (old is None and _recent(sub.get("canceled_at"))) or (old is not None and not old.canceling):
                # Against the row's version, like a plan change: canceling again after a Reactivate is news.
                key = f"{sub['id']}:{ends}" if old is None else f"{sub['id']}:{ends}:{old.version}"
                ctx.enqueue(Kind.CANCEL_SCHEDULED, key, plan=plan, ends_on=format_date(_epoch(ends)))
        if old is not None and old.price_id and price_id and old.price_id != price_id:
            ctx.enqueue(
                Kind.PLAN_CHANGED, f"{sub['id']}:{old.price_id}:{price_id}:{old.version}",
                plan=plan, previous=ctx.plan_name(old.price_id), quantity=_item(sub).get("quantity") or 1,
            )
        quantity = _item(sub).get("quantity") or 1
        if old is not None and old.price_id and old.price_id == price_id and old.quantity != quantity:
            ctx.enqueue(
                Kind.SEATS_CHANGED, f"{sub['id']}:{old.quantity}:{quantity}:{old.version}",
                plan=plan, seats=quantity, previous_seats=old.quantity,
            )


# --- events with no mirror change -------------------------------------------------------------

TRIAL_WILL_END = "customer.subscription.trial_will_end"
ACTION_REQUIRED = "invoice.payment_action_required"
EVENT_TYPES = frozenset({TRIAL_WILL_END, ACTION_REQUIRED})


def for_events(session: Session, org_id: int, snap, events: list[tuple[str, str, str | None]]) -> list[dict]:
    """Outbox rows (as values for an INSERT) for these (event id, type, object id) triples.

    What the email says comes from the snapshot the sync just read from Stripe, never from the
    event payload; the event only says which subscription or invoice to look at.
    """
    ctx = _Context(session, org_id, snap)
    subs = {s["id"]: s for s in snap.subscriptions}
    invoices = {i["id"]: i for i in snap.invoices}
    rows: list[dict] = []

    def add(kind: Kind, key: str, **values):
        to = outbox.org_recipients(session, org_id, kind, ctx.billing_email)
        rows.extend(outbox.rows(kind, key, to, ctx.base(**values), org_id=org_id))

    for _event_id, event_type, object_id in events:
        if event_type == TRIAL_WILL_END:
            sub = subs.get(object_id or "")
            if sub is None or sub["status"] != S.TRIALING.value or not sub.get("trial_end"):
                continue
            add(Kind.TRIAL_ENDING, f"{sub['id']}:{sub['trial_end']}", plan=ctx.plan_name(_price_of(sub)),
                trial_end=format_date(_epoch(sub["trial_end"])))
        elif event_type == ACTION_REQUIRED:
            invoice = invoices.get(object_id or "")
            if invoice is None or invoice["status"] != "open" or not invoice.get("hosted_invoice_url"):
                continue
            sub = subs.get(_invoice_subscription(invoice) or "")
            add(Kind.PAYMENT_ACTION_REQUIRED, f"{invoice['id']}:{invoice.get('attempt_count') or 0}",
                amount=format_amount(invoice["amount_due"], invoice["currency"]),
                plan=ctx.plan_name(_price_of(sub)) if sub else "plan", invoice_url=invoice["hosted_invoice_url"])
    return rows
