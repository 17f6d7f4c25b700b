"""One builder per Stripe object type, plus rendering and `expand`.

Every builder returns a dict with exactly the top-level keys of Stripe's fixture
for that `object` type (tests/sandbox/test_fidelity.py checks this), so a client
written against Stripe finds every field it reads.  Keys starting with "_" are
sandbox bookkeeping and are stripped from responses.
"""

from __future__ import annotations

import copy
import time

from .errors import invalid
from .ids import gen_id

# The API version whose object shapes these builders produce (the one the Stripe SDK pins).
API_VERSION = "2026-10-28.endive"

ADDRESS_NULL = {"city": None, "country": None, "line1": None, "line2": None, "postal_code": None, "state": None}

CARDS = {
    # test token / number -> (brand, last4, behaviour)
    "pm_card_visa": ("visa", "4242", "ok"),
    "pm_card_mastercard": ("mastercard", "4444", "ok"),
    "pm_card_chargeDeclined": ("visa", "0002", "decline"),
    "pm_card_chargeCustomerFail": ("visa", "0341", "fail"),
    "4242424242424242": ("visa", "4242", "ok"),
    "5555555555554444": ("mastercard", "4444", "ok"),
    "4000000000000002": ("visa", "0002", "decline"),
    "4000000000000341": ("visa", "0341", "fail"),
    "4000000000009995": ("visa", "9995", "insufficient_funds"),
    # 3-D Secure: every payment needs the customer's approval (on the hosted pages); off-session
    # charges (renewals, upgrades) end `requires_action` with invoice.payment_action_required.
    "pm_card_authenticationRequired": ("visa", "3184", "authenticate"),
    "4000002760003184": ("visa", "3184", "authenticate"),
    # Pays, but a refund of it fails: `succeeded` at first, `failed` a while later (refund_failure_seconds).
    "pm_card_refundFail": ("visa", "5126", "refund_fail"),
    "4000000000005126": ("visa", "5126", "refund_fail"),
    # Pays, then the buyer disputes the charge as fraudulent (a dispute waiting for our response).
    "pm_card_createDispute": ("visa", "0259", "dispute"),
    "4000000000000259": ("visa", "0259", "dispute"),
}


# --- catalogue -------------------------------------------------------------------------------
def product(id_, now, name, **f):
    return {
        "id": id_, "object": "product", "active": f.get("active", True), "created": now,
        "default_price": f.get("default_price"), "description": f.get("description"),
        "images": f.get("images", []), "livemode": False, "marketing_features": f.get("marketing_features", []),
        "metadata": f.get("metadata", {}), "name": name, "package_dimensions": None, "shippable": None,
        "statement_descriptor": f.get("statement_descriptor"), "tax_code": f.get("tax_code"),
        "unit_label": f.get("unit_label"), "updated": now, "url": f.get("url"), "type": "service",
    }


def price(id_, now, currency, product_id, unit_amount, recurring=None, **f):
    return {
        "id": id_, "object": "price", "active": f.get("active", True), "billing_scheme": "per_unit",
        "created": now, "currency": currency, "custom_unit_amount": None, "livemode": False,
        "lookup_key": f.get("lookup_key"), "metadata": f.get("metadata", {}), "nickname": f.get("nickname"),
        "product": product_id, "recurring": recurring, "tax_behavior": f.get("tax_behavior", "unspecified"),
        "tiers_mode": None, "transform_quantity": None, "type": "recurring" if recurring else "one_time",
        "unit_amount": unit_amount, "unit_amount_decimal": str(unit_amount),
    }


def recurring(interval, interval_count=1, trial_period_days=None):
    return {"interval": interval, "interval_count": interval_count, "meter": None,
            "usage_type": "licensed", "trial_period_days": trial_period_days}


