"""A one-off (lifetime) purchase as Stripe reports it: whether it is paid, and its charge."""

from __future__ import annotations


def paid(checkout: dict) -> bool:
    """A completed payment-mode checkout that owes nothing: paid, or free (a 100%-off code makes the
    total 0; Stripe then says no_payment_required and makes no payment intent)."""
    return (checkout["mode"] == "payment" and checkout["status"] == "complete"
            and checkout["payment_status"] in ("paid", "no_payment_required"))


def key(checkout: dict) -> str:
    """What names a one-off purchase: its payment intent, or the session when it took no payment."""
    return checkout.get("payment_intent") or checkout["id"]


def took_no_payment(purchase_key: str) -> bool:
    """A purchase keyed by its session (`key`) was free: nothing was charged, nothing can be refunded."""
    return purchase_key.startswith("cs_")


def charge_by_intent(charges: list) -> dict[str, dict]:
    """{payment intent: its charge} from charges listed newest first (as Stripe lists them).

    One payment intent can hold several charges: a card declined on Checkout's page, then another
    card that paid, leave a failed charge and a paid one. The paid one is the payment (its refund,
    receipt and date); with none paid, the newest attempt says how it ended.
    """
    chosen: dict[str, dict] = {}
    for charge in charges:
        intent = charge.get("payment_intent")
        if intent and (intent not in chosen or (charge.get("paid") and not chosen[intent].get("paid"))):
            chosen[intent] = charge
    return chosen
