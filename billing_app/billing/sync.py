"""sync_customer: read one Stripe customer's billing state and upsert the local mirror.

Stripe is the source of truth. Webhooks only say "this customer changed"; this
function re-reads subscriptions (status=all), invoices, one-off payments and
checkout sessions, then writes the mirror in one transaction. Duplicate or
out-of-order deliveries therefore cannot leave the mirror wrong. The checkout
confirmation, every webhook and `python -m billing_app reconcile` call it.

All Stripe reads happen before the transaction opens, so no database lock is
held across the network.

Several syncs of one customer may overlap (the webhook worker, the confirmation page,
`resync_after_change`, reconcile). Each notes the database's clock before its Stripe reads
(`read_clock`), and its write first advances `BillingCustomer.synced_read_at` to that time with a
conditional UPDATE; a sync whose reads began before the stored time writes nothing (`fence`), so
an older snapshot never reverts a newer one. The row lock of that UPDATE also makes concurrent
writers of one customer take turns. One clock only (the database's), never two hosts'.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import func, type_coerce, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from billing_app.billing import duplicates, gateway, history, one_off, orphans, profile, schedules, set_aside
from billing_app.billing.prices import period_for_price
from billing_app.db import get_engine, insert_if_absent, session_scope
from billing_app.formatting import plan_label
from billing_app.notifications import billing as billing_notices
from billing_app.models import (
    ENDED_STATUSES,
    BillingCustomer,
    OrgSubscription,
    Payment,
    PaymentStatus,
    PlanPeriod,
    RetentionOffer,
    SubscriptionStatus as S,
    UTCDateTime,
    WebhookEvent,
    set_to_cancel,
    utcnow,
)

log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    customer_id: str
    org_id: int | None = None
    changes: list[str] = field(default_factory=list)
    snapshot: Snapshot | None = field(default=None, repr=False)
    stale: bool = False  # a sync that read Stripe later had already written; this one wrote nothing
    # Written, but a set-aside change is left to judge (set_aside.Deferred): the webhook worker retries.
    deferred: str | None = None


def _from_epoch(value: int | None) -> datetime | None:
    """Stripe's Unix timestamps as aware UTC datetimes (None stays None)."""
    return datetime.fromtimestamp(value, tz=timezone.utc) if value else None


@dataclass
class Snapshot:
    """Everything Stripe says about one customer, read before writing anything."""

    customer: dict
    subscriptions: list
    invoices: list
    charges: list
    sessions: list
    refunded_invoices: set[str]  # paid invoices whose charge was refunded in full
    read_at: datetime  # the database's clock before the first Stripe read (read_clock): the fence
    preview: dict | None = None  # the next invoice, as Stripe's preview prices it (billing/profile.py)
    # Read with the dashboard's facts expanded (profile.CUSTOMER_EXPAND / SUBSCRIPTION_EXPAND), and
    # with the invoice preview (sync_customer's reads; the bulk reconcile lists no previews).
    has_profile: bool = False
    has_preview: bool = False
    # Open invoices whose payment waits for the customer (3-D Secure): the hosted page confirms it.
    action_required: set[str] = field(default_factory=set)
    # Payment intents of completed, unpaid checkouts whose delayed payment failed (failed_async_payments).
    failed_payments: set[str] = field(default_factory=set)
    # Paid invoices with a refund, full or partial: how much was refunded (minor units).
    invoice_refunds: dict[str, int] = field(default_factory=dict)
    # Payment intents whose charge the buyer disputed and the merchant lost (lost_disputes), and the
    # paid invoices they paid: the money went back, as with a full refund.
    lost_disputes: set[str] = field(default_factory=set)
    disputed_invoices: set[str] = field(default_factory=set)


def read_clock() -> datetime:
    """The database's clock now (aware UTC): the one clock every sync's read time is taken from.
    PostgreSQL's clock_timestamp() (not the transaction's start), whichever host syncs; SQLite is
    embedded, so its clock is this host's, read here in microseconds (its own 'now' has only ms)."""
    if get_engine().dialect.name != "postgresql":
        return utcnow()
    with session_scope() as session:
        return session.execute(select(type_coerce(func.clock_timestamp(), UTCDateTime()))).scalar_one()


