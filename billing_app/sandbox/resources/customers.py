"""Customers and payment methods (from Stripe's test tokens such as pm_card_visa)."""

from __future__ import annotations

import copy
import datetime as dt
import re

from .. import objects as o
from ..api import Ctx, created_filter, diff, equal_filter, route, update_metadata
from ..billing import attach, cancel_now, get_or_404, now_for, real_now, resolve_payment_method
from ..discounts import add_tax_id, normalise_tax_id
from ..errors import StripeError, invalid
from ..ids import gen_id
from ..params import as_int

SIMPLE = ("email", "name", "description", "phone")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
ADDRESS_KEYS = ("city", "country", "line1", "line2", "postal_code", "state")


def check_email(value) -> None:
    """Stripe refuses a malformed email with `email_invalid`."""
    if value and not EMAIL.match(value):
        raise StripeError(400, "invalid_request_error", "email_invalid", f"Invalid email address: {value}", "email")


def clean_address(value, param: str = "address"):
    """An address hash as Stripe stores it (every key present), its country a 2-letter code."""
    if value in (None, ""):
        return None
    if not isinstance(value, dict):
        raise invalid(f"Invalid object: {param}", param)
    country = (value.get("country") or "").strip()
    if country and not re.fullmatch(r"[A-Za-z]{2}", country):
        raise StripeError(400, "invalid_request_error", "country_code_invalid",
                          f"Country '{country}' is unknown. Try using a 2-character alphanumeric country code instead, "
                          "such as 'US', 'EG', or 'GB'.", f"{param}[country]")
    out = {k: (value.get(k) or None) for k in ADDRESS_KEYS}
    out["country"] = country.upper() or None
    return out


@route("POST", "/v1/customers", "_customer_create_params:CustomerCreateParams")
def create_customer(ctx: Ctx):
    p, store = ctx.params, ctx.store
    clock = None
    if p.get("test_clock"):
        clock = get_or_404(store, "test_helpers.test_clock", p["test_clock"], "test_clock", "test_clock")
    now = clock["frozen_time"] if clock else real_now()
    check_email(p.get("email"))
    cust = o.customer(gen_id("cus", 14), now, email=p.get("email"), name=p.get("name"), description=p.get("description"),
                      phone=p.get("phone"), metadata=p.get("metadata") or {}, test_clock=clock["id"] if clock else None,
                      address=clean_address(p.get("address")), preferred_locales=p.get("preferred_locales") or [])
    for tid in p.get("tax_id_data") or []:
        normalise_tax_id(tid.get("type"), tid.get("value"))  # refused before anything is made
    if p.get("balance"):
        cust["balance"] = as_int(p["balance"], "balance")
    store.put(cust)
    store.emit("customer.created", cust)
    for tid in p.get("tax_id_data") or []:
        add_tax_id(store, cust, tid["type"], tid["value"], now)
    memo: dict = {}
    if p.get("payment_method"):
        pm = resolve_payment_method(store, p["payment_method"], memo=memo)
        attach(store, pm, cust)
    dpm = (p.get("invoice_settings") or {}).get("default_payment_method")
    if dpm:
        pm = resolve_payment_method(store, dpm, "invoice_settings[default_payment_method]", memo)
        if pm["customer"] != cust["id"]:
            raise invalid("The customer does not have a payment method with the ID "
                          f"{pm['id']}. The payment method must be attached to the customer.",
                          "invoice_settings[default_payment_method]")
        cust["invoice_settings"]["default_payment_method"] = pm["id"]
    return ctx.out(cust)


@route("GET", "/v1/customers/{id}", "_customer_retrieve_params:CustomerRetrieveParams")
def get_customer(ctx: Ctx, id):
    cust = ctx.store.get("customer", id)
    if cust is None and ctx.store.get("deleted_customer", id):
        return o.deleted("customer", id)
    return ctx.out(get_or_404(ctx.store, "customer", id))


