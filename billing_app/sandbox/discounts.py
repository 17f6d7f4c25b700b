"""Coupons, promotion codes and discounts, and Stripe Tax: what they do to an invoice.

A discount is the application of a coupon (directly, or through a promotion code) to a
subscription or a Checkout Session. Invoices price their discountable lines through the
subscription's live discounts (`price_invoice`); a `once` discount is used up by the first
invoice it reduces, a `repeating` one ends `duration_in_months` after it started. Automatic tax
charges one rate per customer country (`TAX_RATES`, as if the account were registered there).
"""

from __future__ import annotations

import re

from . import objects as o
from .dates import add_interval
from .errors import StripeError, invalid, missing
from .objects import coupon_valid, real_now
from .ids import gen_id

# Percent, by the customer's billing country: the sandbox's stand-in for Stripe Tax's registrations.
TAX_RATES = {
    "US": 8.0, "CA": 5.0, "GB": 20.0, "IE": 23.0, "DE": 19.0, "FR": 20.0, "NL": 21.0, "BE": 21.0, "ES": 21.0,
    "IT": 22.0, "AT": 20.0, "SE": 25.0, "DK": 25.0, "FI": 25.5, "PL": 23.0, "PT": 23.0, "CH": 8.1, "NO": 25.0,
    "AU": 10.0, "NZ": 15.0, "JP": 10.0,
}


# --- coupons and promotion codes ---------------------------------------------------------------------
def redeemable_coupon(store, coupon_id: str, param: str) -> dict:
    c = store.get("coupon", coupon_id) if isinstance(coupon_id, str) else None
    if c is None or c.get("_deleted"):
        raise missing("coupon", coupon_id, param)
    if not coupon_valid(c):
        raise invalid(f"Coupon {coupon_id} is used up or expired and cannot be redeemed.", param, "coupon_expired")
    return c


def find_promotion_code(store, code: str) -> dict | None:
    """The active promotion code with this customer-facing code (codes match regardless of case)."""
    wanted = (code or "").strip().upper()
    return next((p for p in store.all("promotion_code") if p["active"] and p["code"].upper() == wanted), None)


def promotion_valid(store, promo: dict, customer_id: str | None, at: int | None = None) -> str | None:
    """Why this promotion code cannot be redeemed now (None when it can)."""
    at = real_now() if at is None else at
    if not promo["active"]:
        return "This promotion code is inactive."
    if promo.get("expires_at") and promo["expires_at"] <= at:
        return "This promotion code has expired."
    if promo.get("max_redemptions") is not None and promo["times_redeemed"] >= promo["max_redemptions"]:
        return "This promotion code has been used up."
    if promo.get("customer") and promo["customer"] != customer_id:
        return "This promotion code cannot be used by this customer."
    c = store.get("coupon", promo["promotion"]["coupon"])
    if c is None or not coupon_valid(c, at):
        return "This promotion code's coupon is no longer valid."
    return None


def redeemable_promotion(store, promo_id: str, customer_id: str | None, param: str) -> dict:
    promo = store.get("promotion_code", promo_id) if isinstance(promo_id, str) else None
    if promo is None:
        raise missing("promotion code", promo_id, param)
    problem = promotion_valid(store, promo, customer_id)
    if problem:
        raise invalid(problem, param, "promotion_code_invalid" if promo["active"] else "coupon_expired")
    return promo


def describe(c: dict) -> str:
    off = f"{c['percent_off']:g}% off" if c.get("percent_off") is not None else f"{c['amount_off'] / 100:.2f} {str(c['currency']).upper()} off"
    if c["duration"] == "repeating":
        return f"{off} for {c['duration_in_months']} months"
    return f"{off} {'forever' if c['duration'] == 'forever' else 'once'}"


# --- discounts ------------------------------------------------------------------------------------------
def discount_end(c: dict, start: int) -> int | None:
    if c["duration"] != "repeating":
        return None
    return add_interval(start, "month", int(c["duration_in_months"]))


