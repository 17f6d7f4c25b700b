"""Checkout sessions: creation, expiry, and completion (hosted page and test helper)."""

from __future__ import annotations

import copy

from .. import discounts as disc
from .. import objects as o
from ..api import Ctx, created_filter, equal_filter, route, update_metadata
from ..billing import (
    FAILURES, approved, attach, authentication_error, charge_card, decline_error, finalize, get_or_404, get_required, mark_paid, new_invoice, now_for, product_name,
    real_now, resolve_payment_method, start_subscription,
)
from ..errors import StripeError, card_declined, invalid
from ..ids import gen_id
from ..params import as_bool, as_int, as_list
from .customers import clean_address

DEFAULT_TTL = 24 * 3600


@route("POST", "/v1/checkout/sessions", "checkout._session_create_params:SessionCreateParams")
def create_session(ctx: Ctx):
    p, store = ctx.params, ctx.store
    mode = p.get("mode")
    if mode not in ("subscription", "payment"):
        if mode == "setup":
            raise invalid("The sandbox supports Checkout in `payment` and `subscription` mode only.", "mode")
        raise invalid("Missing required param: mode.", "mode", "parameter_missing")
    items = as_list(p.get("line_items"))
    if not items:
        raise invalid("line_items is required in `%s` mode." % mode, "line_items", "parameter_missing")
    if (p.get("ui_mode") or "hosted_page") != "hosted_page":
        raise invalid("The sandbox supports ui_mode=hosted_page only.", "ui_mode")
    if not p.get("success_url"):
        raise invalid("You must provide a success_url in hosted mode.", "success_url", "parameter_missing")
    cust = None
    if p.get("customer"):
        cust = get_or_404(store, "customer", p["customer"], param="customer")
    line_items, currency, total = [], None, 0
    has_recurring = False
    for i, li in enumerate(items):
        if not li.get("price") and li.get("price_data"):
            raise invalid("The sandbox needs line_items[%d][price]; price_data is not supported." % i, f"line_items[{i}][price_data]")
        pr = get_required(store, "price", li, "price", f"line_items[{i}][price]")
        if not pr["active"]:
            raise invalid("The price specified is inactive. This field only accepts active prices.", f"line_items[{i}][price]")
        if mode == "payment" and pr["type"] == "recurring":
            raise invalid("You specified `payment` mode but passed a recurring price. Either switch to `subscription` mode "
                          "or use only one-time prices.", "line_items")
        has_recurring |= pr["type"] == "recurring"
        if currency and pr["currency"] != currency:
            raise invalid("All line items must use the same currency.", "line_items")
        currency = pr["currency"]
        qty = as_int(li.get("quantity"), f"line_items[{i}][quantity]") or 1
        item = o.checkout_item(pr, qty)
        item["description"] = product_name(store, pr)
        item["adjustable_quantity"] = adjustable_quantity(li.get("adjustable_quantity"), qty, i)
        line_items.append(item)
        total += item["amount_total"]
    if mode == "subscription" and not has_recurring:
        raise invalid("You must provide at least one recurring price in `subscription` mode when using prices.", "line_items")
    now = real_now()
    expires_at = as_int(p.get("expires_at"), "expires_at") or now + DEFAULT_TTL
    if not now + 1800 <= expires_at <= now + DEFAULT_TTL + 60:
        raise invalid("The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout Session creation.", "expires_at")
    cs_id = "cs_test_" + gen_id("x", 58)[2:]
    invoice_creation = None
    if mode == "payment":
        ic = p.get("invoice_creation") or {}
        data = ic.get("invoice_data") or {}
        invoice_creation = {"enabled": as_bool(ic.get("enabled"), "invoice_creation[enabled]") or False,
                            "invoice_data": o.invoice_data(data.get("description"), data.get("metadata"), data.get("footer"))}
    cs = o.checkout_session(
        cs_id, now, mode, f"{store.base_url}/checkout/{cs_id}", amount_subtotal=total, amount_total=total, currency=currency,
        cancel_url=p.get("cancel_url"), success_url=p["success_url"], client_reference_id=p.get("client_reference_id"),
        customer=cust["id"] if cust else None, customer_email=p.get("customer_email"), expires_at=expires_at,
        metadata=p.get("metadata") or {}, invoice_creation=invoice_creation,
        customer_creation=None if cust else ("always" if mode == "subscription" else p.get("customer_creation") or "if_required"))
    cs["_line_items"] = line_items
    sd = p.get("subscription_data") or {}
    cs["_subscription_data"] = {
        "metadata": sd.get("metadata") or {},
        "trial_period_days": as_int(sd.get("trial_period_days"), "subscription_data[trial_period_days]"),
        "trial_end": as_int(sd.get("trial_end"), "subscription_data[trial_end]"),
        "description": sd.get("description"),
        "missing_payment_method": ((sd.get("trial_settings") or {}).get("end_behavior") or {}).get("missing_payment_method"),
    }
    pid = p.get("payment_intent_data") or {}
    cs["_payment_intent_data"] = {"metadata": pid.get("metadata") or {}, "description": pid.get("description")}
    if mode == "subscription" and p.get("payment_method_collection") == "if_required":
        cs["payment_method_collection"] = "if_required"
    _billing_options(store, cs, p, cust)
    store.put(cs)
    return ctx.out(cs)


