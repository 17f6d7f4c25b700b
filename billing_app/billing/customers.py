"""The org's Stripe customer: created lazily, exactly once."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from billing_app.billing import gateway
from billing_app.db import session_scope
from billing_app.models import BillingCustomer, Organization


def customer_id_for(org_id: int) -> str | None:
    with session_scope() as session:
        row = session.exec(select(BillingCustomer).where(BillingCustomer.org_id == org_id)).first()
        return row.stripe_customer_id if row else None


def ensure_customer(org_id: int, email: str) -> str:
    """The org's Stripe customer id, creating the customer on first use.

    Two first purchases racing both ask Stripe with the same idempotency key, so Stripe
    makes one customer; the unique row then settles the race locally.
    """
    existing = customer_id_for(org_id)
    if existing:
        return existing
    with session_scope() as session:
        org_name = session.get(Organization, org_id).name
    client = gateway.stripe_client()
    customer = gateway.call(
        client.v1.customers.create,
        params={"name": org_name, "email": email, "metadata": {"org_id": str(org_id)}},
        options={"idempotency_key": f"billing-customer-org-{org_id}"},
    )
    try:
        with session_scope() as session:
            session.add(BillingCustomer(org_id=org_id, stripe_customer_id=customer["id"]))
    except IntegrityError:
        pass  # the other racer stored it first
    return customer_id_for(org_id)
