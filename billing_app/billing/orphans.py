"""Stripe customers that belong to no organization here, and the operator's way to attach one.

Stripe metadata is writable by anyone with access to the Stripe account, so it never decides
which organization a customer belongs to: only our own `BillingCustomer` row does. A customer a
sync meets without such a row is recorded here (with what its metadata claimed, for the
operator's information) and ignored. `python -m billing_app orphans` lists them; an operator who
has checked one attaches it explicitly (`--attach cus_... --org ID`), then it syncs like any other.
The operator console (a later issue) calls `list_orphans` and `attach_orphan` too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from billing_app.db import insert_if_absent, session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import BillingCustomer, Organization, OrphanCustomer, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Orphan:
    customer_id: str
    email: str
    name: str
    claimed_org_id: str  # what the customer's metadata says; never trusted
    first_seen_at: datetime
    last_seen_at: datetime


def record_orphan(session: Session, customer: dict) -> None:
    """Note a customer no organization here owns (idempotent; a later sighting updates the times)."""
    metadata = customer.get("metadata") or {}
    values = dict(
        email=str(customer.get("email") or "")[:254],
        name=str(customer.get("name") or "")[:255],
        claimed_org_id=str(metadata.get("org_id") or "")[:64],
    )
    now = utcnow()
    insert_if_absent(session, OrphanCustomer.__table__, ["stripe_customer_id"],
                     stripe_customer_id=customer["id"], first_seen_at=now, last_seen_at=now, **values)
    row = session.exec(select(OrphanCustomer).where(OrphanCustomer.stripe_customer_id == customer["id"])).one()
    row.last_seen_at = now
    for name, value in values.items():
        setattr(row, name, value)
    session.add(row)
    session.flush()
    log.warning(
        "Stripe customer %s belongs to no organization here (metadata claims org %r); ignored. "
        "List with `python -m billing_app orphans`.", customer["id"], values["claimed_org_id"],
    )


def list_orphans() -> list[Orphan]:
    """Customers waiting for an operator, oldest first (attached ones and ones now owned are left out)."""
    with session_scope() as session:
        owned = select(BillingCustomer.stripe_customer_id)
        rows = session.exec(
            select(OrphanCustomer)
            .where(OrphanCustomer.attached_org_id == None)  # noqa: E711
            .where(OrphanCustomer.stripe_customer_id.not_in(owned))
            .order_by(OrphanCustomer.first_seen_at, OrphanCustomer.id)
        ).all()
        return [Orphan(r.stripe_customer_id, r.email, r.name, r.claimed_org_id, r.first_seen_at, r.last_seen_at) for r in rows]


def attach_orphan(customer_id: str, org_id: int) -> None:
    """Make `customer_id` the billing customer of `org_id` (an operator's explicit decision).

    Refused when the organization does not exist or already has a customer, or the customer
    already belongs to an organization. The caller syncs it afterwards (the CLI does).
    """
    with session_scope() as session:
        if session.get(Organization, org_id) is None:
            raise AppError(ErrorCode.NOT_FOUND, f"No organization {org_id}.")
        owner = session.exec(select(BillingCustomer).where(BillingCustomer.stripe_customer_id == customer_id)).first()
        if owner is not None:
            raise AppError(ErrorCode.VALIDATION_ERROR, f"{customer_id} already belongs to organization {owner.org_id}.")
        existing = session.exec(select(BillingCustomer).where(BillingCustomer.org_id == org_id)).first()
        if existing is not None:
            raise AppError(
                ErrorCode.VALIDATION_ERROR,
                f"Organization {org_id} already has the customer {existing.stripe_customer_id}; an organization has one.",
            )
        session.add(BillingCustomer(org_id=org_id, stripe_customer_id=customer_id))
        try:
            session.flush()
        except IntegrityError:
            raise AppError(ErrorCode.VALIDATION_ERROR, "Someone attached a customer at the same moment; list again.") from None
        row = session.exec(select(OrphanCustomer).where(OrphanCustomer.stripe_customer_id == customer_id)).first()
        if row is not None:
            row.attached_org_id, row.attached_at = org_id, utcnow()
            session.add(row)
    log.warning("Stripe customer %s attached to organization %s by an operator", customer_id, org_id)