def fence(session: Session, customer_id: str, read_at: datetime) -> bool:
    """Claim the write of this customer for a snapshot read from `read_at` on: False (write nothing)
    when a snapshot read as late or later was written already. Call first in the write transaction.

    A stored time later than the clock now was taken by a clock since stepped back (a host's clock
    ran fast): it is void, or every sync would be refused until the clock caught up with it."""
    table = BillingCustomer.__table__
    now = func.clock_timestamp() if session.get_bind().dialect.name == "postgresql" else utcnow()
    claimed = session.execute(
        update(table)
        .where(table.c.stripe_customer_id == customer_id)
        .where(table.c.synced_read_at.is_(None) | (table.c.synced_read_at < read_at) | (table.c.synced_read_at > now))
        .values(synced_read_at=read_at)
    )
    return claimed.rowcount == 1


def _read(client, customer_id: str) -> Snapshot:
    read_at = read_clock()
    call = gateway.call
    # The dashboard's facts (card, tax IDs, discounts) come expanded in the calls the sync makes anyway.
    customer = call(client.v1.customers.retrieve, customer_id, params={"expand": profile.CUSTOMER_EXPAND})
    list_all = gateway.list_all
    # The schedule (a downgrade waiting for the period end) comes expanded, in the same call.
    subscriptions = list_all(client.v1.subscriptions.list, {"customer": customer_id, "status": "all",
                                                            "expand": ["data.schedule", *profile.SUBSCRIPTION_EXPAND]})
    invoices = list_all(client.v1.invoices.list, {"customer": customer_id})
    charges = list_all(client.v1.charges.list, {"customer": customer_id})
    # Line items expanded: what a lifetime purchase grants is decided by the price paid (_paid_period).
    sessions = list_all(client.v1.checkout.sessions.list, {"customer": customer_id, "expand": list(SESSION_EXPAND)})
    # A refund names a payment intent; find which paid invoices it belongs to (only when there are refunds).
    refunds = refunds_by_intent(charges)
    lost = lost_disputes(client, charges)
    refunded_invoices: set[str] = set()
    invoice_refunds: dict[str, int] = {}
    disputed_invoices: set[str] = set()
    if refunds or lost:
        for invoice in invoices:
            if invoice["status"] != "paid":
                continue
            payments = call(client.v1.invoice_payments.list, params={"invoice": invoice["id"], "limit": 10})["data"]
            for intent in ((p.get("payment") or {}).get("payment_intent") for p in payments):
                if intent in refunds:
                    note_refund(refunded_invoices, invoice_refunds, invoice["id"], refunds[intent])
                if intent in lost:
                    disputed_invoices.add(invoice["id"])
    preview = profile.read_preview(client, customer_id, subscriptions)
    # Only an open invoice already attempted can wait for the customer (rare: one call each).
    action_required: set[str] = set()
    for invoice in invoices:
        if invoice["status"] == "open" and (invoice.get("attempt_count") or 0) > 0:
            payments = call(client.v1.invoice_payments.list,
                            params={"invoice": invoice["id"], "limit": 10, "expand": ["data.payment.payment_intent"]})["data"]
            if any(((p.get("payment") or {}).get("payment_intent") or {}).get("status") == "requires_action"
                   for p in payments if p.get("status") == "open" and isinstance((p.get("payment") or {}).get("payment_intent"), dict)):
                action_required.add(invoice["id"])
    return Snapshot(customer, subscriptions, invoices, charges, sessions, refunded_invoices, read_at, preview,
                    has_profile=True, has_preview=True, action_required=action_required,
                    failed_payments=failed_async_payments(client, sessions), invoice_refunds=invoice_refunds,
                    lost_disputes=lost, disputed_invoices=disputed_invoices)


def lost_disputes(client, charges: list, call=None) -> set[str]:
    """The payment intents whose charge's dispute the merchant lost. Stripe marks a disputed charge
    `disputed` (never `refunded`); only its dispute says lost, won or still open, so one call per
    disputed charge (rare), none otherwise. The bulk reconcile passes its backoff as `call`."""
    call = call or gateway.call
    lost = set()
    for charge in charges:
        if charge.get("disputed") and charge.get("payment_intent"):
            disputes = call(client.v1.disputes.list, params={"charge": charge["id"], "limit": 10})["data"]
            if any(d.get("status") == "lost" for d in disputes):
                lost.add(charge["payment_intent"])
    return lost


def refunds_by_intent(charges: list) -> dict[str, tuple[bool, int]]:
    """Payment intents with a refund: (refunded in full, amount refunded)."""
    return {intent: (bool(c.get("refunded")), c.get("amount_refunded") or 0)
            for intent, c in one_off.charge_by_intent(charges).items() if c.get("refunded") or c.get("amount_refunded")}


