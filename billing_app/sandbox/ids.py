"""Stripe-shaped ids: making them (`gen_id`) and telling their object type from the prefix."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits

# id prefix -> object type, used for `expand` and for telling ids apart.
PREFIXES = {
    "cus": "customer",
    "prod": "product",
    "price": "price",
    "pm": "payment_method",
    "cs": "checkout.session",
    "sub": "subscription",
    "si": "subscription_item",
    "in": "invoice",
    "inpay": "invoice_payment",
    "ii": "invoiceitem",
    "il": "line_item",
    "pi": "payment_intent",
    "ch": "charge",
    "re": "refund",
    "dp": "dispute",
    "bpc": "billing_portal.configuration",
    "bps": "billing_portal.session",
    "clock": "test_helpers.test_clock",
    "evt": "event",
    "we": "webhook_endpoint",
    "promo": "promotion_code",
    "di": "discount",
    "txi": "tax_id",
}


def gen_id(prefix: str, length: int = 24) -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(length))
    return f"{prefix}_{body}"


def type_of_id(id_: str) -> str | None:
    if not isinstance(id_, str) or "_" not in id_:
        return None
    if id_.startswith("cs_test_"):
        return "checkout.session"
    if id_.startswith("sub_sched_"):
        return "subscription_schedule"
    if id_.startswith("upcoming_in_"):
        return None
    return PREFIXES.get(id_.split("_", 1)[0])
