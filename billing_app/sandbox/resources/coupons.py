"""Coupons and promotion codes (discounts themselves live on subscriptions and Checkout Sessions)."""

from __future__ import annotations

import re
import secrets
import string

from .. import objects as o
from ..api import Ctx, created_filter, equal_filter, flag_filter, retrieve_route, route, update_metadata
from ..billing import get_or_404, real_now
from ..errors import StripeError, invalid, missing
from ..ids import gen_id
from ..params import as_bool, as_int

COUPON_ID = re.compile(r"^[A-Za-z0-9_-]{1,200}$")


def _coupon(store, id_, param: str = "id") -> dict:
    c = store.get("coupon", id_)
    if c is None or c.get("_deleted"):
        raise missing("coupon", id_, param)
    return c


@route("POST", "/v1/coupons", "_coupon_create_params:CouponCreateParams")
def create_coupon(ctx: Ctx):
    p, store = ctx.params, ctx.store
    percent = p.get("percent_off")
    amount = as_int(p.get("amount_off"), "amount_off")
    if (percent in (None, "")) == (amount is None):
        raise invalid("You must pass exactly one of percent_off or amount_off.", "percent_off")
    if percent not in (None, ""):
        try:
            percent = float(percent)
        except (TypeError, ValueError):
            raise invalid(f"Invalid decimal: {percent}", "percent_off") from None
        if not 0 < percent <= 100:
            raise invalid("percent_off must be greater than 0 and at most 100.", "percent_off")
    else:
        percent = None
        if amount <= 0:
            raise invalid("amount_off must be a positive integer.", "amount_off")
        if not p.get("currency"):
            raise invalid("You must pass currency when passing amount_off.", "currency", "parameter_missing")
    duration = p.get("duration") or "once"
    months = as_int(p.get("duration_in_months"), "duration_in_months")
    if duration == "repeating" and not months:
        raise invalid("You must pass duration_in_months when duration is repeating.", "duration_in_months", "parameter_missing")
    if duration != "repeating" and months:
        raise invalid("duration_in_months is only allowed when duration is repeating.", "duration_in_months")
    id_ = p.get("id") or "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(8))
    if not COUPON_ID.match(id_):
        raise invalid("Invalid coupon id: use letters, digits, '_' and '-'.", "id")
    existing = store.get("coupon", id_)
    if existing is not None and not existing.get("_deleted"):
        raise invalid("Coupon already exists.", "id", "resource_already_exists")
    redeem_by = as_int(p.get("redeem_by"), "redeem_by")
    if redeem_by is not None and redeem_by <= real_now():
        raise invalid("redeem_by must be in the future.", "redeem_by")
    max_redemptions = as_int(p.get("max_redemptions"), "max_redemptions")
    if max_redemptions is not None and max_redemptions < 1:
        raise invalid("max_redemptions must be at least 1.", "max_redemptions")
    c = o.coupon(id_, real_now(), duration, amount_off=amount, percent_off=percent,
                 currency=(p.get("currency") or "").lower() or None, duration_in_months=months,
                 max_redemptions=max_redemptions, redeem_by=redeem_by, name=p.get("name") or None, metadata=p.get("metadata") or {})
    store.put(c)
    store.emit("coupon.created", c)
    return ctx.out(c)


@route("GET", "/v1/coupons/{id}", "_coupon_retrieve_params:CouponRetrieveParams")
def get_coupon(ctx: Ctx, id):
    return ctx.out(_coupon(ctx.store, id))


@route("POST", "/v1/coupons/{id}", "_coupon_update_params:CouponUpdateParams")
def update_coupon(ctx: Ctx, id):
    """As on Stripe, only the name and metadata of a coupon can change."""
    c = _coupon(ctx.store, id)
    before = {"name": c["name"], "metadata": dict(c["metadata"])}
    if "name" in ctx.params:
        c["name"] = ctx.params["name"] or None
    update_metadata(c, ctx.params.get("metadata"))
    ctx.store.emit("coupon.updated", c, {k: v for k, v in before.items() if c[k] != v})
    return ctx.out(c)


@route("DELETE", "/v1/coupons/{id}", "_coupon_delete_params:CouponDeleteParams")
def delete_coupon(ctx: Ctx, id):
    """Deleting a coupon stops new redemptions; discounts already made keep running."""
    c = _coupon(ctx.store, id)
    c["_deleted"] = True
    c["valid"] = False
    ctx.store.emit("coupon.deleted", c)
    return o.deleted("coupon", id)