def plan_of(p):
    """The legacy `plan` view Stripe still embeds in subscription items."""
    r = p.get("recurring") or {}
    return {
        "id": p["id"], "object": "plan", "active": p["active"], "amount": p["unit_amount"],
        "amount_decimal": p["unit_amount_decimal"], "billing_scheme": "per_unit", "created": p["created"],
        "currency": p["currency"], "interval": r.get("interval"), "interval_count": r.get("interval_count"),
        "livemode": False, "metadata": p["metadata"], "meter": None, "nickname": p["nickname"],
        "product": p["product"], "tiers_mode": None, "transform_usage": None,
        "trial_period_days": r.get("trial_period_days"), "usage_type": "licensed",
    }


# --- customers and payment methods -----------------------------------------------------------
def customer(id_, now, **f):
    return {
        "id": id_, "object": "customer", "address": f.get("address"), "balance": f.get("balance", 0),
        "created": now, "currency": None, "default_source": None, "delinquent": False,
        "description": f.get("description"), "discount": None, "email": f.get("email"),
        "invoice_prefix": id_[-8:].upper(), "invoice_settings": {
            "custom_fields": None, "default_payment_method": f.get("default_payment_method"), "footer": None,
            "rendering_options": None},
        "livemode": False, "metadata": f.get("metadata", {}), "name": f.get("name"), "next_invoice_sequence": 1,
        "phone": f.get("phone"), "preferred_locales": f.get("preferred_locales", []), "shipping": None,
        "tax_exempt": "none", "test_clock": f.get("test_clock"),
    }


def payment_method(id_, now, brand, last4, behaviour, customer_id=None, billing_details=None):
    return {
        "id": id_, "object": "payment_method", "allow_redisplay": "unspecified",
        "billing_details": billing_details or {"address": dict(ADDRESS_NULL), "email": None, "name": None, "phone": None, "tax_id": None},
        "card": {
            "brand": brand, "checks": {"address_line1_check": None, "address_postal_code_check": None, "cvc_check": "pass"},
            "country": "US", "display_brand": brand, "exp_month": 12, "exp_year": 2034, "fingerprint": gen_id("fp", 12)[3:],
            "funding": "credit", "generated_from": None, "last4": last4,
            "networks": {"available": [brand], "preferred": None}, "three_d_secure_usage": {"supported": True},
            "wallet": None, "regulated_status": "unregulated",
        },
        "created": now, "customer": customer_id, "livemode": False, "metadata": {}, "type": "card",
        "customer_account": None, "_behaviour": behaviour,
    }


# --- checkout ----------------------------------------------------------------------------------
def checkout_item(p, quantity):
    amount = p["unit_amount"] * quantity
    return {
        "id": gen_id("li"), "object": "item", "amount_discount": 0, "amount_subtotal": amount, "amount_tax": 0,
        "amount_total": amount, "currency": p["currency"], "description": None, "price": p["id"],
        "quantity": quantity, "metadata": {}, "adjustable_quantity": None,
    }


def invoice_data(description=None, metadata=None, footer=None):
    """Checkout's ``invoice_creation.invoice_data``: what the invoice of a payment-mode session will carry."""
    return {"account_tax_ids": None, "custom_fields": None, "description": description, "footer": footer,
            "issuer": {"account": None, "type": "self"}, "metadata": metadata or {}, "rendering_options": None}


def checkout_session(id_, now, mode, url, **f):
    return {
        "id": id_, "object": "checkout.session", "after_expiration": None, "allow_promotion_codes": None,
        "amount_subtotal": f.get("amount_subtotal"), "amount_total": f.get("amount_total"),
        "automatic_tax": {"enabled": False, "liability": None, "status": None, "provider": None},
        "billing_address_collection": None, "cancel_url": f.get("cancel_url"),
        "client_reference_id": f.get("client_reference_id"), "client_secret": None,
        "consent": None, "consent_collection": None, "created": now, "currency": f.get("currency"),
        "custom_fields": [], "custom_text": {"after_submit": None, "shipping_address": None, "submit": None, "terms_of_service_acceptance": None},
        "customer": f.get("customer"), "customer_creation": f.get("customer_creation"), "customer_details": None,
        "customer_email": f.get("customer_email"), "expires_at": f.get("expires_at"), "invoice": None,
        "invoice_creation": f.get("invoice_creation"), "livemode": False, "locale": None,
        "metadata": f.get("metadata", {}), "mode": mode, "payment_intent": None, "payment_link": None,
        "payment_method_collection": "always", "payment_method_configuration_details": None,
        "payment_method_options": {}, "payment_method_types": ["card"], "payment_status": "unpaid",
        "phone_number_collection": {"enabled": False}, "recovered_from": None,
        "saved_payment_method_options": None, "setup_intent": None, "shipping_address_collection": None,
        "shipping_cost": None, "shipping_options": [], "status": "open", "submit_type": None,
        "subscription": None, "success_url": f.get("success_url"),
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted_page", "url": url, "adaptive_pricing": {"enabled": False}, "discounts": [],
        "collected_information": None, "permissions": None, "wallet_options": None, "origin_context": None,
        "currency_conversion": None, "customer_account": None, "integration_identifier": None,
        "managed_payments": {"enabled": False},
    }