@route("POST", "/v1/customers/{id}", "_customer_update_params:CustomerUpdateParams")
def update_customer(ctx: Ctx, id):
    store, p = ctx.store, ctx.params
    cust = get_or_404(store, "customer", id)
    before = copy.deepcopy(cust)
    if "email" in p:
        check_email(p["email"])
    address = clean_address(p["address"]) if "address" in p else None
    for k in SIMPLE:
        if k in p:
            cust[k] = p[k] or None
    if "address" in p:
        cust["address"] = address
    if "balance" in p:
        cust["balance"] = as_int(p["balance"], "balance") or 0
    if "preferred_locales" in p:
        cust["preferred_locales"] = p["preferred_locales"] or []
    update_metadata(cust, p.get("metadata"))
    if isinstance(p.get("invoice_settings"), dict) and "default_payment_method" in p["invoice_settings"]:
        ref = p["invoice_settings"]["default_payment_method"]
        if ref:
            pm = resolve_payment_method(store, ref, "invoice_settings[default_payment_method]")
            if pm["customer"] != id:
                raise invalid(f"The customer does not have a payment method with the ID {pm['id']}. "
                              "The payment method must be attached to the customer.",
                              "invoice_settings[default_payment_method]")
            cust["invoice_settings"]["default_payment_method"] = pm["id"]
        else:
            cust["invoice_settings"]["default_payment_method"] = None
    prev = diff(before, cust, cust.keys())
    if prev:
        store.emit("customer.updated", cust, prev)
    return ctx.out(cust)


@route("GET", "/v1/customers", "_customer_list_params:CustomerListParams")
def list_customers(ctx: Ctx):
    p = ctx.params
    objs = equal_filter(ctx.store.all("customer"), p, "email", "test_clock")
    objs = created_filter(objs, p.get("created"))
    return ctx.page(objs, "/v1/customers")


_CLAUSE = re.compile(r"""(\w+)(?:\[['"]([^'"]+)['"]\])?\s*(:|~)\s*['"]([^'"]*)['"]""")


@route("GET", "/v1/customers/search", "_customer_search_params:CustomerSearchParams")
def search_customers(ctx: Ctx):
    """A small subset of Stripe's search language: field:'value' / metadata['k']:'v', joined by AND."""
    query = ctx.params.get("query", "")
    objs = ctx.store.all("customer")
    for clause in re.split(r"\s+AND\s+", query.strip()):
        m = _CLAUSE.fullmatch(clause.strip())
        if not m:
            raise invalid(f"Invalid search query: {query}", "query")
        field, key, op, value = m.groups()
        def get(c):
            return (c.get("metadata") or {}).get(key) if field == "metadata" else c.get(field)
        objs = [c for c in objs if (get(c) == value if op == ":" else value.lower() in str(get(c) or "").lower())]
    res = ctx.page(objs, "/v1/customers/search")
    res.update(object="search_result", next_page=None)
    return res


@route("DELETE", "/v1/customers/{id}", "_customer_delete_params:CustomerDeleteParams")
def delete_customer(ctx: Ctx, id):
    store = ctx.store
    cust = get_or_404(store, "customer", id)
    for sub in store.all("subscription"):
        if sub["customer"] == id and sub["status"] not in ("canceled", "incomplete_expired"):
            cancel_now(store, sub, now_for(store, id))
    store.delete("customer", id)
    store.put({"id": id, "object": "deleted_customer"})
    store.emit("customer.deleted", cust)
    return o.deleted("customer", id)


@route("GET", "/v1/customers/{id}/payment_methods", "_customer_payment_method_list_params:CustomerPaymentMethodListParams")
def customer_payment_methods(ctx: Ctx, id):
    get_or_404(ctx.store, "customer", id)
    objs = [pm for pm in ctx.store.all("payment_method") if pm["customer"] == id]
    return ctx.page(objs, f"/v1/customers/{id}/payment_methods")


# --- payment methods ---------------------------------------------------------------------------------
@route("POST", "/v1/payment_methods", "_payment_method_create_params:PaymentMethodCreateParams")
def create_payment_method(ctx: Ctx):
    """Only test tokens: card[token]=tok_visa-style or payment_method=pm_card_* (raw numbers need PCI)."""
    p = ctx.params
    card = p.get("card") or {}
    ref = p.get("payment_method") or card.get("token") or card.get("number")
    if isinstance(ref, str) and ref.startswith("tok_"):
        ref = "pm_card_" + ref[4:]
    if not ref:
        raise invalid("The sandbox creates card payment methods from test tokens: pass card[token]=tok_visa "
                      "or payment_method=pm_card_visa.", "card")
    pm = resolve_payment_method(ctx.store, ref)
    if p.get("billing_details"):
        pm["billing_details"].update({k: v for k, v in p["billing_details"].items() if k != "address"})
    if p.get("metadata"):
        pm["metadata"] = p["metadata"]
    return ctx.out(pm)