def note_refund(refunded_invoices: set[str], invoice_refunds: dict[str, int], invoice_id: str, refund: tuple[bool, int]) -> None:
    """Record a paid invoice's refund in a snapshot (sync_customer's reads and the bulk reconcile's)."""
    in_full, amount = refund
    if in_full:
        refunded_invoices.add(invoice_id)
    invoice_refunds[invoice_id] = amount


def awaiting_payment(checkout: dict) -> bool:
    """A payment-mode checkout completed with a delayed method (SEPA, ACH): Stripe says `unpaid`
    until checkout.session.async_payment_succeeded (or _failed)."""
    return checkout["mode"] == "payment" and checkout["status"] == "complete" and checkout["payment_status"] == "unpaid"


# A payment intent back to these after a delayed payment means it failed (async_payment_failed).
FAILED_INTENT_STATUSES = frozenset({"requires_payment_method", "canceled"})


# Delayed methods settle within days (SEPA up to 14 business days): still unpaid after this, failed.
SETTLE_DAYS = 30


def failed_async_payments(client, sessions: list, call=None) -> set[str]:
    """Which unpaid completed checkouts' payments failed: their payment intent says so. One call per
    payment still settling; none for one the mirror has as failed already (a failure is final) or
    older than SETTLE_DAYS, so a customer's history costs nothing each sync. The bulk reconcile
    passes its backoff as `call`."""
    call = call or gateway.call
    settling = {c["payment_intent"]: c for c in sessions if c.get("payment_intent") and awaiting_payment(c)}
    if not settling:
        return set()
    with session_scope() as session:
        failed = set(session.exec(select(Payment.stripe_id).where(
            Payment.stripe_id.in_(list(settling)), Payment.status == PaymentStatus.FAILED.value)).all())
    too_old = time.time() - SETTLE_DAYS * 86400
    for intent, checkout in settling.items():
        if intent not in failed and (checkout["created"] < too_old or
                                     call(client.v1.payment_intents.retrieve, intent)["status"] in FAILED_INTENT_STATUSES):
            failed.add(intent)
    return failed


def _org_for(session: Session, customer: dict) -> int | None:
    """The org this customer belongs to: only by our own BillingCustomer row.

    Never by `customer.metadata.org_id`: anyone with access to the Stripe account can write
    metadata, so trusting it would let a stranger's customer (and its subscription and portal)
    attach itself to an org. A customer without a row is recorded for an operator
    (billing/orphans.py: `python -m billing_app orphans`) and ignored.
    """
    row = session.exec(select(BillingCustomer).where(BillingCustomer.stripe_customer_id == customer["id"])).first()
    if row is not None:
        return row.org_id
    orphans.record_orphan(session, customer)
    return None


def _set(row, changes: list[str], label: str, **values) -> None:
    """Assign values, noting each one that actually changed."""
    for name, value in values.items():
        old = getattr(row, name)
        if old != value:
            if row.id is not None:
                changes.append(f"{label}: {name} {old!r} -> {value!r}")
            setattr(row, name, value)


# How sync_customer and the bulk reconcile list checkout sessions.
SESSION_EXPAND = ("data.line_items",)


def _paid_period(session: Session, checkout: dict) -> tuple[bool, PlanPeriod | None]:
    """The plan period a payment-mode checkout paid for, by the price of its line item; (False, None)
    when the session was read without its line items (an event's copy), so nothing is decided.

    Never by `metadata.period_id`: anyone with dashboard access (or a session made behind the app's
    back) can write it, so a $1 price with Business's period_id would buy Business. Metadata that
    disagrees with the price is only logged."""
    items = checkout.get("line_items")
    if not isinstance(items, dict):
        return False, None
    prices = {(item.get("price") or {}).get("id"): item.get("price") or {} for item in items.get("data") or []}
    period = None
    if len(prices) == 1:
        period = period_for_price(session, next(iter(prices.values())))
    claimed = str((checkout.get("metadata") or {}).get("period_id") or "")
    if claimed and (period is None or claimed != str(period.id)):
        log.warning("checkout %s: metadata period_id %r ignored; the price paid grants %s",
                    checkout["id"], claimed[:40], period.id if period else "no plan")
    return True, period


def _upsert(session: Session, model, stripe_id: str, changes: list[str], label: str, **defaults):
    row = session.exec(select(model).where(model.stripe_id == stripe_id)).first()
    if row is None:
        row = model(stripe_id=stripe_id, **defaults)
        changes.append(f"{label}: new")
    return row