# --- subscriptions -----------------------------------------------------------------------------
def subscription_item(sub_id, price_id, quantity, now, period_start, period_end, metadata=None):
    return {
        "id": gen_id("si", 14), "object": "subscription_item", "created": now, "discounts": [],
        "metadata": metadata or {}, "price": price_id, "quantity": quantity, "subscription": sub_id,
        "tax_rates": [], "plan": None, "current_period_end": period_end, "current_period_start": period_start,
        "billing_thresholds": None,
    }


def subscription(id_, now, customer_id, currency, items, **f):
    return {
        "id": id_, "object": "subscription", "application": None, "application_fee_percent": None,
        "automatic_tax": {"enabled": False, "liability": None, "disabled_reason": None},
        "billing_cycle_anchor": f.get("billing_cycle_anchor", now), "billing_cycle_anchor_config": None,
        "cancel_at": None, "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically", "created": now, "currency": currency,
        "customer": customer_id, "days_until_due": None, "default_payment_method": f.get("default_payment_method"),
        "default_source": None, "default_tax_rates": [], "description": f.get("description"), "discounts": [],
        "ended_at": None, "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": {"object": "list", "data": items, "has_more": False, "total_count": len(items),
                  "url": f"/v1/subscription_items?subscription={id_}"},
        "latest_invoice": None, "livemode": False, "metadata": f.get("metadata", {}),
        "next_pending_invoice_item_invoice": None, "on_behalf_of": None, "pause_collection": None,
        "payment_settings": {"payment_method_options": None, "payment_method_types": None, "save_default_payment_method": "off"},
        "pending_invoice_item_interval": None, "pending_setup_intent": None, "pending_update": None,
        "schedule": None, "start_date": now, "status": f.get("status", "active"), "test_clock": f.get("test_clock"),
        "transfer_data": None, "trial_end": f.get("trial_end"),
        "trial_settings": {"end_behavior": {"missing_payment_method": f.get("missing_payment_method", "create_invoice")}},
        "trial_start": f.get("trial_start"), "cancel_at_period_end": False, "billing_thresholds": None,
        "billing_mode": {"type": "flexible", "flexible": {"proration_discounts": "included"}, "updated_at": None},
        "customer_account": None, "managed_payments": {"enabled": False}, "billing_schedules": [],
    }


# --- invoices and payments -------------------------------------------------------------------
def proration_discount_amounts(discount_ids) -> list[dict]:
    """A proration's discounts as Stripe's default `proration_discounts=included` shows them: its
    amount is already net of them, so each is named with amount 0."""
    return [{"amount": 0, "discount": d} for d in discount_ids or []]