def adjustable_quantity(aq, quantity: int, i: int) -> dict | None:
    """`line_items[i][adjustable_quantity]` as Stripe answers it (defaults: minimum 0, maximum 99)."""
    if not isinstance(aq, dict):
        return None
    where = f"line_items[{i}][adjustable_quantity]"
    if "enabled" not in aq:
        raise invalid(f"Missing required param: {where}[enabled].", f"{where}[enabled]", "parameter_missing")
    if not as_bool(aq.get("enabled"), f"{where}[enabled]"):
        return None
    minimum = as_int(aq.get("minimum"), f"{where}[minimum]")
    maximum = as_int(aq.get("maximum"), f"{where}[maximum]")
    minimum = 0 if minimum is None else minimum
    maximum = 99 if maximum is None else maximum
    if not 0 <= minimum <= maximum <= 999999:
        raise invalid("adjustable_quantity needs 0 <= minimum <= maximum <= 999999.", where)
    if not minimum <= quantity <= maximum:
        raise invalid(f"The quantity of line_items[{i}] must be between its adjustable_quantity minimum and maximum.",
                      f"line_items[{i}][quantity]")
    return {"enabled": True, "maximum": maximum, "minimum": minimum}


def set_quantity(cs: dict, quantity, param: str = "quantity") -> None:
    """The buyer changed the first adjustable line item's quantity (hosted page or test helper)."""
    li = next((li for li in cs["_line_items"] if li.get("adjustable_quantity")), None)
    if li is None:
        raise invalid("No line item of this Checkout Session has an adjustable quantity.", param)
    qty = as_int(quantity, param)
    aq = li["adjustable_quantity"]
    if qty is None or not aq["minimum"] <= qty <= aq["maximum"]:
        raise invalid(f"Choose a quantity from {aq['minimum']} to {aq['maximum']}.", param)
    unit = li["amount_subtotal"] // li["quantity"] if li["quantity"] else 0
    li.update(quantity=qty, amount_subtotal=unit * qty, amount_total=unit * qty)
    total = sum(x["amount_total"] for x in cs["_line_items"])
    cs.update(amount_subtotal=total, amount_total=total)


def _billing_options(store, cs: dict, p: dict, cust: dict | None) -> None:
    """Promotion codes, discounts, address and tax ID collection, automatic tax (checked as Stripe does)."""
    allow_codes = as_bool(p.get("allow_promotion_codes"), "allow_promotion_codes")
    if allow_codes and p.get("discounts"):
        raise invalid("You may only specify one of these parameters: allow_promotion_codes, discounts.", "discounts")
    update = p.get("customer_update") or {}
    if update and not cust:
        raise invalid("customer_update can only be used with customer.", "customer_update")
    tax_ids = as_bool((p.get("tax_id_collection") or {}).get("enabled"), "tax_id_collection[enabled]") or False
    tax = as_bool((p.get("automatic_tax") or {}).get("enabled"), "automatic_tax[enabled]") or False
    if tax_ids and cust and update.get("name") != "auto":
        raise invalid("tax_id_collection[enabled]=true requires customer_update[name]=auto when an existing customer is provided.",
                      "customer_update[name]")
    if tax and cust and not (cust.get("address") or {}).get("country") and update.get("address") != "auto":
        raise invalid("Automatic tax calculation requires a valid address on the Customer. Add a valid address to the Customer "
                      "or set `customer_update[address]` to 'auto' to save the address entered in Checkout.", "automatic_tax[enabled]")
    cs["allow_promotion_codes"] = bool(allow_codes) if allow_codes is not None else None
    cs["billing_address_collection"] = p.get("billing_address_collection") or None
    cs["tax_id_collection"] = {"enabled": tax_ids, "required": (p.get("tax_id_collection") or {}).get("required") or "never"}
    cs["automatic_tax"] = {"enabled": tax, "liability": {"account": None, "type": "self"} if tax else None,
                           "status": "requires_location_inputs" if tax else None, "provider": "stripe" if tax else None}
    cs["_customer_update"] = {k: update.get(k) for k in ("address", "name")}
    given = disc.from_params(store, p.get("discounts"), cust["id"] if cust else None, "discounts")
    if any(kind == "discount" for kind, _ in given):
        raise invalid("Checkout takes coupons or promotion codes, not existing discounts.", "discounts")
    cs["discounts"] = [{"coupon": v["id"], "promotion_code": None} if k == "coupon" else {"coupon": None, "promotion_code": v["id"]}
                       for k, v in given]
    _price_session(store, cs, cust)