def new_discount(store, customer_id: str, c: dict, now: int, *, promo: dict | None = None, sub: dict | None = None,
                 checkout_session: str | None = None) -> dict:
    """Redeem the coupon (and the promotion code): a discount, and `customer.discount.created`."""
    d = o.discount(gen_id("di"), now, customer_id, c["id"], end=discount_end(c, now), subscription=sub["id"] if sub else None,
                   promotion_code=promo["id"] if promo else None, checkout_session=checkout_session)
    store.put(d)
    c["times_redeemed"] += 1
    c["valid"] = coupon_valid(c)
    if promo:
        promo["times_redeemed"] += 1
    store.emit("customer.discount.created", d)
    return d


def from_params(store, specs, customer_id: str, param: str) -> list[tuple[str, object]]:
    """`discounts[]` as (kind, value): ("coupon", coupon), ("promotion_code", promo) or ("discount", id); checked now."""
    out = []
    if specs in (None, ""):
        return out
    if not isinstance(specs, list):
        raise invalid(f"Invalid array: {param}", param)
    for i, spec in enumerate(specs):
        where = f"{param}[{i}]"
        if not isinstance(spec, dict) or len([k for k in ("coupon", "promotion_code", "discount") if spec.get(k)]) != 1:
            raise invalid(f"Each of {param} needs exactly one of coupon, promotion_code or discount.", where)
        if spec.get("coupon"):
            out.append(("coupon", redeemable_coupon(store, spec["coupon"], f"{where}[coupon]")))
        elif spec.get("promotion_code"):
            out.append(("promotion_code", redeemable_promotion(store, spec["promotion_code"], customer_id, f"{where}[promotion_code]")))
        else:
            out.append(("discount", spec["discount"]))
    return out


def live_discounts(store, ids: list[str], at: int) -> list[dict]:
    """The discounts of these ids still running at `at`."""
    out = []
    for d_id in ids or []:
        d = store.get("discount", d_id)
        if d and not d.get("_deleted") and (d["end"] is None or d["end"] > at):
            out.append(d)
    return out


def set_subscription_discounts(store, sub: dict, wanted: list[tuple[str, object]], now: int) -> None:
    """Replace the subscription's discounts (Stripe's `discounts` update): kept ones stay, others end now."""
    before = list(sub["discounts"])
    keep: list[str] = []
    for kind, value in wanted:
        if kind == "discount":
            if value not in before:
                raise invalid(f"The discount {value} is not on this subscription.", "discounts")
            keep.append(value)
        elif kind == "coupon":
            keep.append(new_discount(store, sub["customer"], value, now, sub=sub)["id"])
        else:
            c = store.get("coupon", value["promotion"]["coupon"])
            keep.append(new_discount(store, sub["customer"], c, now, promo=value, sub=sub)["id"])
    for d_id in before:
        if d_id not in keep:
            remove_discount(store, d_id, emit_sub=None)
    sub["discounts"] = keep


# --- a schedule phase's discounts -------------------------------------------------------------------------
def phase_entry(kind: str, value) -> dict:
    """One of a phase's `discounts[]` as Stripe lists it: the coupon, the existing discount or the promotion code."""
    return {"coupon": value["id"] if kind == "coupon" else None, "discount": value if kind == "discount" else None,
            "promotion_code": value["id"] if kind == "promotion_code" else None}


def phase_discounts(store, sub: dict, specs, param: str) -> list[dict]:
    """A phase's `discounts[]` param, checked, as the phase lists it. An existing discount must be one of
    this subscription's (Stripe: "an existing discount on the object (or one of its ancestors)")."""
    entries = []
    for i, (kind, value) in enumerate(from_params(store, specs, sub["customer"], param)):
        if kind == "discount" and (store.get("discount", value) or {}).get("subscription") != sub["id"]:
            raise invalid(f"The discount {value} is not on this subscription.", f"{param}[{i}][discount]")
        entries.append(phase_entry(kind, value))
    return entries