def invoice_line(invoice_id, amount, currency, description, period_start, period_end, *, price_obj=None,
                 quantity=1, sub_id=None, sub_item_id=None, proration=False, invoice_item=None, proration_discounts=None):
    if sub_id:
        parent = {"type": "subscription_item_details", "invoice_item_details": None, "subscription_item_details": {
            "invoice_item": invoice_item, "proration": proration, "proration_details": {"credited_items": None},
            "subscription": sub_id, "subscription_item": sub_item_id}}
    else:
        parent = {"type": "invoice_item_details", "subscription_item_details": None, "invoice_item_details": {
            "invoice_item": invoice_item, "proration": proration, "proration_details": {"credited_items": None},
            "subscription": None}}
    return {
        "id": gen_id("il"), "object": "line_item", "amount": amount, "currency": currency,
        "description": description, "discount_amounts": proration_discount_amounts(proration_discounts),
        "discountable": not proration, "discounts": list(proration_discounts or []), "invoice": invoice_id,
        "livemode": False, "metadata": {}, "period": {"end": period_end, "start": period_start},
        "quantity": quantity, "subscription": sub_id, "pretax_credit_amounts": [], "taxes": [], "parent": parent,
        "pricing": {"type": "price_details", "price_details": {"price": price_obj["id"], "product": price_obj["product"]} if price_obj else None,
                    "unit_amount_decimal": str(price_obj["unit_amount"]) if price_obj else None},
        "subtotal": amount, "quantity_decimal": str(quantity),
    }


def invoice(id_, now, cust, currency, lines, billing_reason, base_url, *, sub=None, period_start=None, period_end=None):
    total = sum(l["amount"] for l in lines)
    return {
        "id": id_, "object": "invoice", "account_country": "US", "account_name": "Billing Sandbox",
        "account_tax_ids": None, "amount_due": max(total, 0), "amount_paid": 0, "amount_remaining": max(total, 0),
        "amount_shipping": 0, "application": None, "attempt_count": 0, "attempted": False, "auto_advance": True,
        "automatic_tax": {"enabled": False, "liability": None, "status": None, "disabled_reason": None, "provider": None},
        "billing_reason": billing_reason, "collection_method": "charge_automatically", "created": now,
        "currency": currency, "custom_fields": None, "customer": cust["id"], "customer_address": cust.get("address"),
        "customer_email": cust.get("email"), "customer_name": cust.get("name"), "customer_phone": cust.get("phone"),
        "customer_shipping": None, "customer_tax_exempt": "none", "customer_tax_ids": [],
        "default_payment_method": None, "default_source": None, "default_tax_rates": [], "description": None,
        "discounts": [], "due_date": None, "effective_at": None, "ending_balance": None, "footer": None,
        "from_invoice": None, "hosted_invoice_url": None, "invoice_pdf": None, "issuer": {"type": "self"},
        "last_finalization_error": None, "latest_revision": None,
        "lines": {"object": "list", "data": lines, "has_more": False, "total_count": len(lines), "url": f"/v1/invoices/{id_}/lines"},
        "livemode": False, "metadata": {}, "next_payment_attempt": None, "number": None, "on_behalf_of": None,
        "payment_settings": {"default_mandate": None, "payment_method_options": None, "payment_method_types": None},
        "period_end": period_end if period_end is not None else now, "period_start": period_start if period_start is not None else now,
        "post_payment_credit_notes_amount": 0, "pre_payment_credit_notes_amount": 0, "receipt_number": None,
        "rendering": None, "shipping_cost": None, "shipping_details": None, "starting_balance": 0,
        "statement_descriptor": None, "status": "draft",
        "status_transitions": {"finalized_at": None, "marked_uncollectible_at": None, "paid_at": None, "voided_at": None},
        "subtotal": total, "subtotal_excluding_tax": total, "test_clock": cust.get("test_clock"),
        "total": total, "total_discount_amounts": [], "total_excluding_tax": total, "webhooks_delivered_at": None,
        "automatically_finalizes_at": None, "total_pretax_credit_amounts": [], "total_taxes": [], "amount_overpaid": 0,
        "parent": {"type": "subscription_details", "quote_details": None,
                   "subscription_details": {"metadata": dict(sub["metadata"]), "subscription": sub["id"]}} if sub else None,
        "customer_account": None,
    }


