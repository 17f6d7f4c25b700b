"""Billing details (email, company name, address, tax IDs): edited in the app, kept at Stripe.

Stripe validates them; a refusal comes back as a sentence a person understands (`_in_words`),
never as Stripe's code. Each change re-syncs the customer, so the dashboard shows what Stripe
now holds (its webhook would too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from billing_app.auth.accounts import Actor, admin_now
from billing_app.billing import gateway
from billing_app.billing.customers import customer_id_for
from billing_app.billing.sync import resync_after_change
from billing_app.errors import AppError, ErrorCode
from billing_app.models import Role
from billing_app.text import refuse_control_characters

# The tax ID types the form offers (Stripe's names), with what people call them.
TAX_ID_TYPES = {
    "eu_vat": "EU VAT", "gb_vat": "UK VAT", "us_ein": "US EIN", "ch_vat": "Swiss VAT", "au_abn": "Australian ABN",
    "ca_bn": "Canadian BN", "no_vat": "Norwegian VAT",
}


@dataclass(frozen=True)
class Details:
    email: str = ""
    name: str = ""
    line1: str = ""
    line2: str = ""
    city: str = ""
    state: str = ""
    postal_code: str = ""
    country: str = ""

    def cleaned(self) -> Details:
        values = {k: (v or "").strip() for k, v in self.__dict__.items()}
        values["country"] = values["country"].upper()
        return Details(**values)


LIMITS = {"email": 254, "name": 255, "line1": 200, "line2": 200, "city": 200, "state": 200, "postal_code": 40, "country": 2}


def _customer(actor: Actor) -> str:
    actor.require_role(Role.ADMIN)
    org_id = admin_now(actor).require_role(Role.ADMIN)  # as it is now, after any wait
    customer_id = customer_id_for(org_id)
    if customer_id is None:
        raise AppError(ErrorCode.NO_BILLING_ACCOUNT, "Your organization has no billing account yet: subscribe to a plan first.")
    return customer_id


def _in_words(failure: gateway.StripeFailure, *, value: str = "", tax_type: str = "") -> AppError:
    """A Stripe refusal as a sentence; Stripe being down stays a 502."""
    if failure.status is None or failure.status >= 500 or failure.status == 429:
        return AppError(ErrorCode.STRIPE_BILLING_DETAILS_FAILED, "We could not save your billing details. Please try again.")
    code = failure.code or ""
    if code == "email_invalid":
        message = "That billing email does not look like an email address."
    elif code == "tax_id_invalid":
        message = f"{value or 'That'} is not a valid {TAX_ID_TYPES.get(tax_type, tax_type)} number."
        if tax_type == "eu_vat":
            message += " An EU VAT number starts with its country code, e.g. DE123456789."
    elif code == "country_code_invalid":
        message = "Use the 2-letter code of the country, such as US, DE or GB."
    elif code == "tax_id_limit":
        message = "This customer already has as many tax IDs as Stripe allows."
    elif code == "resource_missing":
        message = "That tax ID is no longer on file."
    else:
        text = re.sub(r"^Request req_\w+: ", "", failure.message or "").strip()
        message = f"Stripe did not accept these details: {text}" if text else "Stripe did not accept these details."
    return AppError(ErrorCode.BILLING_DETAILS_INVALID, message)


def update(actor: Actor, details: Details) -> None:
    """Save the billing email, company name and address on the Stripe customer."""
    customer_id = _customer(actor)
    details = details.cleaned()
    for name, limit in LIMITS.items():
        if len(getattr(details, name)) > limit:
            raise AppError(ErrorCode.VALIDATION_ERROR, f"The {name.replace('_', ' ')} is too long (at most {limit} characters).")
        refuse_control_characters(getattr(details, name), f"The {name.replace('_', ' ')}")  # mirrored: PostgreSQL refuses a NUL
    if not details.email:
        raise AppError(ErrorCode.VALIDATION_ERROR, "Enter a billing email: invoices and receipts go there.")
    address_given = any(getattr(details, k) for k in ("line1", "line2", "city", "state", "postal_code", "country"))
    if address_given and not details.country:
        raise AppError(ErrorCode.VALIDATION_ERROR, "Choose the country of the billing address.")
    params: dict = {"email": details.email, "name": details.name}
    params["address"] = {k: getattr(details, k) for k in ("line1", "line2", "city", "state", "postal_code", "country")} \
        if address_given else ""
    try:
        gateway.call(gateway.stripe_client().v1.customers.update, customer_id, params=params)
    except gateway.StripeFailure as failure:
        raise _in_words(failure) from None
    resync_after_change(customer_id)


def add_tax_id(actor: Actor, tax_type: str, value: str) -> None:
    customer_id = _customer(actor)
    value = (value or "").strip()
    if tax_type not in TAX_ID_TYPES:
        raise AppError(ErrorCode.VALIDATION_ERROR, "Choose the kind of tax ID.")
    if not value or len(value) > 64:
        raise AppError(ErrorCode.VALIDATION_ERROR, "Enter the tax ID.")
    refuse_control_characters(value, "The tax ID")
    try:
        gateway.call(gateway.stripe_client().v1.customers.tax_ids.create, customer_id, params={"type": tax_type, "value": value})
    except gateway.StripeFailure as failure:
        raise _in_words(failure, value=value, tax_type=tax_type) from None
    resync_after_change(customer_id)


def remove_tax_id(actor: Actor, tax_id: str) -> None:
    customer_id = _customer(actor)
    if not re.fullmatch(r"txi_[A-Za-z0-9]{1,100}", tax_id or ""):
        raise AppError(ErrorCode.VALIDATION_ERROR, "That tax ID is no longer on file.")
    try:
        # The customer's own path: another customer's tax ID is "not found".
        gateway.call(gateway.stripe_client().v1.customers.tax_ids.delete, customer_id, tax_id)
    except gateway.StripeFailure as failure:
        raise _in_words(failure) from None
    resync_after_change(customer_id)
