"""One handler per Stripe event type: which customer does this event say changed?

Stripe is the source of truth, so no handler trusts the state inside the payload.
Each one only names the Stripe customer whose mirror must be re-read; the worker
then calls `sync_customer` once for all the stored events of that customer (a burst
of `invoice.paid`, `customer.subscription.updated`, ... costs one sync). Duplicate and
out-of-order deliveries are therefore harmless.

A type missing from `HANDLERS` is stored and ignored (answered 200, marked processed).
"""

from __future__ import annotations

from collections.abc import Callable

Handler = Callable[[dict], "str | None"]


def _customer_id(obj: dict) -> str | None:
    """The `customer` field (an id, or an expanded customer), or the id of a customer object."""
    customer = obj.get("id") if obj.get("object") == "customer" else obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    # A Stripe id is short; anything else is not a customer we could sync (nor store: 255 chars).
    return customer if isinstance(customer, str) and 0 < len(customer) <= 255 else None


# The object each handled type carries in data.object decides where the customer is; the
# handlers stay separate per object kind so a type with its own rule gets its own function.

def checkout_session(obj: dict) -> str | None:
    """checkout.session.*: the session's customer (absent only for guest payments, which we never create)."""
    return _customer_id(obj)


def subscription(obj: dict) -> str | None:
    """customer.subscription.*: the subscription's customer."""
    return _customer_id(obj)


def invoice(obj: dict) -> str | None:
    """invoice.*: the invoice's customer (its payments and the subscription status both live there)."""
    return _customer_id(obj)


def charge(obj: dict) -> str | None:
    """charge.refunded: the charge's customer (a refunded lifetime purchase or invoice)."""
    return _customer_id(obj)


HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": checkout_session,
    "checkout.session.async_payment_succeeded": checkout_session,
    "checkout.session.async_payment_failed": checkout_session,
    "checkout.session.expired": checkout_session,
    "customer.subscription.created": subscription,
    "customer.subscription.updated": subscription,
    "customer.subscription.deleted": subscription,
    "customer.subscription.paused": subscription,
    "customer.subscription.resumed": subscription,
    "customer.subscription.trial_will_end": subscription,
    "invoice.paid": invoice,
    "invoice.payment_failed": invoice,
    "invoice.payment_action_required": invoice,
    "charge.refunded": charge,
}


def is_handled(event_type: str) -> bool:
    return event_type in HANDLERS


def customer_to_sync(event: dict) -> str | None:
    """The Stripe customer this event asks us to re-read, or None (unknown type, or no customer)."""
    handler = HANDLERS.get(event.get("type", ""))
    if handler is None:
        return None
    obj = (event.get("data") or {}).get("object")
    return handler(obj) if isinstance(obj, dict) else None