def _session_coupons(store, cs: dict) -> list[tuple[dict, dict | None]]:
    """(coupon, promotion code or None) for each of the session's discounts."""
    out = []
    for d in cs["discounts"] or []:
        if d.get("promotion_code"):
            promo = store.get("promotion_code", d["promotion_code"])
            out.append((store.get("coupon", promo["promotion"]["coupon"]), promo))
        else:
            out.append((store.get("coupon", d["coupon"]), None))
    return out


def _price_session(store, cs: dict, cust: dict | None) -> None:
    """amount_subtotal / total_details / amount_total from the line items, the discounts and the tax."""
    subtotal = sum(li["amount_subtotal"] for li in cs["_line_items"])
    trial = cs["mode"] == "subscription" and (cs.get("_subscription_data") or {}).get("trial_period_days")
    inv = {"currency": cs["currency"], "lines": {"data": [
        {"id": li["id"], "amount": 0 if trial else li["amount_subtotal"], "discountable": True} for li in cs["_line_items"]]}}
    # Not yet redeemed: priced as discounts would be, none made.
    planned = [o.discount(f"di_planned_{i}", 0, None, c["id"]) for i, (c, _) in enumerate(_session_coupons(store, cs))]
    disc.price_invoice(store, inv, planned, cust, cs["automatic_tax"]["enabled"])
    discount = sum(x["amount"] for x in inv["total_discount_amounts"])
    tax = sum(x["amount"] for x in inv["total_taxes"])
    for li in cs["_line_items"]:
        line = next(x for x in inv["lines"]["data"] if x["id"] == li["id"])
        li["amount_discount"] = sum(x["amount"] for x in line["discount_amounts"])
        li["amount_tax"] = sum(x["amount"] for x in line["taxes"])
        li["amount_total"] = li["amount_subtotal"] - li["amount_discount"] + li["amount_tax"] if not trial else li["amount_subtotal"]
    cs["amount_subtotal"] = subtotal
    cs["total_details"] = {"amount_discount": discount, "amount_shipping": 0, "amount_tax": tax}
    cs["amount_total"] = subtotal if trial else subtotal - discount + tax
    if cs["automatic_tax"]["enabled"]:
        cs["automatic_tax"]["status"] = inv["automatic_tax"]["status"]


def expire_if_due(store, cs: dict) -> None:
    """Sessions expire lazily: whoever looks at one after expires_at sees it expired."""
    if cs["status"] == "open" and cs["expires_at"] and cs["expires_at"] <= real_now():
        expire(store, cs)


def expire(store, cs: dict) -> None:
    cs["status"] = "expired"
    cs["url"] = None
    store.emit("checkout.session.expired", cs)


def load(store, id_) -> dict:
    cs = get_or_404(store, "checkout.session", id_, "checkout.session")
    expire_if_due(store, cs)
    return cs


@route("GET", "/v1/checkout/sessions/{id}", "checkout._session_retrieve_params:SessionRetrieveParams")
def get_session(ctx: Ctx, id):
    return ctx.out(load(ctx.store, id))


@route("GET", "/v1/checkout/sessions", "checkout._session_list_params:SessionListParams")
def list_sessions(ctx: Ctx):
    p, store = ctx.params, ctx.store
    objs = store.all("checkout.session")
    for cs in objs:
        expire_if_due(store, cs)
    objs = equal_filter(objs, p, "customer", "payment_intent", "subscription", "status")
    objs = created_filter(objs, p.get("created"))
    return ctx.page(objs, "/v1/checkout/sessions")


