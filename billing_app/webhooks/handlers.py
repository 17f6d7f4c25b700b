"""Which Stripe events make us re-read a customer, and which customer.

Stripe is the source of truth, so nothing here trusts the state inside the payload.
An event of a type in `RESYNC_EVENT_TYPES` only names the Stripe customer whose mirror
must be re-read (`customer_of` its data.object); the worker then calls `sync_customer`
once for all the stored events of that customer (a burst of `invoice.paid`,
`customer.subscription.updated`, ... costs one sync). Duplicate and out-of-order
deliveries are therefore harmless.

Any other type is stored and ignored (answered 200, marked processed).
"""

from __future__ import annotations

# Every one of these carries in data.object a checkout session, a subscription, a subscription
# schedule, an invoice, a charge, a refund, a discount, a tax ID or a payment method, each naming its
# customer in the same `customer` field (a detached payment method: in previous_attributes), or the
# customer itself, or a dispute, which names only its charge (tests/webhooks checks the names against
# the Stripe SDK's own list of event types).
# The customer's own events keep the dashboard's billing details, card, tax IDs and discounts current
# (billing/profile.py).
RESYNC_EVENT_TYPES = frozenset({
    "customer.updated",
    "customer.tax_id.created",
    "customer.tax_id.updated",
    "customer.tax_id.deleted",
    "customer.discount.created",
    "customer.discount.updated",
    "customer.discount.deleted",
    "payment_method.attached",
    # The card's new expiry or billing details (edited through the API, or by the card network's account updater).
    "payment_method.updated",
    "payment_method.automatically_updated",
    # The card the dashboard shows may be the one removed (it was the subscription's default).
    "payment_method.detached",
    "invoice.voided",
    "invoice.marked_uncollectible",
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "customer.subscription.trial_will_end",
    "customer.subscription.pending_update_applied",
    "customer.subscription.pending_update_expired",
    # A scheduled plan change edited, released or ended at Stripe (Dashboard, API) sends only these:
    # the mirror's "changes to <plan> on <date>" comes from the subscription's schedule (billing/sync.py).
    "subscription_schedule.created",
    "subscription_schedule.updated",
    "subscription_schedule.released",
    "subscription_schedule.canceled",
    "subscription_schedule.completed",
    "subscription_schedule.aborted",
    "subscription_schedule.expiring",
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.payment_action_required",
    "charge.refunded",
    # A refund that failed (or was canceled) is no refund: the payment is paid again, a lifetime purchase
    # grants again. Stripe sends these for card refunds too (since 2024-10-28.acacia), and a refund
    # names its charge's customer (since 2026-07-29.dahlia). charge.refunded covers a new refund.
    "refund.updated",
    "refund.failed",
    # A chargeback: opened, decided (a lost one takes the money back: a lifetime purchase ends), or
    # the money withdrawn or returned. A dispute names no customer: its charge does (see customer_of).
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
})

# Every customer id starts so; an event stored under another key (a dispute's charge: `ch_`, or `py_`
# for a bank debit) re-syncs the charge's customer, which the worker reads from Stripe (the route
# makes no Stripe call).
CUSTOMER_PREFIX = "cus_"


def customer_of(obj: dict, previous: dict | None = None) -> str | None:
    """The `customer` field (an id, or an expanded customer), or the id of a customer object.

    A payment method detached from its customer names it no more: the event's `previous_attributes`
    (`previous`) does. A dispute names only its charge: the charge id stands for its customer (the
    worker reads it, `worker.customer_to_sync`). Either only says whom to read again; our own row decides the org."""
    customer = obj.get("id") if obj.get("object") == "customer" else obj.get("customer")
    if customer is None and obj.get("object") == "dispute":
        customer = obj.get("charge")
    if customer is None and isinstance(previous, dict):
        customer = previous.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    # A Stripe id is short; anything else is not a customer we could sync (nor store: 255 chars).
    return customer if isinstance(customer, str) and 0 < len(customer) <= 255 else None
