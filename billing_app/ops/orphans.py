"""Orphans: Stripe customers no organization is tied to, and attaching one on purpose.

Kept in the `orphancustomer` table (migration 0007). The bulk reconcile records every customer
Stripe lists that has no BillingCustomer row (`record_orphan`); the console lists those not yet
attached (`list_orphans`) and an operator attaches one explicitly (`attach_orphan`: checked
against Stripe, audited, then synced). Nothing ties a customer to an org on its own, not even an
`org_id` in its metadata (shown as a claim, never acted on).

The security work on main is adding billing/orphans.py with the same three functions over the
same table (and `python -m billing_app orphans`); once it lands, these should delegate to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from billing_app.billing import gateway
from billing_app.billing.sync import sync_customer
from billing_app.db import insert_if_absent, session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import BillingCustomer, Organization, OrphanCustomer, utcnow
from billing_app.ops import audit
from billing_app.ops.access import Operator


@dataclass(frozen=True)
class Orphan:
    customer_id: str
    email: str
    name: str
    claimed_org_id: str  # what the customer's metadata says; never trusted
    first_seen_at: datetime
    last_seen_at: datetime


def record_orphan(session: Session, customer: dict) -> None:
    """Note a customer no organization here holds (idempotent; a later sighting updates it)."""
    metadata = customer.get("metadata") or {}
    values = dict(email=str(customer.get("email") or "")[:254], name=str(customer.get("name") or "")[:255],
                  claimed_org_id=str(metadata.get("org_id") or "")[:64])
    now = utcnow()
    insert_if_absent(session, OrphanCustomer.__table__, ["stripe_customer_id"],
                     stripe_customer_id=customer["id"], first_seen_at=now, last_seen_at=now, **values)
    row = session.exec(select(OrphanCustomer).where(OrphanCustomer.stripe_customer_id == customer["id"])).one()
    row.last_seen_at = now
    for name, value in values.items():
        setattr(row, name, value)
    session.add(row)


def list_orphans() -> list[Orphan]:
    """Customers waiting for an operator, newest sighting first (attached and now-held ones left out)."""
    with session_scope() as session:
        held = select(BillingCustomer.stripe_customer_id)
        rows = session.exec(
            select(OrphanCustomer).where(OrphanCustomer.attached_org_id == None)  # noqa: E711
            .where(OrphanCustomer.stripe_customer_id.not_in(held))
            .order_by(OrphanCustomer.last_seen_at.desc(), OrphanCustomer.id.desc()).limit(1000)
        ).all()
        return [Orphan(r.stripe_customer_id, r.email, r.name, r.claimed_org_id, r.first_seen_at, r.last_seen_at) for r in rows]


def attach_orphan(operator: Operator, customer_id: str, org_id: int) -> list[str]:
    """Tie a Stripe customer to an org that has none, then sync it. Returns what the sync changed."""
    customer_id = (customer_id or "").strip()
    with session_scope() as session:
        if session.get(Organization, org_id) is None:
            raise AppError(ErrorCode.NOT_FOUND, f"No organization {org_id}.")
        owner = session.exec(select(BillingCustomer).where(BillingCustomer.stripe_customer_id == customer_id)).first()
        if owner is not None:
            raise AppError(ErrorCode.VALIDATION_ERROR, f"{customer_id} is already tied to organization {owner.org_id}.")
        if session.exec(select(BillingCustomer).where(BillingCustomer.org_id == org_id)).first() is not None:
            raise AppError(ErrorCode.VALIDATION_ERROR, f"Organization {org_id} already has a Stripe customer.")
    # Stripe's word that the customer exists (a deleted one cannot be attached), before any write.
    try:
        customer = gateway.call(gateway.stripe_client().v1.customers.retrieve, customer_id) if customer_id else {}
    except gateway.StripeFailure as failure:
        if failure.status != 404:
            raise
        customer = {}
    if not customer or customer.get("deleted"):
        raise AppError(ErrorCode.NOT_FOUND, f"Stripe has no customer {customer_id!r}.")
    try:
        with session_scope() as session:
            session.add(BillingCustomer(org_id=org_id, stripe_customer_id=customer_id))
            session.flush()
            row = session.exec(select(OrphanCustomer).where(OrphanCustomer.stripe_customer_id == customer_id)).first()
            if row is not None:
                row.attached_org_id, row.attached_at = org_id, utcnow()
                session.add(row)
            audit.record(session, operator, audit.ATTACH_ORPHAN, customer_id, f"attached to org:{org_id}")
    except IntegrityError:  # another attach (or a first purchase) tied one of them first
        raise AppError(ErrorCode.VALIDATION_ERROR, "That organization or customer was just tied to another one.") from None
    return sync_customer(customer_id).changes