@route("GET", "/v1/checkout/sessions/{id}/line_items", "checkout._session_line_item_list_params:SessionLineItemListParams")
def session_line_items(ctx: Ctx, id):
    cs = load(ctx.store, id)
    return ctx.page(cs["_line_items"], f"/v1/checkout/sessions/{id}/line_items")


@route("POST", "/v1/checkout/sessions/{id}", "checkout._session_update_params:SessionUpdateParams")
def update_session(ctx: Ctx, id):
    cs = load(ctx.store, id)
    if "metadata" in ctx.params:
        update_metadata(cs, ctx.params["metadata"])
    return ctx.out(cs)


@route("POST", "/v1/checkout/sessions/{id}/expire", "checkout._session_expire_params:SessionExpireParams")
def expire_session(ctx: Ctx, id):
    cs = load(ctx.store, id)
    if cs["status"] != "open":
        raise invalid(f"Only Checkout Sessions with a status in [\"open\"] can be expired. This Checkout Session has a status of \"{cs['status']}\".",
                      None)
    expire(ctx.store, cs)
    return ctx.out(cs)


@route("POST", "/v1/test_helpers/checkout/sessions/{id}/complete", None)
def helper_complete(ctx: Ctx, id):
    """Sandbox-only: what the hosted page does when the customer pays, for tests without a browser.

    payment_method: a pm_card_* token or card number (default pm_card_visa); email/name for a new
    customer; async_payment=succeeded|failed simulates a delayed payment method; quantity=N is what
    the buyer set on an adjustable line item; authentication=approve|fail is the customer's answer to
    3-D Secure (a card that needs it is refused with 402 `authentication_required` without one).
    """
    p = ctx.params
    unknown = set(p) - {"payment_method", "email", "name", "async_payment", "quantity", "expand", "promotion_code", "billing_address",
                        "business_name", "tax_id", "authentication"}
    if unknown:
        k = sorted(unknown)[0]
        raise invalid(f"Received unknown parameter: {k}", k, "parameter_unknown")
    cs = load(ctx.store, id)
    if p.get("quantity") not in (None, ""):
        if cs["status"] != "open":
            raise invalid(f"This Checkout Session is {cs['status']}; it can no longer be completed.", None, "checkout_session_not_open")
        set_quantity(cs, p["quantity"])
    tax_id = p.get("tax_id") if isinstance(p.get("tax_id"), dict) else None
    complete(ctx.store, cs, p.get("payment_method") or "pm_card_visa", p.get("email"), p.get("name"),
             async_payment=p.get("async_payment"), promotion_code=p.get("promotion_code"),
             address=p.get("billing_address") if isinstance(p.get("billing_address"), dict) else None,
             business_name=p.get("business_name"), tax_id=tax_id,
             authentication=p.get("authentication"))
    return ctx.out(cs)


# What the test helper fills in when a session collects an address and none is given.
DEFAULT_ADDRESS = {"line1": "1 Test Street", "city": "San Francisco", "state": "CA", "postal_code": "94103", "country": "US"}


def needs_address(cs: dict) -> bool:
    return cs.get("billing_address_collection") == "required" or cs["automatic_tax"]["enabled"]


def apply_promotion_code(store, cs: dict, code: str | None) -> None:
    """A code typed on the page: checked now, priced into the session (or Stripe's words for why not)."""
    if not code:
        return
    if not cs.get("allow_promotion_codes"):
        raise invalid("This Checkout Session does not accept promotion codes.", "promotion_code")
    promo = disc.find_promotion_code(store, code)
    problem = "This code is invalid." if promo is None else disc.promotion_valid(store, promo, cs["customer"])
    if problem:
        raise StripeError(400, "invalid_request_error", "promotion_code_invalid", problem, "promotion_code")
    cs["discounts"] = [{"coupon": None, "promotion_code": promo["id"]}]


