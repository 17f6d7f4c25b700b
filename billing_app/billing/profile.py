"""The dashboard's mirror of a customer: card, billing details, tax IDs, discounts and the next invoice.

`sync_customer` (billing/sync.py) reads these with the rest of the customer, before its transaction
(`CUSTOMER_EXPAND`, `SUBSCRIPTION_EXPAND`, `read_preview`), and writes them into the org's
`BillingProfile` row in the same transaction (`write`). Pages read the row: rendering makes no
Stripe call.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

from sqlmodel import Session

from billing_app.billing import gateway, schedules
from billing_app.billing.catalog import load_catalog
from billing_app.models import BillingProfile, RetentionOffer, set_to_cancel, utcnow

log = logging.getLogger(__name__)

# Expanded in the sync's own reads, so the profile costs one extra call (the invoice preview).
CUSTOMER_EXPAND = ["tax_ids", "invoice_settings.default_payment_method"]
SUBSCRIPTION_EXPAND = ["data.default_payment_method", "data.discounts.source.coupon"]
ADDRESS_KEYS = ("line1", "line2", "city", "state", "postal_code", "country")
# Stripe's error code for a preview with nothing to invoice next.
NO_UPCOMING_INVOICE = "invoice_upcoming_none"
# A subscription with a next invoice to preview: it renews and collects.
RENEWING = ("active", "trialing", "past_due")


def _id(value) -> str | None:
    return value.get("id") if isinstance(value, dict) else value


def previewed_subscription(subscriptions: list[dict]) -> dict | None:
    """The subscription whose next invoice the dashboard shows: renewing, not set to cancel, not paused."""
    live = [s for s in subscriptions if s["status"] in RENEWING and not set_to_cancel(s.get("cancel_at_period_end"), s.get("cancel_at"))
            and not s.get("pause_collection")]
    return max(live, key=lambda s: s.get("created") or 0) if live else None


def read_preview(client, customer_id: str, subscriptions: list[dict]) -> dict | None:
    """Stripe's preview of the next invoice (prorations, discounts, quantities and tax included), or None.

    Stripe's "no upcoming invoice" (the subscription ended since it was listed) is None, and so is
    a refusal that retrying does not change (a 400/402/404 about the customer's data, e.g. Stripe
    Tax's location): no figure, while the rest of the sync goes on. What may pass (a rate limit, a lock,
    Stripe down) fails the sync like any other read, to be retried, never taken for "no next
    invoice" (that would wipe the dashboard's figure).
    """
    sub = previewed_subscription(subscriptions)
    if sub is None:
        return None
    # Under a schedule (a downgrade waiting for the period end) the next invoice is its next phase's:
    # Stripe documents `schedule` for that preview, and refuses it beside `subscription`.
    schedule = schedules.live(sub.get("schedule"))
    params = {"schedule": schedule["id"]} if schedule else {"customer": customer_id, "subscription": sub["id"]}
    try:
        preview = gateway.call(client.v1.invoices.create_preview, params=params)
    except gateway.StripeFailure as failure:
        if failure.code == NO_UPCOMING_INVOICE:
            log.info("no invoice preview for %s: %s", sub["id"], failure.message)
            return None
        if failure.status in (400, 402, 404):  # not 401/403 (our key), 409 (a lock) or 429 (a rate limit)
            log.warning("invoice preview refused for %s: %s %s", sub["id"], failure.code, failure.message)
            return None
        raise
    preview["_subscription"] = sub
    return preview


def _card(customer: dict, subscriptions: list[dict]) -> dict:
    """The card payments use: the live subscription's own default, else the customer's."""
    sub = previewed_subscription(subscriptions) or next((s for s in subscriptions if s["status"] in RENEWING), None)
    for pm in ((sub or {}).get("default_payment_method"), (customer.get("invoice_settings") or {}).get("default_payment_method")):
        if isinstance(pm, dict) and pm.get("card"):
            card = pm["card"]
            return {"card_brand": card.get("brand") or "", "card_last4": card.get("last4") or "",
                    "card_exp_month": card.get("exp_month"), "card_exp_year": card.get("exp_year")}
    return {"card_brand": "", "card_last4": "", "card_exp_month": None, "card_exp_year": None}


def _discounts(customer: dict, subscriptions: list[dict]) -> list[dict]:
    """Running discounts of the live subscriptions (and the customer's own), with their coupons' terms."""
    now = int(datetime.now(timezone.utc).timestamp())
    found = []
    for sub in subscriptions:
        if sub["status"] in ("canceled", "incomplete_expired"):
            continue
        found += [d for d in sub.get("discounts") or [] if isinstance(d, dict)]
    if isinstance(customer.get("discount"), dict):
        found.append(customer["discount"])
    out = []
    for d in found:
        if d.get("end") and d["end"] <= now:
            continue
        coupon = (d.get("source") or {}).get("coupon")
        if not isinstance(coupon, dict):
            continue
        out.append({
            "id": d["id"], "coupon": coupon["id"], "name": coupon.get("name") or "", "percent_off": coupon.get("percent_off"),
            "amount_off": coupon.get("amount_off"), "currency": coupon.get("currency"), "duration": coupon.get("duration"),
            "duration_in_months": coupon.get("duration_in_months"), "end": d.get("end"), "promotion_code": _id(d.get("promotion_code")),
        })
    return sorted(out, key=lambda x: x["id"])


def discount_columns(sub: dict) -> dict:
    """OrgSubscription's discount per billing period (the operator console's MRR subtracts it), from the
    subscription's running discounts; {} when they were not read expanded (the bulk reconcile's lists)."""
    discounts = sub.get("discounts") or []
    if not discounts:
        return {"discount_percent_off": None, "discount_amount_off": None}
    coupons = [((d.get("source") or {}).get("coupon") if isinstance(d, dict) else None) for d in discounts]
    if not all(isinstance(c, dict) for c in coupons):
        return {}
    now = int(datetime.now(timezone.utc).timestamp())
    running = [c for d, c in zip(discounts, coupons) if not (d.get("end") and d["end"] <= now)]
    kept = 1.0
    for c in running:
        if c.get("percent_off") is not None:
            kept *= 1 - float(c["percent_off"]) / 100
    amount = sum(c.get("amount_off") or 0 for c in running if c.get("percent_off") is None and c.get("currency") == sub.get("currency"))
    return {"discount_percent_off": round((1 - kept) * 100, 4) if kept < 1 else None, "discount_amount_off": amount or None}


def _next_invoice(preview: dict | None) -> dict | None:
    if preview is None:
        return None
    sub = preview["_subscription"]
    items = (sub.get("items") or {}).get("data") or []
    at = sub.get("trial_end") if sub["status"] == "trialing" else (items[0].get("current_period_end") if items else None)
    lines = (preview.get("lines") or {}).get("data") or []

    def proration(line) -> bool:
        parent = line.get("parent") or {}
        details = parent.get("subscription_item_details") or parent.get("invoice_item_details") or {}
        return bool(details.get("proration"))

    regular = [l for l in lines if not proration(l)]
    return {
        "amount_due": preview["amount_due"], "currency": preview["currency"], "at": at or preview.get("created"),
        "subtotal": preview.get("subtotal", preview["amount_due"]),
        "discount": sum(x["amount"] for x in preview.get("total_discount_amounts") or []),
        "tax": sum(x["amount"] for x in preview.get("total_taxes") or []),
        "prorations": sum(l["amount"] for l in lines if proration(l)),
        "quantity": max([l.get("quantity") or 1 for l in regular] or [1]),
        "subscription": sub["id"],
    }


def values(customer: dict, subscriptions: list[dict], preview: dict | None) -> dict:
    """The profile row's columns, from what the sync read."""
    address = customer.get("address") or {}
    tax_ids = (customer.get("tax_ids") or {}).get("data") or []
    next_invoice = _next_invoice(preview)
    return {
        "email": (customer.get("email") or "")[:254],
        "name": (customer.get("name") or "")[:255],
        "address_json": json.dumps({k: address.get(k) or "" for k in ADDRESS_KEYS} if any(address.values()) else {}),
        "tax_ids_json": json.dumps([
            {"id": t["id"], "type": t["type"], "value": t["value"], "country": t.get("country") or "",
             "status": (t.get("verification") or {}).get("status") or ""}
            for t in sorted(tax_ids, key=lambda t: (t.get("created") or 0, t["id"]))
        ]),
        **_card(customer, subscriptions),
        "discounts_json": json.dumps(_discounts(customer, subscriptions)),
        "next_invoice_json": json.dumps(next_invoice, sort_keys=True) if next_invoice else "",
    }