def _phase_wanted(store, sub: dict, entries: list[dict], at: int) -> list[tuple[str, object]]:
    """A phase's discounts as (kind, value) pairs for the subscription at `at`: an existing discount that
    has ended no longer applies; a coupon (or a code's coupon) already running on the subscription keeps
    that discount rather than being redeemed again (so re-sending a phase does not restart it)."""
    running = {d["id"]: d for d in live_discounts(store, sub["discounts"], at)}
    wanted: list[tuple[str, object]] = []
    for e in entries:
        if e["discount"]:
            if e["discount"] in running:
                wanted.append(("discount", e["discount"]))
            continue
        promo = store.get("promotion_code", e["promotion_code"]) if e["promotion_code"] else None
        coupon_id = promo["promotion"]["coupon"] if promo else e["coupon"]
        same = next((d["id"] for d in running.values() if d["source"]["coupon"] == coupon_id), None)
        if same:
            wanted.append(("discount", same))
        else:
            wanted.append(("promotion_code", promo) if promo else ("coupon", store.get("coupon", coupon_id)))
    return wanted


def take_phase_discounts(store, sub: dict, entries: list[dict], at: int) -> bool:
    """The subscription takes its running phase's discounts (when the phase begins, or when the current
    phase is updated): Stripe's "the coupon would be removed" in a phase without it. True if they changed."""
    wanted = _phase_wanted(store, sub, entries, at)
    if [v for k, v in wanted if k == "discount"] == sub["discounts"] and all(k == "discount" for k, _ in wanted):
        return False
    set_subscription_discounts(store, sub, wanted, at)
    return True


def phase_preview_discounts(store, sub: dict, entries: list[dict], at: int) -> list[dict]:
    """The discounts an invoice at `at` would have once the phase began (a coupon not yet redeemed is
    priced as a discount that is not stored)."""
    out = []
    for kind, value in _phase_wanted(store, sub, entries, at):
        if kind == "discount":
            out.append(store.get("discount", value))
        else:
            c = value if kind == "coupon" else store.get("coupon", value["promotion"]["coupon"])
            out.append(o.discount(gen_id("di"), at, sub["customer"], c["id"], subscription=sub["id"]))
    return out


def remove_discount(store, d_id: str, emit_sub: dict | None) -> None:
    """End a discount now: `customer.discount.deleted` (and the subscription's update, when asked)."""
    d = store.get("discount", d_id)
    if d is None or d.get("_deleted"):
        return
    d["_deleted"] = True
    store.emit("customer.discount.deleted", d)
    if emit_sub is not None and d_id in emit_sub["discounts"]:
        before = list(emit_sub["discounts"])
        emit_sub["discounts"] = [x for x in before if x != d_id]
        store.emit("customer.subscription.updated", emit_sub, {"discounts": before})


def end_finished_discounts(store, sub: dict, at: int) -> None:
    """Repeating discounts whose months are over leave the subscription."""
    for d_id in list(sub.get("discounts") or []):
        d = store.get("discount", d_id)
        if d is None or d.get("_deleted") or (d["end"] is not None and d["end"] <= at):
            remove_discount(store, d_id, emit_sub=sub)


# --- tax ----------------------------------------------------------------------------------------------------
def tax_rate_for(cust: dict | None) -> tuple[float | None, str | None]:
    """(percent, country) for the customer's billing address; (None, None) without a known country."""
    country = ((cust or {}).get("address") or {}).get("country")
    if not country:
        return None, None
    return TAX_RATES.get(country.upper(), 0.0), country.upper()


def automatic_tax(enabled: bool, status: str | None) -> dict:
    """An invoice's `automatic_tax`."""
    return {"enabled": enabled, "liability": {"account": None, "type": "self"} if enabled else None,
            "status": status if enabled else None, "disabled_reason": None, "provider": "stripe" if enabled else None}


