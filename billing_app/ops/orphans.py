"""Orphans in the console: Stripe customers no organization is tied to, and attaching one on purpose.

The record, the listing and the attach itself are billing/orphans.py's (the same as `python -m
billing_app orphans`): a sync meets orphans one at a time, the bulk reconcile records every one
Stripe lists. Nothing ties a customer to an org on its own, not even an `org_id` in its metadata.
The console's Attach adds what an operator's click needs: Stripe's word that the customer exists,
a line in the audit log, and a sync so the org's mirror shows the customer's billing at once.
"""

from __future__ import annotations

from billing_app.billing import gateway
from billing_app.billing import orphans as billing_orphans
from billing_app.billing.orphans import Orphan, list_orphans
from billing_app.billing.sync import sync_customer
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.ops import audit
from billing_app.ops.access import Operator

__all__ = ["Orphan", "attach_orphan", "list_orphans"]


def attach_orphan(operator: Operator, customer_id: str, org_id: int) -> list[str]:
    """Tie a Stripe customer to an org that has none, then sync it. Returns what the sync changed."""
    customer_id = (customer_id or "").strip()
    # Stripe's word that the customer exists (a deleted one cannot be attached), before any write.
    try:
        customer = gateway.call(gateway.stripe_client().v1.customers.retrieve, customer_id) if customer_id else {}
    except gateway.StripeFailure as failure:
        if failure.status != 404:
            raise
        customer = {}
    if not customer or customer.get("deleted"):
        raise AppError(ErrorCode.NOT_FOUND, f"Stripe has no customer {customer_id!r}.")
    billing_orphans.attach_orphan(customer_id, org_id)  # refuses a taken org or customer
    with session_scope() as session:
        audit.record(session, operator, audit.ATTACH_ORPHAN, customer_id, f"attached to org:{org_id}")
    return sync_customer(customer_id).changes