def invoiceitem(id_, now, customer_id, amount, currency, description, period_start, period_end, *, price_obj, sub_id=None,
                sub_item_id=None, proration=True, test_clock=None, quantity=1, proration_discounts=None):
    """An invoice item: a subscription's proration (``sub_id``) or a one-off line (no parent)."""
    parent = {"type": "subscription_details", "subscription_details": {"subscription": sub_id, "subscription_item": sub_item_id}} \
        if sub_id else None
    return {
        "id": id_, "object": "invoiceitem", "amount": amount, "currency": currency, "customer": customer_id,
        "date": now, "description": description, "discountable": not proration, "discounts": [], "invoice": None,
        "livemode": False, "metadata": {}, "period": {"end": period_end, "start": period_start}, "proration": proration,
        "quantity": quantity, "tax_rates": [], "test_clock": test_clock, "parent": parent,
        "pricing": {"type": "price_details", "price_details": {"price": price_obj["id"], "product": price_obj["product"]},
                    "unit_amount_decimal": str(amount // quantity if quantity else amount)},
        "net_amount": amount, "customer_account": None, "quantity_decimal": str(quantity),
        "proration_details": {"credited_items": None, "discount_amounts": proration_discount_amounts(proration_discounts)}
        if proration else None,
    }


def payment_intent(id_, now, amount, currency, customer_id, description=None, metadata=None):
    return {
        "id": id_, "object": "payment_intent", "amount": amount, "amount_capturable": 0, "amount_details": {"tip": {}},
        "amount_received": 0, "application": None, "application_fee_amount": None,
        "automatic_payment_methods": None, "canceled_at": None, "cancellation_reason": None,
        "capture_method": "automatic", "client_secret": f"{id_}_secret_{gen_id('x', 20)[2:]}",
        "confirmation_method": "automatic", "created": now, "currency": currency, "customer": customer_id,
        "description": description, "last_payment_error": None, "latest_charge": None, "livemode": False,
        "metadata": metadata or {}, "next_action": None, "on_behalf_of": None, "payment_method": None,
        "payment_method_configuration_details": None, "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
        "payment_method_types": ["card"], "processing": None, "receipt_email": None, "review": None,
        "setup_future_usage": None, "shipping": None, "statement_descriptor": None,
        "statement_descriptor_suffix": None, "status": "requires_payment_method", "transfer_data": None,
        "transfer_group": None, "source": None, "excluded_payment_method_types": None, "customer_account": None,
        "managed_payments": None,
    }


def charge(id_, now, amount, currency, customer_id, pi_id, pm, paid, failure=None, base_url=""):
    card = pm["card"]
    return {
        "id": id_, "object": "charge", "amount": amount, "amount_captured": amount if paid else 0, "amount_refunded": 0,
        "application": None, "application_fee": None, "application_fee_amount": None,
        "balance_transaction": gen_id("txn") if paid else None, "billing_details": pm["billing_details"],
        "calculated_statement_descriptor": "BILLING SANDBOX", "captured": paid, "created": now, "currency": currency,
        "customer": customer_id, "description": None, "disputed": False, "failure_balance_transaction": None,
        "failure_code": failure[0] if failure else None, "failure_message": failure[1] if failure else None,
        "fraud_details": {}, "livemode": False, "metadata": {}, "on_behalf_of": None,
        "outcome": {"advice_code": None, "network_advice_code": None, "network_decline_code": None,
                    "network_status": "approved_by_network" if paid else "declined_by_network",
                    "reason": failure[2] if failure else None, "risk_level": "normal",
                    "seller_message": "Payment complete." if paid else "The bank did not return any further details with this decline.",
                    "type": "authorized" if paid else "issuer_declined"},
        "paid": paid, "payment_intent": pi_id, "payment_method": pm["id"],
        "payment_method_details": {"card": {"brand": card["brand"], "last4": card["last4"], "exp_month": card["exp_month"],
                                            "exp_year": card["exp_year"], "country": "US", "funding": "credit", "network": card["brand"]},
                                   "type": "card"},
        "receipt_email": None, "receipt_number": None, "receipt_url": f"{base_url}/receipts/{id_}",
        "refunded": False, "refunds": {"object": "list", "data": [], "has_more": False, "total_count": 0, "url": f"/v1/charges/{id_}/refunds"},
        "review": None, "shipping": None, "source_transfer": None, "statement_descriptor": None,
        "statement_descriptor_suffix": None, "status": "succeeded" if paid else "failed", "transfer_data": None,
        "transfer_group": None, "source": None,
    }


def invoice_payment(id_, now, inv, pi_id, status="open"):
    return {
        "id": id_, "object": "invoice_payment", "amount_paid": None, "amount_requested": inv["amount_due"],
        "created": now, "currency": inv["currency"], "invoice": inv["id"], "is_default": True, "livemode": False,
        "payment": {"type": "payment_intent", "payment_intent": pi_id},
        "status": status, "status_transitions": {"canceled_at": None, "paid_at": None},
    }


def refund(id_, now, amount, ch, reason=None, metadata=None):
    return {
        "id": id_, "object": "refund", "amount": amount, "balance_transaction": gen_id("txn"), "charge": ch["id"],
        "created": now, "currency": ch["currency"], "destination_details": {"card": {"type": "refund"}, "type": "card"},
        "metadata": metadata or {}, "payment_intent": ch["payment_intent"], "reason": reason, "receipt_number": None,
        "source_transfer_reversal": None, "status": "succeeded", "transfer_reversal": None, "customer": ch["customer"],
        "customer_account": None, "payment_method": ch["payment_method"],
    }


EVIDENCE_FIELDS = (
    "access_activity_log", "billing_address", "cancellation_policy", "cancellation_policy_disclosure", "cancellation_rebuttal",
    "customer_communication", "customer_email_address", "customer_name", "customer_purchase_ip", "customer_signature",
    "duplicate_charge_documentation", "duplicate_charge_explanation", "duplicate_charge_id", "product_description", "receipt",
    "refund_policy", "refund_policy_disclosure", "refund_refusal_explanation", "service_date", "service_documentation",
    "shipping_address", "shipping_carrier", "shipping_date", "shipping_documentation", "shipping_tracking_number",
    "uncategorized_file", "uncategorized_text",
)


def dispute(id_, now, ch, reason="fraudulent"):
    card = ch["payment_method_details"]["card"]
    return {
        "id": id_, "object": "dispute", "amount": ch["amount"], "balance_transactions": [], "charge": ch["id"],
        "created": now, "currency": ch["currency"], "enhanced_eligibility_types": [],
        "evidence": {**dict.fromkeys(EVIDENCE_FIELDS), "enhanced_evidence": {}},
        "evidence_details": {"due_by": now + 7 * 86400, "has_evidence": False, "past_due": False, "submission_count": 0,
                             "submission_method": "not_submitted", "enhanced_eligibility": {}},
        "is_charge_refundable": True, "livemode": False, "metadata": {}, "payment_intent": ch["payment_intent"],
        "payment_method_details": {"card": {"brand": card["brand"], "case_type": "chargeback", "network": card["network"],
                                            "network_reason_code": "10.4"}, "type": "card"},
        "reason": reason, "status": "needs_response",
    }


# --- coupons, promotion codes, discounts, tax ids ----------------------------------------------
def coupon(id_, now, duration, **f):
    return {
        "id": id_, "object": "coupon", "amount_off": f.get("amount_off"), "applies_to": None, "created": now,
        "currency": f.get("currency"), "duration": duration, "duration_in_months": f.get("duration_in_months"),
        "livemode": False, "max_redemptions": f.get("max_redemptions"), "metadata": f.get("metadata", {}),
        "name": f.get("name"), "percent_off": f.get("percent_off"), "redeem_by": f.get("redeem_by"),
        "times_redeemed": 0, "valid": True,
    }


def real_now() -> int:
    return int(time.time())


def coupon_valid(c: dict, at: int | None = None) -> bool:
    """Can it still be applied: not deleted, not past `redeem_by`, redemptions left."""
    at = real_now() if at is None else at
    if c.get("_deleted"):
        return False
    if c.get("redeem_by") and c["redeem_by"] <= at:
        return False
    return not (c.get("max_redemptions") is not None and c["times_redeemed"] >= c["max_redemptions"])


def promotion_code(id_, now, code, coupon_id, **f):
    return {
        "id": id_, "object": "promotion_code", "active": f.get("active", True), "code": code, "created": now,
        "customer": f.get("customer"), "customer_account": None, "expires_at": f.get("expires_at"), "livemode": False,
        "max_redemptions": f.get("max_redemptions"), "metadata": f.get("metadata", {}),
        "promotion": {"coupon": coupon_id, "type": "coupon"},
        "restrictions": {"first_time_transaction": bool(f.get("first_time_transaction")), "minimum_amount": f.get("minimum_amount"),
                         "minimum_amount_currency": f.get("minimum_amount_currency")},
        "times_redeemed": 0,
    }


def discount(id_, now, customer_id, coupon_id, *, end=None, subscription=None, promotion_code=None, checkout_session=None,
             invoice=None):
    return {
        "id": id_, "object": "discount", "checkout_session": checkout_session, "customer": customer_id,
        "customer_account": None, "end": end, "invoice": invoice, "invoice_item": None, "promotion_code": promotion_code,
        "source": {"coupon": coupon_id, "type": "coupon"}, "start": now, "subscription": subscription, "subscription_item": None,
    }


def tax_id(id_, now, customer_id, type_, value, country, verification_status):
    return {
        "id": id_, "object": "tax_id", "country": country, "created": now, "customer": customer_id, "customer_account": None,
        "livemode": False, "owner": {"account": None, "application": None, "customer": customer_id, "customer_account": None,
                                     "type": "customer"},
        "type": type_, "value": value,
        "verification": {"status": verification_status, "verified_address": None, "verified_name": None},
    }


# --- portal, clocks, events --------------------------------------------------------------------
def portal_configuration(id_, now, features, **f):
    return {
        "id": id_, "object": "billing_portal.configuration", "active": True, "application": None,
        "business_profile": f.get("business_profile") or {"headline": None, "privacy_policy_url": None, "terms_of_service_url": None},
        "created": now, "default_return_url": f.get("default_return_url"), "features": features,
        "is_default": f.get("is_default", False), "livemode": False,
        "login_page": {"enabled": False, "url": None}, "metadata": f.get("metadata", {}), "updated": now, "name": f.get("name"),
    }


def portal_session(id_, now, customer_id, configuration_id, return_url, url, flow=None, locale=None):
    return {
        "id": id_, "object": "billing_portal.session", "configuration": configuration_id, "created": now,
        "customer": customer_id, "flow": flow, "livemode": False, "locale": locale, "on_behalf_of": None,
        "return_url": return_url, "url": url, "customer_account": None,
    }


def test_clock(id_, now, frozen_time, name=None):
    return {
        "id": id_, "object": "test_helpers.test_clock", "created": now, "deletes_after": now + 30 * 86400,
        "frozen_time": frozen_time, "livemode": False, "name": name, "status": "ready", "status_details": {},
    }


def event(store, type_, data, pending=0, request=None, created=None):
    return {
        "id": gen_id("evt"), "object": "event", "api_version": API_VERSION,
        "created": created if created is not None else int(time.time()), "data": data, "livemode": False,
        "pending_webhooks": pending, "request": request or {"id": None, "idempotency_key": None}, "type": type_,
    }


def webhook_endpoint(id_, now, url, enabled_events, secret, **f):
    return {
        "id": id_, "object": "webhook_endpoint", "api_version": f.get("api_version"), "application": None,
        "created": now, "description": f.get("description"), "enabled_events": enabled_events, "livemode": False,
        "metadata": f.get("metadata", {}), "status": "enabled", "url": url, "_secret": secret,
    }


def deleted(kind, id_):
    return {"id": id_, "object": kind, "deleted": True}


def list_object(data, url, has_more=False):
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


# --- rendering -----------------------------------------------------------------------------------
def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def render(store, obj: dict) -> dict:
    """The public JSON of a stored object: private keys dropped, nested prices embedded."""
    out = _strip(obj)
    kind = obj.get("object")
    if kind == "subscription":
        for item in out["items"]["data"]:
            _embed_price(store, item)
        for item in (out.get("pending_update") or {}).get("subscription_items") or []:
            _embed_price(store, item)
    elif kind == "subscription_item":
        _embed_price(store, out)
    elif kind == "coupon":
        out["valid"] = coupon_valid(obj)
    elif kind == "item":
        p = store.get("price", out["price"])
        if p:
            out["price"] = _strip(p)
            out["description"] = out["description"] or _product_name(store, p)
    return out


def _embed_price(store, item):
    p = store.get("price", item["price"]) if isinstance(item["price"], str) else item["price"]
    if p:
        item["price"] = _strip(p)
        item["plan"] = plan_of(p)


def _product_name(store, p):
    prod = store.get("product", p["product"])
    return prod["name"] if prod else None


# Properties that hold an id Stripe can expand (so a null one is fine to ask for).
EXPANDABLE = {
    "customer", "product", "price", "default_price", "default_payment_method", "payment_method", "subscription",
    "invoice", "latest_invoice", "payment_intent", "latest_charge", "charge", "configuration", "test_clock",
    "line_items", "payments", "pending_setup_intent", "setup_intent", "schedule", "default_source", "on_behalf_of",
    "application", "balance_transaction", "review", "source", "discounts", "invoice_item", "payment_link",
    "coupon", "promotion_code", "discount",
}


def expand(store, obj: dict, paths: list[str]) -> dict:
    """Apply Stripe's `expand[]`: replace ids at dotted paths with their objects."""
    for path in paths:
        if len(path.split(".")) > 4:
            raise invalid(f"You cannot expand more than 4 levels of a property. Property: {path}", "expand")
        _expand_path(store, obj, path.split("."), path)
    return obj


def _expand_path(store, node, parts, full):
    if isinstance(node, list):
        for n in node:
            _expand_path(store, n, parts, full)
        return
    if not isinstance(node, dict):
        return
    key, rest = parts[0], parts[1:]
    if key == "data" and node.get("object") == "list":
        for n in node["data"]:
            _expand_path(store, n, rest, full)
        return
    if key not in node:
        special = _virtual(store, node, key)
        if special is None:
            raise invalid(f"This property cannot be expanded ({full}).", "expand")
        node[key] = special
    value = node[key]
    if value is None and key not in EXPANDABLE:
        raise invalid(f"This property cannot be expanded ({full}).", "expand")
    if isinstance(value, str):
        target = store.find(value)
        if target is None:
            raise invalid(f"This property cannot be expanded ({full}).", "expand")
        node[key] = value = render(store, target)
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        # A list of ids (a subscription's or an invoice's `discounts`): each one expanded.
        found = [store.find(v) for v in value]
        if any(t is None for t in found):
            raise invalid(f"This property cannot be expanded ({full}).", "expand")
        node[key] = value = [render(store, t) for t in found]
    if rest and value is not None:
        _expand_path(store, value, rest, full)


def _virtual(store, node, key):
    """Includable properties that are not in the default object (Stripe's 'includable')."""
    if node.get("object") == "checkout.session" and key == "line_items":
        stored = store.get("checkout.session", node["id"])
        items = [render(store, i) for i in stored.get("_line_items", [])]
        return list_object(items, f"/v1/checkout/sessions/{node['id']}/line_items")
    if node.get("object") == "customer" and key == "tax_ids":
        ids = [render(store, t) for t in store.all("tax_id") if t["customer"] == node["id"]]
        return list_object(sorted(ids, key=lambda t: t["created"]), f"/v1/customers/{node['id']}/tax_ids")
    if node.get("object") == "invoice" and key == "payments":
        pays = [render(store, p) for p in store.all("invoice_payment") if p["invoice"] == node["id"]]
        return list_object(pays, f"/v1/invoice_payments?invoice={node['id']}")
    return None


def copy_obj(obj):
    return copy.deepcopy(obj)