def complete(store, cs: dict, pm_ref: str, email: str | None = None, name: str | None = None, async_payment: str | None = None,
             promotion_code: str | None = None, address: dict | None = None, business_name: str | None = None,
             tax_id: dict | None = None, authentication: str | None = None) -> dict:
    """Pay for a session: raises a 402 card_error (session stays open) if the card is declined.

    A card that needs 3-D Secure needs `authentication`: "approve" pays, "fail" is refused like a
    decline (the session stays open); none at all is refused with `authentication_required`.

    `promotion_code` (a code as typed), `address` (the billing address) and `business_name` /
    `tax_id` ({type, value}) are what the page collects when the session asks for them.
    """
    if cs["status"] != "open":
        raise invalid(f"This Checkout Session is {cs['status']}; it can no longer be completed.", None, "checkout_session_not_open")
    priced = ("discounts", "amount_subtotal", "amount_total", "total_details", "automatic_tax", "_line_items")
    before = {k: copy.deepcopy(cs[k]) for k in priced}
    try:
        apply_promotion_code(store, cs, promotion_code)
        address = clean_address(address, "billing_address") if address else (dict(DEFAULT_ADDRESS) if needs_address(cs) else None)
        if tax_id and tax_id.get("value"):
            if not cs["tax_id_collection"]["enabled"]:
                raise invalid("This Checkout Session does not collect tax IDs.", "tax_id")
            disc.normalise_tax_id(tax_id.get("type") or "eu_vat", tax_id["value"])
        known = store.get("customer", cs["customer"]) if cs["customer"] else None
        _price_session(store, cs, {"address": address or (known or {}).get("address")})
        return _complete(store, cs, pm_ref, email, name, async_payment, address, business_name, tax_id, authentication)
    except StripeError:
        cs.update(before)  # a refused code, a bad tax ID or a declined card leaves the session as it was
        raise


def _free(cs: dict) -> bool:
    """A payment-mode session whose total is 0 (a 100%-off code): Stripe charges nothing and makes no
    PaymentIntent (a charge is at least $0.50); it completes as no_payment_required."""
    return cs["mode"] == "payment" and cs["amount_total"] == 0


def _complete(store, cs: dict, pm_ref: str, email, name, async_payment, address, business_name, tax_id, authentication) -> dict:
    pm = resolve_payment_method(store, pm_ref)
    rest = (email, name, async_payment, address, business_name, tax_id)
    if _free(cs):
        return _pay(store, cs, pm, *rest)  # no card is asked for, so none can be declined
    if pm["_behaviour"] == "authenticate":
        if authentication == "fail":
            raise authentication_error()
        if authentication != "approve":
            raise StripeError(402, "card_error", "authentication_required",
                              "This card requires authentication: answer the 3-D Secure step (authentication=approve or fail).")
        with approved(store, pm["id"]):
            return _pay(store, cs, pm, *rest)
    if pm["_behaviour"] in FAILURES:
        # The first charge fails, so Checkout keeps the customer on the page with the error.
        failure = FAILURES[pm["_behaviour"]]
        if cs["mode"] == "payment":
            cust_id = cs["customer"]
            pi, ch, _ = charge_card(store, cs["amount_total"], cs["currency"], cust_id, pm, now_for(store, cust_id))
            cs["payment_intent"] = pi["id"]
            raise decline_error(pi, ch)
        raise card_declined(failure[1], failure[2])
    return _pay(store, cs, pm, *rest)


