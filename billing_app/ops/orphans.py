"""Orphans: Stripe customers no organization is tied to.

The bulk reconcile lists every customer at Stripe and records those with no BillingCustomer
row (`stripeorphan`). Nothing ties one to an org on its own, not even an `org_id` in its
metadata (anyone with dashboard access can write that): an operator attaches it on purpose,
which is audited, and the org's mirror is then synced from Stripe.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from billing_app.billing import gateway
from billing_app.billing.sync import sync_customer
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import BillingCustomer, Organization, StripeOrphan
from billing_app.ops import audit
from billing_app.ops.access import Operator


@dataclass
class Orphan:
    customer_id: str = ""
    email: str = ""
    name: str = ""
    created: datetime | None = None
    live_subscriptions: int = 0
    metadata_org_id: str = ""  # a hint only; never acted on
    discovered_at: datetime | None = None


def list_orphans(session: Session, limit: int = 500) -> list[Orphan]:
    rows = session.exec(select(StripeOrphan).order_by(StripeOrphan.created.desc(), StripeOrphan.id.desc()).limit(limit)).all()
    return [Orphan(r.stripe_customer_id, r.email, r.name, r.created, r.subscriptions, r.metadata_org_id, r.discovered_at) for r in rows]


def attach_orphan(operator: Operator, customer_id: str, org_id: int) -> list[str]:
    """Tie a Stripe customer to an org that has none, then sync it. Returns what the sync changed."""
    customer_id = (customer_id or "").strip()
    with session_scope() as session:
        if session.get(Organization, org_id) is None:
            raise AppError(ErrorCode.NOT_FOUND, f"No organization {org_id}.")
        if session.exec(select(BillingCustomer).where(BillingCustomer.org_id == org_id)).first() is not None:
            raise AppError(ErrorCode.VALIDATION_ERROR, f"Organization {org_id} already has a Stripe customer.")
        if session.exec(select(BillingCustomer).where(BillingCustomer.stripe_customer_id == customer_id)).first() is not None:
            raise AppError(ErrorCode.VALIDATION_ERROR, f"{customer_id} is already tied to an organization.")
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
            orphan = session.exec(select(StripeOrphan).where(StripeOrphan.stripe_customer_id == customer_id)).first()
            if orphan is not None:
                session.delete(orphan)
            audit.record(session, operator, audit.ATTACH_ORPHAN, customer_id, f"attached to org:{org_id}")
    except IntegrityError:  # another attach (or a first purchase) tied one of them first
        raise AppError(ErrorCode.VALIDATION_ERROR, "That organization or customer was just tied to another one.") from None
    return sync_customer(customer_id).changes