def _sync_subscription(session: Session, org_id: int, sub: dict, changes: list[str]) -> None:
    item = sub["items"]["data"][0] if sub["items"]["data"] else {}
    price_id = (item.get("price") or {}).get("id")
    period = period_for_price(session, item.get("price"))
    label = f"subscription {sub['id']}"
    row = _upsert(session, OrgSubscription, sub["id"], changes, label, org_id=org_id, status=sub["status"])
    scheduled_period, scheduled_at, schedule_id = _scheduled_change(session, sub, item)
    paused = sub["status"] == S.PAUSED.value or sub.get("pause_collection") is not None
    pause = sub.get("pause_collection") or {}
    _set(
        row, changes, label,
        org_id=org_id,
        one_off=False,
        plan_period_id=period.id if period else None,
        stripe_price_id=price_id,
        status=sub["status"],
        current_period_start=_from_epoch(item.get("current_period_start")),
        current_period_end=_from_epoch(item.get("current_period_end")),
        cancel_at_period_end=bool(sub.get("cancel_at_period_end")),
        cancel_at=_from_epoch(sub.get("cancel_at")),
        canceled_at=_from_epoch(sub.get("canceled_at")),
        ended_at=_from_epoch(sub.get("ended_at")),
        trial_end=_from_epoch(sub.get("trial_end")),
        paused=paused,
        auto_renew=sub["status"] not in ENDED_STATUSES and not set_to_cancel(sub.get("cancel_at_period_end"), sub.get("cancel_at")),
        started_at=_from_epoch(sub.get("start_date")),
        stripe_schedule_id=schedule_id,
        quantity=item.get("quantity") or 1,
        scheduled_period_id=scheduled_period.id if scheduled_period else None,
        scheduled_change_at=scheduled_at,
        pause_resumes_at=_from_epoch(pause.get("resumes_at")),
        **profile.discount_columns(sub),
    )
    row.updated_at = utcnow()
    session.add(row)


def _scheduled_change(session: Session, sub: dict, item: dict) -> tuple[PlanPeriod | None, datetime | None, str | None]:
    """The plan period a live schedule switches to next, and when (None when nothing is scheduled:
    also in a schedule's last phase, which Stripe keeps until that phase ends)."""
    schedule = schedules.live(sub.get("schedule"))
    if schedule is None:
        return None, None, None
    for phase in schedules.waiting(schedule):
        if phase.get("items"):
            price = phase["items"][0].get("price")
            price_id = price["id"] if isinstance(price, dict) else price
            if price_id != (item.get("price") or {}).get("id"):
                return period_for_price(session, price), _from_epoch(phase["start_date"]), schedule["id"]
    return None, None, schedule["id"]


def _invoice_status(invoice: dict, refunded: bool, disputed: bool = False) -> str | None:
    status = invoice["status"]
    if status == "paid":
        return (PaymentStatus.REFUNDED if refunded else PaymentStatus.DISPUTED if disputed else PaymentStatus.COMPLETED).value
    if status == "void":
        return PaymentStatus.CANCELLED.value
    if status == "uncollectible" or (status == "open" and invoice.get("attempt_count", 0) > 0):
        return PaymentStatus.FAILED.value
    return None  # draft, or open and not yet attempted: nothing has happened to the money


def _invoice_description(invoice: dict) -> str:
    lines = (invoice.get("lines") or {}).get("data") or []
    return invoice.get("description") or (lines[0].get("description") if lines else "") or "Invoice"


def _invoice_parts(invoice: dict) -> dict:
    """What an invoice's amount is made of: subtotal, discounts, tax."""
    return {
        "subtotal": invoice.get("subtotal"),
        "discount": sum(x["amount"] for x in invoice.get("total_discount_amounts") or []),
        "tax": sum(x["amount"] for x in invoice.get("total_taxes") or []),
    }


def _checkout_parts(checkout: dict) -> dict:
    details = checkout.get("total_details") or {}
    return {"subtotal": checkout.get("amount_subtotal"), "discount": details.get("amount_discount") or 0,
            "tax": details.get("amount_tax") or 0}


def _expired_at(session: Session, checkout: dict) -> datetime:
    """When a checkout expired: its `expires_at`, or when we first saw it expired if it was expired
    early (Stripe keeps the planned `expires_at`); never a time still to come."""
    planned = _from_epoch(checkout.get("expires_at")) or _from_epoch(checkout["created"])
    seen = session.exec(select(Payment.created).where(Payment.stripe_id == checkout["id"])).first()
    return min(planned, seen or utcnow())