def _tax_entry(amount: int, taxable: int, country: str, rate: float) -> dict:
    return {"amount": amount, "tax_behavior": "exclusive", "tax_rate_details": {"tax_rate": f"txr_sandbox_{country}"},
            "taxability_reason": "standard_rated" if rate else "not_collecting", "taxable_amount": taxable, "type": "tax_rate_details"}


# --- pricing an invoice -------------------------------------------------------------------------------------
def _cuts(c: dict, remaining: dict, currency: str) -> dict | None:
    """What the coupon takes off each of these positive amounts (an amount_off spread by their size);
    None when it takes nothing (nothing to discount, or another currency)."""
    base = sum(remaining.values())
    if base <= 0:
        return None
    if c.get("percent_off") is not None:
        return {k: round(v * c["percent_off"] / 100) for k, v in remaining.items()}
    if c.get("currency") != currency:
        return None
    total_cut = min(c["amount_off"], base)
    cuts, given = {}, 0
    for i, (k, v) in enumerate(remaining.items()):
        cut = total_cut - given if i == len(remaining) - 1 else total_cut * v // base
        cuts[k], given = cut, given + cut
    return cuts


def net_amounts(store, discounts: list[dict], gross: dict, currency: str) -> dict:
    """Each amount after the discounts, applied in order as on an invoice (`price_invoice`)."""
    net = dict(gross)
    for d in discounts:
        c = store.get("coupon", d["source"]["coupon"])
        for k, cut in ((c and _cuts(c, {k: v for k, v in net.items() if v > 0}, currency)) or {}).items():
            net[k] -= cut
    return net


def price_invoice(store, inv: dict, discounts: list[dict], cust: dict | None, tax: bool) -> None:
    """Apply discounts to the discountable lines, then tax; set the invoice's totals (before any balance).

    Proration lines are not discountable: their amounts are already net of the discounts, which
    they name with amount 0 (Stripe's default `proration_discounts=included`).
    """
    lines = inv["lines"]["data"]
    for line in lines:
        line["taxes"] = []
        if line["discountable"]:
            line["discount_amounts"], line["discounts"] = [], []
    used: dict[str, int] = {}
    for d in discounts:
        c = store.get("coupon", d["source"]["coupon"])
        if c is None:
            continue
        eligible = [l for l in lines if l["discountable"] and l["amount"] > 0]
        remaining = {l["id"]: l["amount"] - sum(x["amount"] for x in l["discount_amounts"]) for l in eligible}
        cuts = _cuts(c, remaining, inv["currency"])
        if cuts is None:
            continue
        for line in eligible:
            cut = cuts.get(line["id"], 0)
            line["discounts"].append(d["id"])
            line["discount_amounts"].append({"amount": cut, "discount": d["id"]})
        used[d["id"]] = sum(cuts.values())
    subtotal = sum(l["amount"] for l in lines)
    discount_total = sum(used.values())
    tax_total, status = 0, None
    if tax:
        rate, country = tax_rate_for(cust)
        status = "complete" if country else "requires_location_inputs"
        entries: dict[str, list[int]] = {}
        if country:
            for line in lines:
                taxable = line["amount"] - sum(x["amount"] for x in line["discount_amounts"])
                if taxable == 0:
                    continue  # a credit (negative) line is taxed too: its tax is credited
                amount = round(taxable * rate / 100)
                line["taxes"] = [_tax_entry(amount, taxable, country, rate)]
                tax_total += amount
                entries.setdefault(country, [0, 0])
                entries[country][0] += amount
                entries[country][1] += taxable
        inv["total_taxes"] = [_tax_entry(a, t, k, rate) for k, (a, t) in entries.items()]
    else:
        inv["total_taxes"] = []
    inv["automatic_tax"] = automatic_tax(tax, status)
    inv["discounts"] = [d["id"] for d in discounts if d["id"] in used]
    inv["total_discount_amounts"] = [{"amount": a, "discount": k} for k, a in used.items()]
    total = subtotal - discount_total + tax_total
    inv.update(subtotal=subtotal, subtotal_excluding_tax=subtotal, total_excluding_tax=subtotal - discount_total,
               total=total, amount_due=max(total, 0), amount_remaining=max(total, 0))