# A forecast, recomputed by every sync: kept current, never reported as a change of the mirror.
FORECAST = ("next_invoice_json",)


def write(session: Session, org_id: int, customer: dict, subscriptions: list[dict], preview: dict | None, changes: list[str],
          *, preview_read: bool = True) -> None:
    """Upsert the org's profile; without `preview_read` (the bulk reconcile) the next invoice is left as it is."""
    row = session.get(BillingProfile, org_id)
    new = row is None
    if new:
        row = BillingProfile(org_id=org_id)
    for name, value in values(customer, subscriptions, preview).items():
        if name in FORECAST and not preview_read:
            continue
        if getattr(row, name) != value:
            if not new and name not in FORECAST:
                changes.append(f"billing profile: {name.removesuffix('_json')} changed")
            setattr(row, name, value)
    if new:
        changes.append("billing profile: new")
    row.updated_at = utcnow()
    session.add(row)
    _note_retention_taken(session, org_id, json.loads(row.discounts_json), changes)


def _note_retention_taken(session: Session, org_id: int, discounts: list[dict], changes: list[str]) -> None:
    """The retention coupon on the subscription (accepted in the portal, say) uses up the org's one offer."""
    spec = load_catalog()
    if spec.retention is None or spec.retention.coupon not in {d["coupon"] for d in discounts}:
        return
    offer = session.get(RetentionOffer, org_id) or RetentionOffer(org_id=org_id, coupon_id=spec.retention.coupon)
    if offer.accepted_at is None:
        offer.accepted_at = utcnow()
        changes.append("retention offer: accepted")
        session.add(offer)