def _plan_label(session: Session, sub: dict) -> str:
    items = sub["items"]["data"]
    period = period_for_price(session, items[0].get("price")) if items else None
    if period is None:
        return ""
    return plan_label(period.plan.name, period.period_type)


def _sync_cancellation(session: Session, org_id: int, sub: dict, changes: list[str]) -> None:
    """A canceled (or canceling) subscription's CANCELLED entry in the history; none once undone."""
    entry = history.cancellation(sub, _plan_label(session, sub))
    if entry is not None:
        _sync_payment(session, org_id, sub["id"], PaymentStatus.CANCELLED.value, changes, **entry)
        return
    row = session.exec(select(Payment).where(Payment.stripe_id == sub["id"])).first()
    if row is not None:
        changes.append(f"payment {sub['id']}: cancellation undone")
        session.delete(row)


def _note_retention_declined(session: Session, org_id: int, sub: dict, changes: list[str]) -> None:
    """Canceled on request after the portal's cancel flow showed the offer: declined for good (Reactivate
    later clears Stripe's canceled_at, not this). Noted once; the app's own cancel flow notes it too.
    Stripe ending it for failed payments, or our undo of a duplicate purchase, declines nothing."""
    details = sub.get("cancellation_details") or {}
    if details.get("reason") != "cancellation_requested" or details.get("comment") == duplicates.REASON:
        return
    offer = session.get(RetentionOffer, org_id)
    canceled_at = _from_epoch(sub.get("canceled_at"))
    if offer is None or offer.offered_at is None or offer.accepted_at or offer.declined_at or canceled_at is None:
        return
    # Stripe's times are whole seconds: a cancellation in the second of the offer came after it.
    if canceled_at >= offer.offered_at.replace(microsecond=0):
        offer.declined_at = canceled_at
        session.add(offer)
        changes.append("retention offer: declined")


def _sync_payment(session: Session, org_id: int, stripe_id: str, status: str, changes: list[str], **values) -> None:
    label = f"payment {stripe_id}"
    row = _upsert(session, Payment, stripe_id, changes, label, org_id=org_id, status=status, amount=0, currency="usd", created=utcnow())
    _set(row, changes, label, org_id=org_id, status=status, **values)
    session.add(row)


def _sync_one_off(session: Session, org_id: int, checkout: dict, charges_by_intent: dict, changes: list[str],
                  undone: bool, lost: bool = False) -> None:
    """A paid (or free) payment-mode checkout is a lifetime purchase, keyed by one_off.key; one refunded,
    charged back (`lost`: its dispute lost), or `undone` (an extra purchase, see undone_purchases), grants nothing."""
    key = one_off.key(checkout)
    charge = charges_by_intent.get(checkout.get("payment_intent"))
    refunded = bool(charge and charge.get("refunded")) or lost
    known, period = _paid_period(session, checkout)
    label = f"lifetime purchase {key}"
    exists = session.exec(select(OrgSubscription.id).where(OrgSubscription.stripe_id == key)).first() is not None
    if not exists and period is None:
        return  # a price that is no plan of ours (or not read yet) grants nothing
    row = _upsert(session, OrgSubscription, key, changes, label, org_id=org_id, status=S.ACTIVE.value, one_off=True)
    if known and period is not None:  # unknown: an event's copy without line items; keep what was read before
        _set(row, changes, label, plan_period_id=period.id, stripe_price_id=period.stripe_price_id)
    _set(
        row, changes, label,
        org_id=org_id, one_off=True,
        status=(S.CANCELED if refunded or undone else S.ACTIVE).value,
        auto_renew=False, cancel_at_period_end=False,
        started_at=_from_epoch(checkout.get("created")),
    )
    row.updated_at = utcnow()
    session.add(row)


