"""Defense in depth against a second charge: an org holds one plan, so a sync that finds more undoes the extra.

Checkout already allows one live purchase per org (billing/reservations.py). A second one can
still appear from outside the app: a session made behind its back and paid, a dashboard user,
an older release. `sync_customer` finds it in the customer's snapshot; the first purchase made
through the app is kept, everything each other one charged is refunded and it is canceled at once. Cancels and
refunds carry idempotency keys, so two syncs racing over the same customer undo it once.

A free lifetime purchase (a 100%-off code) that is the extra one has nothing to cancel or refund at
Stripe, which keeps saying it is complete: undoing it is our event-log row alone
(sync._record_duplicate), and from then on it is `undone`: no plan held, granted nothing (sync.py).
So is an extra lifetime purchase whose refund failed later at Stripe (refund.failed): held again at
Stripe's word, but undone at ours. Whichever the kind, a payment of an undone purchase whose refund
failed is the customer's money kept for no plan: the sync logs it for an operator to return, once
(sync.unrefunded_duplicate_payments).
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from billing_app.billing import gateway, idempotency, one_off
from billing_app.models import MANAGEABLE_STATUSES

log = structlog.get_logger(__name__)

REASON = "duplicate purchase: the organization already holds a plan"


@dataclass(frozen=True)
class ExtraPurchase:
    kind: str  # "subscription" or "lifetime"
    stripe_id: str  # sub_... or the lifetime purchase's key (one_off.key: its payment intent pi_...)
    kept: str  # the purchase the org keeps


def _holdings(subscriptions: list[dict], sessions: list[dict], charges: list[dict],
              undone: set[str]) -> list[tuple[bool, int, str, str]]:
    """Every plan the customer holds now, the one to keep first: bought through our own Checkout
    (it names the org), then the oldest. Stripe's `created` is in seconds, so two purchases of
    the same second are told apart by who made them, not by chance."""
    refunded = {intent for intent, c in one_off.charge_by_intent(charges).items() if c.get("refunded")}
    ours = {s.get("subscription") for s in sessions if s.get("client_reference_id")}
    ours |= {s.get("payment_intent") for s in sessions if s.get("client_reference_id")}
    held = [(s["id"] not in ours, s["created"], "subscription", s["id"]) for s in subscriptions if s["status"] in MANAGEABLE_STATUSES]
    ours |= {s["id"] for s in sessions if s.get("client_reference_id")}
    held += [
        (one_off.key(s) not in ours, s["created"], "lifetime", one_off.key(s))
        for s in sessions if one_off.paid(s) and one_off.key(s) not in refunded | undone
    ]
    return sorted(held)


def find_extra_purchases(subscriptions: list[dict], sessions: list[dict], charges: list[dict],
                         undone: set[str]) -> list[ExtraPurchase]:
    """Every plan held beside the one kept; `undone`: the lifetime purchases undone before (sync.undone_purchases)."""
    held = _holdings(subscriptions, sessions, charges, undone)
    return [ExtraPurchase(kind, stripe_id, held[0][3]) for _theirs, _created, kind, stripe_id in held[1:]]


def subscription_of(invoice: dict) -> str | None:
    """The subscription an invoice bills (None for one that bills none)."""
    return ((invoice.get("parent") or {}).get("subscription_details") or {}).get("subscription")


def _charged_back(client, failure: gateway.StripeFailure, intent: str) -> bool:
    """Refused as disputed, and the dispute was lost: the money went back to the buyer already. A
    dispute still open may yet be won: the refusal stands, and a later sync tries again."""
    if failure.code != "charge_disputed":
        return False
    disputes = gateway.call(client.v1.disputes.list, params={"payment_intent": intent, "limit": 10})["data"]
    return any(d.get("status") == "lost" for d in disputes)


def undo(client, extra: ExtraPurchase, invoices: list[dict]) -> None:
    """Refund every payment the extra purchase took (a free one took none), then cancel it.

    Refunds first: a retry finds the subscription live, so still extra, and finishes both (the
    refund's key, or `charge_already_refunded`, makes it once). Canceled first, a failed refund was
    never retried: a canceled subscription is no plan held, so no retry saw it again. Refunding a
    paid invoice leaves it paid: the live subscription is not billed again for it."""
    intents: list[str] = []
    if extra.kind == "subscription":
        for invoice in invoices:
            if subscription_of(invoice) == extra.stripe_id and invoice["status"] == "paid" and invoice["amount_paid"] > 0:
                payments = gateway.call(client.v1.invoice_payments.list, params={"invoice": invoice["id"], "limit": 10})["data"]
                intents += [p["payment"]["payment_intent"] for p in payments if (p.get("payment") or {}).get("payment_intent")]
    elif not one_off.took_no_payment(extra.stripe_id):
        intents.append(extra.stripe_id)
    for intent in intents:
        try:
            idempotency.call_once(
                client.v1.refunds.create,
                params={"payment_intent": intent, "reason": "duplicate", "metadata": {"why": REASON}},
                key=f"duplicate-refund-{intent}",
            )
        except gateway.StripeFailure as failure:
            if failure.code != "charge_already_refunded" and not _charged_back(client, failure, intent):
                raise
    if extra.kind == "subscription":
        idempotency.call_once(
            client.v1.subscriptions.cancel, extra.stripe_id,
            params={"cancellation_details": {"comment": REASON}},
            key=f"duplicate-cancel-{extra.stripe_id}",
        )
    log.warning("billing.duplicate_purchase_undone", kind=extra.kind, id=extra.stripe_id, kept=extra.kept, refunded=intents)