@route("GET", "/v1/payment_methods/{id}", "_payment_method_retrieve_params:PaymentMethodRetrieveParams")
def get_payment_method(ctx: Ctx, id):
    return ctx.out(resolve_payment_method(ctx.store, id, "id"))


def card_expiry(card: dict, params: dict) -> tuple[int, int]:
    """The (month, year) a card update asks for, refused as Stripe refuses it: a month outside 1-12, or a date
    already past (by the real clock: a card network's, not a test clock's)."""
    month, year = as_int(params.get("exp_month"), "exp_month"), as_int(params.get("exp_year"), "exp_year")
    month, year = card["exp_month"] if month is None else month, card["exp_year"] if year is None else year
    today = dt.datetime.fromtimestamp(real_now(), dt.UTC)
    if not 1 <= month <= 12:
        raise StripeError(402, "card_error", "invalid_expiry_month", "Your card's expiration month is invalid.", "exp_month")
    if not today.year <= year <= today.year + 50:
        raise StripeError(402, "card_error", "invalid_expiry_year", "Your card's expiration year is invalid.", "exp_year")
    if (year, month) < (today.year, today.month):
        raise StripeError(402, "card_error", "invalid_expiry_month", "Your card's expiration month is invalid.", "exp_month")
    return month, year


@route("POST", "/v1/payment_methods/{id}", "_payment_method_update_params:PaymentMethodUpdateParams")
def update_payment_method(ctx: Ctx, id):
    """Metadata, billing details (a field sent empty is cleared; an address replaces the old one) and a card's
    expiry, as Stripe documents; payment_method.updated carries the old values."""
    p, pm = ctx.params, get_or_404(ctx.store, "payment_method", id, "PaymentMethod")
    card = p.get("card") or {}
    month, year = card_expiry(pm["card"], card) if {"exp_month", "exp_year"} & card.keys() else (None, None)
    details = p.get("billing_details") or {}
    address = clean_address(details["address"], "billing_details[address]") if "address" in details else None
    before = copy.deepcopy(pm)
    update_metadata(pm, p.get("metadata"))
    if month:
        pm["card"].update(exp_month=month, exp_year=year)
    for key, value in details.items():
        pm["billing_details"][key] = (address or dict(o.ADDRESS_NULL)) if key == "address" else (value or None)
    ctx.store.emit("payment_method.updated", pm, diff(before, pm, pm.keys()))
    return ctx.out(pm)


@route("POST", "/v1/payment_methods/{id}/attach", "_payment_method_attach_params:PaymentMethodAttachParams")
def attach_payment_method(ctx: Ctx, id):
    pm = resolve_payment_method(ctx.store, id, "id")
    cust = get_or_404(ctx.store, "customer", ctx.params["customer"], param="customer")
    attach(ctx.store, pm, cust)
    return ctx.out(pm)


@route("POST", "/v1/payment_methods/{id}/detach", "_payment_method_detach_params:PaymentMethodDetachParams")
def detach_payment_method(ctx: Ctx, id):
    store = ctx.store
    pm = get_or_404(store, "payment_method", id, "PaymentMethod")
    if not pm["customer"]:
        raise invalid("The payment method you provided is not attached to a customer so detachment is impossible.", None)
    cust = store.get("customer", pm["customer"])
    prev_customer = pm["customer"]
    pm["customer"] = None
    if cust and cust["invoice_settings"]["default_payment_method"] == id:
        cust["invoice_settings"]["default_payment_method"] = None
        store.emit("customer.updated", cust, {"invoice_settings": {"default_payment_method": id}})
    for sub in store.all("subscription"):
        if sub.get("default_payment_method") == id:
            sub["default_payment_method"] = None
    store.emit("payment_method.detached", pm, {"customer": prev_customer})
    return ctx.out(pm)


@route("GET", "/v1/payment_methods", "_payment_method_list_params:PaymentMethodListParams")
def list_payment_methods(ctx: Ctx):
    objs = equal_filter(ctx.store.all("payment_method"), ctx.params, "customer", "type")
    return ctx.page(objs, "/v1/payment_methods")