def write(session: Session, org_id: int, snap: Snapshot, changes: list[str]) -> bool:
    """Upsert the mirror of one org from a snapshot (sync_customer's and the bulk reconcile's write).
    False, writing nothing, when a snapshot read later was written already (`fence`).

    The emails this change causes (a receipt, a failed payment, ...) go into the outbox in the
    same transaction (billing_app/notifications/billing.py).
    """
    if not fence(session, snap.customer["id"], snap.read_at):
        return False
    was = billing_notices.before(session, org_id, snap)
    for sub in snap.subscriptions:
        _sync_subscription(session, org_id, sub, changes)
        _sync_cancellation(session, org_id, sub, changes)
        _note_retention_declined(session, org_id, sub, changes)
    if snap.has_profile:
        profile.write(session, org_id, snap.customer, snap.subscriptions, snap.preview, changes, preview_read=snap.has_preview)

    for invoice in snap.invoices:
        status = _invoice_status(invoice, invoice["id"] in snap.refunded_invoices, invoice["id"] in snap.disputed_invoices)
        if status is None:
            continue
        paid = invoice["status"] == "paid"
        _sync_payment(
            session, org_id, invoice["id"], status, changes,
            amount=invoice["amount_paid"] if paid else invoice["amount_due"],
            currency=invoice["currency"],
            created=_from_epoch((invoice.get("status_transitions") or {}).get("paid_at")) or _from_epoch(invoice["created"]),
            description=_invoice_description(invoice),
            invoice_url=invoice.get("hosted_invoice_url"),
            pdf_url=invoice.get("invoice_pdf"),
            attempt_count=invoice.get("attempt_count") or 0,
            **_invoice_parts(invoice),
            action_required=invoice["id"] in snap.action_required,
            amount_refunded=snap.invoice_refunds.get(invoice["id"], 0),
        )

    charges_by_intent = one_off.charge_by_intent(snap.charges)
    undone = undone_purchases(session, snap.sessions)
    for checkout in snap.sessions:
        metadata = checkout.get("metadata") or {}
        description = metadata.get("description") or "Checkout"
        if checkout["status"] == "expired":
            _sync_payment(
                session, org_id, checkout["id"], PaymentStatus.EXPIRED.value, changes,
                amount=checkout.get("amount_total") or 0, currency=checkout.get("currency") or "usd",
                created=_expired_at(session, checkout), description=description,
            )
        elif checkout["mode"] == "payment" and checkout["status"] == "complete":
            intent = checkout.get("payment_intent")
            charge = charges_by_intent.get(intent)
            if one_off.paid(checkout):
                key = one_off.key(checkout)
                refunded, was_undone, lost = bool(charge and charge.get("refunded")), key in undone, intent in snap.lost_disputes
                _sync_one_off(session, org_id, checkout, charges_by_intent, changes, was_undone, lost)
                status = (PaymentStatus.REFUNDED if refunded else PaymentStatus.DISPUTED if lost
                          else PaymentStatus.CANCELLED if was_undone and one_off.took_no_payment(key) else PaymentStatus.COMPLETED).value
            elif awaiting_payment(checkout) and intent and intent not in snap.failed_payments:
                status = PaymentStatus.PENDING.value  # a delayed payment still settling: held (payments.awaiting_purchase)
            else:
                status = PaymentStatus.FAILED.value  # the delayed payment failed: nothing received, nothing held
            _sync_payment(
                session, org_id, one_off.key(checkout), status, changes,
                amount=checkout.get("amount_total") or 0, currency=checkout.get("currency") or "usd",
                created=_from_epoch(charge["created"]) if charge else _from_epoch(checkout["created"]),
                description=description, receipt_url=charge.get("receipt_url") if charge else None,
                amount_refunded=(charge.get("amount_refunded") or 0) if charge else 0,
                **_checkout_parts(checkout),
            )
    for payment in unrefunded_duplicate_payments(session, snap):
        _record_failed_refund(session, org_id, snap.customer["id"], payment, changes)
    billing_notices.derive(session, org_id, snap, was)
    return True


def sync_customer(customer_id: str) -> SyncReport:
    """Make the mirror of one Stripe customer equal to Stripe's state. Returns what changed.

    A purchase beyond the org's first (a second charge) is canceled and refunded, and a downgrade
    set aside for an upgrade that lapsed is put back (billing/set_aside.py); either way the customer
    is read again so the mirror shows the outcome (billing/duplicates.py). A set-aside change that cannot
    be judged now (`set_aside.Deferred`) is noted in the report's `deferred`: the webhook worker retries.
    """
    client = gateway.stripe_client()
    report = _sync_snapshot(customer_id, _read(client, customer_id))
    if report.org_id is None:
        return report
    try:
        put_back = set_aside.judge_lapsed(client, report.org_id, report.snapshot.subscriptions)
    except set_aside.Deferred as deferred:  # the rest of the sync still stands, and is done
        put_back, report.deferred = False, str(deferred)
    if put_back:
        # A downgrade put back after the upgrade it was set aside for lapsed: the mirror shows it.
        restored = _sync_snapshot(customer_id, _read(client, customer_id))
        restored.changes = report.changes + ["scheduled change put back (its upgrade lapsed)"] + restored.changes
        report = restored
    snap = report.snapshot
    # Never act at Stripe on old reads: a stale snapshot's extras are the newer sync's to judge.
    extras = [] if report.stale else extra_purchases(snap)
    if extras:
        extras = _still_extra(client, snap)
    if not extras:
        return report
    for extra in extras:
        duplicates.undo(client, extra, snap.invoices)
        _record_duplicate(customer_id, report.org_id, extra)
    repaired = _sync_snapshot(customer_id, _read(client, customer_id))
    repaired.changes = report.changes + [f"{e.kind} {e.stripe_id}: {_undone(e)} ({duplicates.REASON})" for e in extras] + repaired.changes
    repaired.deferred = report.deferred
    return repaired