def use_up_once_discounts(store, sub: dict, inv: dict) -> None:
    """A `once` discount that reduced this invoice is spent: it leaves the subscription."""
    for entry in inv["total_discount_amounts"]:
        d = store.get("discount", entry["discount"])
        c = store.get("coupon", d["source"]["coupon"]) if d else None
        if c and c["duration"] == "once" and entry["amount"] > 0:
            remove_discount(store, d["id"], emit_sub=sub)


# --- tax ids ------------------------------------------------------------------------------------------------
EU_VAT = re.compile(
    r"^(ATU\d{8}|BE[01]\d{9}|BG\d{9,10}|CY\d{8}[A-Z]|CZ\d{8,10}|DE\d{9}|DK\d{8}|EE\d{9}|EL\d{9}|ES[A-Z0-9]\d{7}[A-Z0-9]"
    r"|FI\d{8}|FR[A-HJ-NP-Z0-9]{2}\d{9}|HR\d{11}|HU\d{8}|IE\d{7}[A-W][A-I]?|IE\d[A-Z+*]\d{5}[A-W]|IT\d{11}|LT(\d{9}|\d{12})"
    r"|LU\d{8}|LV\d{11}|MT\d{8}|NL\d{9}B\d{2}|PL\d{10}|PT\d{9}|RO\d{2,10}|SE\d{12}|SI\d{8}|SK\d{10}|XI\d{9})$"
)
# type -> (pattern, country); a pattern sees the value upper-cased with spaces removed.
TAX_ID_FORMATS = {
    "eu_vat": (EU_VAT, None),
    "gb_vat": (re.compile(r"^GB(\d{9}|\d{12})$"), "GB"),
    "us_ein": (re.compile(r"^\d{2}-?\d{7}$"), "US"),
    "ch_vat": (re.compile(r"^CHE-?\d{3}\.?\d{3}\.?\d{3}(MWST|TVA|IVA)$"), "CH"),
    "au_abn": (re.compile(r"^\d{11}$"), "AU"),
    "ca_bn": (re.compile(r"^\d{9}$"), "CA"),
    "no_vat": (re.compile(r"^\d{9}MVA$"), "NO"),
}
VERIFIED_TYPES = ("eu_vat", "gb_vat")


def normalise_tax_id(type_: str, value: str) -> tuple[str, str | None, str]:
    """(value as Stripe stores it, country, verification status); Stripe's 400 `tax_id_invalid` when malformed."""
    compact = re.sub(r"\s+", "", value or "").upper()
    fmt = TAX_ID_FORMATS.get(type_)
    if not compact or (fmt and not fmt[0].match(compact)):
        raise StripeError(400, "invalid_request_error", "tax_id_invalid", f"Invalid value for {type_}.", "value")
    if type_ == "eu_vat":
        country = {"EL": "GR", "XI": "GB"}.get(compact[:2], compact[:2])
    else:
        country = fmt[1] if fmt else None
    stored = compact if fmt else value.strip()
    return stored, country, "verified" if type_ in VERIFIED_TYPES else "unavailable"


def add_tax_id(store, cust: dict, type_: str, value: str, now: int) -> dict:
    stored, country, status = normalise_tax_id(type_, value)
    t = o.tax_id(gen_id("txi"), now, cust["id"], type_, stored, country, status)
    store.put(t)
    store.emit("customer.tax_id.created", t)
    return t