def _pay(store, cs: dict, pm: dict, email, name, async_payment, address, business_name, tax_id) -> dict:
    email = email or cs["customer_email"]
    if cs["customer"]:
        cust = store.get("customer", cs["customer"])
        _update_customer(store, cs, cust, address, business_name)
    elif cs["mode"] == "subscription" or cs["customer_creation"] == "always" or (cs.get("invoice_creation") or {}).get("enabled"):
        cust = o.customer(gen_id("cus", 14), real_now(), email=email or "customer@example.com", name=business_name or name,
                          address=address)
        store.put(cust)
        store.emit("customer.created", cust)
        cs["customer"] = cust["id"]
    else:
        cust = None
    now = now_for(store, cust["id"] if cust else None)
    tax_ids = []
    if tax_id and tax_id.get("value") and cust:
        made = disc.add_tax_id(store, cust, tax_id.get("type") or "eu_vat", tax_id["value"], now)
        tax_ids = [{"type": made["type"], "value": made["value"]}]
    cs["customer_details"] = {"address": address, "email": (cust or {}).get("email") or email,
                              "name": (cust or {}).get("name") or business_name or name, "phone": None, "tax_exempt": "none",
                              "tax_ids": tax_ids, "business_name": business_name or None, "individual_name": None}
    # The session's discounts become real ones: redeemed now, carried by the subscription.
    made_discounts = []
    for c, promo in _session_coupons(store, cs):
        d = disc.new_discount(store, cust["id"] if cust else None, c, now, promo=promo, checkout_session=cs["id"])
        made_discounts.append(d)
    if cs["mode"] == "subscription":
        attach(store, pm, cust)
        sd = cs["_subscription_data"]
        items = [(store.get("price", li["price"]), li["quantity"]) for li in cs["_line_items"]]
        sub, inv, ok = start_subscription(store, cust, items, now, pm=pm, trial_days=sd["trial_period_days"],
                                          trial_end=sd["trial_end"], metadata=sd["metadata"], description=sd["description"],
                                          missing_pm=sd["missing_payment_method"] or "create_invoice",
                                          discounts=[("discount", d) for d in made_discounts],
                                          automatic_tax=cs["automatic_tax"]["enabled"])
        cs.update(subscription=sub["id"], invoice=inv["id"])
        cs["payment_status"] = "no_payment_required" if sub["status"] == "trialing" and inv["amount_due"] == 0 else "paid"
    else:
        pi = store.get("payment_intent", cs["payment_intent"]) if cs["payment_intent"] else None
        if cust and not _free(cs):
            attach(store, pm, cust)
        inv = None
        if cust and (cs.get("invoice_creation") or {}).get("enabled"):
            lines = [{"amount": li["amount_subtotal"], "description": li["description"], "price": store.get("price", li["price"]),
                      "quantity": li["quantity"], "period": (now, now)} for li in cs["_line_items"]]
            inv = new_invoice(store, cust, cs["currency"], lines, "manual", now, discounts=made_discounts,
                              tax=cs["automatic_tax"]["enabled"])
            finalize(store, inv, now)
        if _free(cs):
            cs["payment_status"] = "no_payment_required"  # its $0 invoice, if any, was paid when finalized
        else:
            pid = cs["_payment_intent_data"]
            pi, _, _ = charge_card(store, cs["amount_total"], cs["currency"], cust["id"] if cust else None, pm, now,
                                   description=pid["description"], metadata=pid["metadata"], pi=pi)
            cs["payment_intent"] = pi["id"]
            if inv:
                store.put(o.invoice_payment(gen_id("inpay"), now, inv, pi["id"]))
                mark_paid(store, inv, now)
            cs["payment_status"] = "paid"
        if inv:
            cs["invoice"] = inv["id"]
    cs["status"] = "complete"
    cs["url"] = None
    if async_payment in ("succeeded", "failed") and cs["payment_status"] != "no_payment_required":
        cs["payment_status"] = "unpaid"
        store.emit("checkout.session.completed", cs)
        cs["payment_status"] = "paid" if async_payment == "succeeded" else "unpaid"
        if async_payment == "failed" and cs["mode"] == "payment":
            _debit_failed(store, cs)
        store.emit(f"checkout.session.async_payment_{async_payment}", cs)
    else:
        store.emit("checkout.session.completed", cs)
    return cs


def _debit_failed(store, cs: dict) -> None:
    """A delayed debit that bounced, as Stripe leaves it: the charge failed, nothing received, the
    payment intent back to requires_payment_method (the session stays complete and unpaid)."""
    pi = store.get("payment_intent", cs["payment_intent"])
    ch = store.get("charge", pi["latest_charge"]) if pi.get("latest_charge") else None
    reason = ("insufficient_funds", "The customer's account has insufficient funds to cover this payment.")
    if ch:
        ch.update(status="failed", paid=False, captured=False, amount_captured=0, balance_transaction=None,
                  failure_code=reason[0], failure_message=reason[1])
        store.emit("charge.failed", ch)
    pi.update(status="requires_payment_method", amount_received=0,
              last_payment_error={"type": "invalid_request_error", "code": reason[0], "message": reason[1],
                                  "charge": ch["id"] if ch else None})
    store.emit("payment_intent.payment_failed", pi)


def _update_customer(store, cs: dict, cust: dict, address: dict | None, business_name: str | None) -> None:
    """`customer_update[address|name]=auto`: what was typed on the page is saved on the customer."""
    wanted = cs.get("_customer_update") or {}
    before = {"address": cust.get("address"), "name": cust.get("name")}
    if wanted.get("address") == "auto" and address:
        cust["address"] = address
    if wanted.get("name") == "auto" and business_name:
        cust["name"] = business_name
    changed = {k: v for k, v in before.items() if cust.get(k) != v}
    if changed:
        store.emit("customer.updated", cust, changed)