def _still_extra(client, snap: Snapshot) -> list[duplicates.ExtraPurchase]:
    """The snapshot's extra purchases that are extra still: its subscriptions and charges read again,
    as the reads took a while and one canceled or refunded meanwhile (the extra or the kept one) is
    no plan held. Only the purchases the snapshot saw: one made since can only add extras, which
    its own events' syncs undo; a paid checkout stays paid (a refund shows in its charge)."""
    customer_id = snap.customer["id"]
    seen = {s["id"] for s in snap.subscriptions}
    subscriptions = [s for s in gateway.list_all(client.v1.subscriptions.list, {"customer": customer_id, "status": "all"})
                     if s["id"] in seen]
    charges = gateway.list_all(client.v1.charges.list, {"customer": customer_id})
    return extra_purchases(dataclasses.replace(snap, subscriptions=subscriptions, charges=charges))


def _undone(extra: duplicates.ExtraPurchase) -> str:
    """What undoing it did: a free extra (keyed by its session) had nothing to cancel or refund."""
    if extra.kind != "subscription" and one_off.took_no_payment(extra.stripe_id):
        return "undone (free: nothing to refund)"
    return "canceled and refunded"


def _record_duplicate(customer_id: str, org_id: int, extra: duplicates.ExtraPurchase) -> None:
    """Say why in the event log, beside Stripe's events (one row per undone purchase). Dated by the
    database's clock, as a snapshot's read_at is: a snapshot read later sees the undo's refunds."""
    now = read_clock()
    payload = json.dumps({"org_id": org_id, "kind": extra.kind, "id": extra.stripe_id, "kept": extra.kept, "reason": duplicates.REASON})
    with session_scope() as session:
        insert_if_absent(
            session, WebhookEvent.__table__, ["stripe_event_id"],
            stripe_event_id=_duplicate_event_id(extra.stripe_id), type=DUPLICATE_EVENT_TYPE, customer_id=customer_id,
            received_at=now, processed_at=now, state="processed", attempts=0, payload=payload,
        )


# The app's own entry in the event log (not a Stripe type; never re-synced).
DUPLICATE_EVENT_TYPE = "app.duplicate_purchase_undone"


def _duplicate_event_id(stripe_id: str) -> str:
    return f"app_duplicate_{stripe_id}"


def _undone_at(session: Session, purchases: list[str]) -> dict[str, datetime]:
    """Which of these purchases (sub_... or a lifetime key) were undone as extra ones, and when our
    event-log row says so."""
    if not purchases:
        return {}
    by_event = {_duplicate_event_id(p): p for p in purchases}
    rows = session.exec(select(WebhookEvent.stripe_event_id, WebhookEvent.received_at).where(
        WebhookEvent.type == DUPLICATE_EVENT_TYPE, WebhookEvent.stripe_event_id.in_(list(by_event)))).all()
    return {by_event[event_id]: at for event_id, at in rows}


def undone_purchases(session: Session, sessions: list[dict]) -> set[str]:
    """The lifetime purchases undone as extra ones: our event-log row says they grant nothing, as
    Stripe may not. A free one had nothing to refund; a paid one's refund may fail later (a closed
    card: refund.failed), and undoing it again would only replay the first refund's answer. Its
    money is then for an operator to return (unrefunded_duplicate_payments), never a second plan held."""
    return set(_undone_at(session, [one_off.key(s) for s in sessions if one_off.paid(s)]))


@dataclass(frozen=True)
class UnrefundedPayment:
    purchase: str  # the purchase undone as an extra one (sub_... or a lifetime key)
    payment: str  # what it charged: an invoice (in_...) or the lifetime purchase's payment intent
    amount: int
    currency: str


