"""The org's Stripe customer: created lazily, exactly once, and tied to the org only by our row."""

from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from billing_app.billing import gateway, idempotency
from billing_app.db import session_scope
from billing_app.models import AppMeta, BillingCustomer, Organization

DEPLOYMENT_KEY = "deployment_id"


def deployment_id() -> str:
    """This deployment's id: made once per database, the first time anything asks.

    Part of every idempotency key for customer creation, so two deployments (two databases)
    sharing one Stripe account never get each other's customer for "org 1".
    """
    with session_scope() as session:
        row = session.get(AppMeta, DEPLOYMENT_KEY)
        if row is not None:
            return row.value
    try:
        with session_scope() as session:
            session.add(AppMeta(key=DEPLOYMENT_KEY, value=uuid.uuid4().hex[:16]))
    except IntegrityError:
        pass  # another process made it first; theirs stands
    with session_scope() as session:
        return session.get(AppMeta, DEPLOYMENT_KEY).value


def customer_id_for(org_id: int) -> str | None:
    with session_scope() as session:
        row = session.exec(select(BillingCustomer).where(BillingCustomer.org_id == org_id)).first()
        return row.stripe_customer_id if row else None


def ensure_customer(org_id: int, email: str) -> str:
    """The org's Stripe customer id, creating the customer on first use.

    Two first purchases racing both ask Stripe with the same idempotency key, so Stripe
    makes one customer; the unique row then settles the race locally. The metadata says which
    org and deployment made it, for people reading the Stripe dashboard; the app never trusts it
    (billing/sync.py `_org_for`).
    """
    existing = customer_id_for(org_id)
    if existing:
        return existing
    with session_scope() as session:
        org_name = session.get(Organization, org_id).name
    deployment = deployment_id()
    client = gateway.stripe_client()
    # A 500 that made the customer after all leaves that one unused (nothing is billed on it).
    customer = idempotency.call_once(
        client.v1.customers.create,
        params={"name": org_name, "email": email, "metadata": {"org_id": str(org_id), "deployment_id": deployment}},
        key=f"billing-customer-{deployment}-org-{org_id}",
    )
    try:
        with session_scope() as session:
            session.add(BillingCustomer(org_id=org_id, stripe_customer_id=customer["id"]))
    except IntegrityError:
        pass  # the other racer stored it first
    return customer_id_for(org_id)