@route("GET", "/v1/coupons", "_coupon_list_params:CouponListParams")
def list_coupons(ctx: Ctx):
    objs = [c for c in ctx.store.all("coupon") if not c.get("_deleted")]
    return ctx.page(created_filter(objs, ctx.params.get("created")), "/v1/coupons")


# --- promotion codes ------------------------------------------------------------------------------------
CODE = re.compile(r"^[A-Za-z0-9_-]{1,500}$")


@route("POST", "/v1/promotion_codes", "_promotion_code_create_params:PromotionCodeCreateParams")
def create_promotion_code(ctx: Ctx):
    p, store = ctx.params, ctx.store
    promotion = p.get("promotion") or {}
    if not promotion.get("coupon"):
        raise invalid("Missing required param: promotion[coupon].", "promotion[coupon]", "parameter_missing")
    c = _coupon(store, promotion["coupon"], "promotion[coupon]")
    code = p.get("code") or "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(8))
    if not CODE.match(code):
        raise invalid("Invalid code: use letters, digits, '_' and '-'.", "code")
    if any(x["active"] and x["code"].upper() == code.upper() for x in store.all("promotion_code")):
        raise invalid(f"An active promotion code with `code: {code}` already exists.", "code", "resource_already_exists")
    if p.get("customer"):
        get_or_404(store, "customer", p["customer"], param="customer")
    expires_at = as_int(p.get("expires_at"), "expires_at")
    if expires_at is not None and expires_at <= real_now():
        raise invalid("expires_at must be in the future.", "expires_at")
    if c.get("redeem_by") and expires_at and expires_at > c["redeem_by"]:
        raise invalid("The promotion code cannot expire after its coupon's redeem_by.", "expires_at")
    restrictions = p.get("restrictions") or {}
    promo = o.promotion_code(
        gen_id("promo"), real_now(), code, c["id"], active=as_bool(p.get("active"), "active") is not False,
        customer=p.get("customer") or None, expires_at=expires_at,
        max_redemptions=as_int(p.get("max_redemptions"), "max_redemptions"), metadata=p.get("metadata") or {},
        first_time_transaction=as_bool(restrictions.get("first_time_transaction"), "restrictions[first_time_transaction]"),
        minimum_amount=as_int(restrictions.get("minimum_amount"), "restrictions[minimum_amount]"),
        minimum_amount_currency=restrictions.get("minimum_amount_currency"))
    store.put(promo)
    store.emit("promotion_code.created", promo)
    return ctx.out(promo)


retrieve_route("/v1/promotion_codes/{id}", "_promotion_code_retrieve_params:PromotionCodeRetrieveParams", "promotion_code", "promotion code")


@route("POST", "/v1/promotion_codes/{id}", "_promotion_code_update_params:PromotionCodeUpdateParams")
def update_promotion_code(ctx: Ctx, id):
    store, p = ctx.store, ctx.params
    promo = get_or_404(store, "promotion_code", id, "promotion code")
    before = {"active": promo["active"], "metadata": dict(promo["metadata"])}
    if "active" in p:
        active = bool(as_bool(p["active"], "active"))
        if active and not promo["active"] and any(
                x["active"] and x["id"] != id and x["code"].upper() == promo["code"].upper() for x in store.all("promotion_code")):
            raise StripeError(400, "invalid_request_error", "resource_already_exists",
                              f"An active promotion code with `code: {promo['code']}` already exists.", "active")
        promo["active"] = active
    update_metadata(promo, p.get("metadata"))
    store.emit("promotion_code.updated", promo, {k: v for k, v in before.items() if promo[k] != v})
    return ctx.out(promo)


@route("GET", "/v1/promotion_codes", "_promotion_code_list_params:PromotionCodeListParams")
def list_promotion_codes(ctx: Ctx):
    p = ctx.params
    objs = ctx.store.all("promotion_code")
    if p.get("code"):
        objs = [x for x in objs if x["code"].upper() == p["code"].upper()]
    if p.get("coupon"):
        objs = [x for x in objs if x["promotion"]["coupon"] == p["coupon"]]
    objs = flag_filter(equal_filter(objs, p, "customer"), p, "active")
    return ctx.page(created_filter(objs, p.get("created")), "/v1/promotion_codes")