def unrefunded_duplicate_payments(session: Session, snap: Snapshot) -> list[UnrefundedPayment]:
    """The payments of purchases undone as extra ones that are not refunded, in a snapshot read after
    the undo: it refunded every one of them before its event-log row was written, so each is a refund
    that failed later at Stripe (refund.failed, a closed card). The customer paid for a plan not held;
    undoing it again would only replay the first refund's answer: an operator must return the money.
    A snapshot read before the undo's row may predate its refunds: it judges nothing."""
    undone_at = _undone_at(session, [s["id"] for s in snap.subscriptions]
                           + [one_off.key(s) for s in snap.sessions if one_off.paid(s)])
    undone = {purchase for purchase, at in undone_at.items() if at < snap.read_at}
    left = [UnrefundedPayment(duplicates.subscription_of(i), i["id"], i["amount_paid"], i["currency"])
            for i in snap.invoices
            if duplicates.subscription_of(i) in undone and i["status"] == "paid" and i["amount_paid"] > 0
            and i["id"] not in snap.refunded_invoices]
    charges = one_off.charge_by_intent(snap.charges)  # a paid lifetime purchase's key is its payment intent
    left += [UnrefundedPayment(key, key, charges[key]["amount"], charges[key]["currency"])
             for key in sorted(undone) if key in charges and not charges[key].get("refunded")]
    return left


def _record_failed_refund(session: Session, org_id: int, customer_id: str, unrefunded: UnrefundedPayment,
                          changes: list[str]) -> None:
    """Tell an operator, once: an event-log row per payment left unrefunded (beside the undo's own row,
    which says "canceled and refunded"), and an error logged as it is first written."""
    now = utcnow()
    payload = json.dumps({"org_id": org_id, **dataclasses.asdict(unrefunded), "reason": REFUND_FAILED_REASON})
    first = insert_if_absent(
        session, WebhookEvent.__table__, ["stripe_event_id"],
        stripe_event_id=f"app_duplicate_refund_failed_{unrefunded.payment}", type=DUPLICATE_REFUND_FAILED_EVENT_TYPE,
        customer_id=customer_id, received_at=now, processed_at=now, state="processed", attempts=0, payload=payload,
    )
    if first:
        changes.append(f"payment {unrefunded.payment}: {REFUND_FAILED_REASON}")
        log.error("duplicate purchase %s of org %s: its refund of %s failed at Stripe; refund it by hand",
                  unrefunded.purchase, org_id, unrefunded.payment)


DUPLICATE_REFUND_FAILED_EVENT_TYPE = "app.duplicate_refund_failed"
REFUND_FAILED_REASON = "the refund of a purchase undone as a duplicate failed at Stripe; refund it by hand"


def extra_purchases(snap: Snapshot) -> list[duplicates.ExtraPurchase]:
    """The purchases in this snapshot beyond the one plan the org keeps (billing/duplicates.py)."""
    with session_scope() as session:
        undone = undone_purchases(session, snap.sessions)
    # A lifetime purchase charged back (its dispute lost) is held no more, like one refunded.
    return duplicates.find_extra_purchases(snap.subscriptions, snap.sessions, snap.charges, undone | snap.lost_disputes)


def _sync_snapshot(customer_id: str, snap: Snapshot) -> SyncReport:
    report = SyncReport(customer_id, snapshot=snap)
    for attempt in range(2):
        try:
            with session_scope() as session:
                report.org_id = _org_for(session, snap.customer)
                if report.org_id is None:
                    report.changes.append("customer belongs to no organization here; ignored")
                    return report
                changes: list[str] = []
                report.stale = not write(session, report.org_id, snap, changes)
            report.changes = changes
            return report
        except IntegrityError:
            # A concurrent sync of the same customer inserted the same row first; the retry updates it.
            if attempt == 1:
                raise
    return report


def resync_after_change(customer_id: str) -> None:
    """Refresh the mirror right after an action succeeded at Stripe.

    If this read fails, the action still happened; the webhook Stripe sends for it
    (or `reconcile`) brings the mirror up to date, so the failure is only logged.
    """
    try:
        sync_customer(customer_id)
    except gateway.StripeFailure as failure:
        log.warning("sync after a change failed for %s (the webhook will catch up): %s", customer_id, failure.message)


def customers_to_reconcile(session: Session, org_id: int | None = None) -> list[str]:
    query = select(BillingCustomer.stripe_customer_id).order_by(BillingCustomer.org_id)
    if org_id is not None:
        query = query.where(BillingCustomer.org_id == org_id)
    return list(session.exec(query).all())
