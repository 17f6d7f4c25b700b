"""Products and prices."""

from __future__ import annotations

import copy

from .. import objects as o
from ..api import Ctx, created_filter, diff, equal_filter, flag_filter, retrieve_route, route, update_metadata
from ..billing import get_or_404, real_now
from ..errors import invalid
from ..ids import gen_id
from ..params import as_bool, as_int, as_list

PRODUCT_FIELDS = ("name", "description", "url", "statement_descriptor", "unit_label", "tax_code")


@route("POST", "/v1/products", "_product_create_params:ProductCreateParams")
def create_product(ctx: Ctx):
    p, store = ctx.params, ctx.store
    pid = p.get("id") or gen_id("prod", 14)
    if store.get("product", pid):
        raise invalid("Product already exists.", "id", "resource_already_exists")
    prod = o.product(pid, real_now(), p["name"], active=as_bool(p.get("active"), "active") is not False,
                     description=p.get("description"), images=as_list(p.get("images")), metadata=p.get("metadata") or {},
                     url=p.get("url"), statement_descriptor=p.get("statement_descriptor"), unit_label=p.get("unit_label"),
                     tax_code=p.get("tax_code"), marketing_features=[{"name": f["name"]} for f in as_list(p.get("marketing_features"))])
    store.put(prod)
    store.emit("product.created", prod)
    if p.get("default_price_data"):
        dp = p["default_price_data"]
        pr = _new_price(store, dp["currency"], prod["id"], as_int(dp.get("unit_amount"), "default_price_data[unit_amount]"),
                        dp.get("recurring"), metadata=dp.get("metadata") or {})
        prod["default_price"] = pr["id"]
    return ctx.out(prod)


retrieve_route("/v1/products/{id}", "_product_retrieve_params:ProductRetrieveParams", "product")


@route("POST", "/v1/products/{id}", "_product_update_params:ProductUpdateParams")
def update_product(ctx: Ctx, id):
    prod = get_or_404(ctx.store, "product", id)
    before = copy.deepcopy(prod)
    p = ctx.params
    for k in PRODUCT_FIELDS:
        if k in p:
            prod[k] = p[k] or None
    if "active" in p:
        prod["active"] = as_bool(p["active"], "active")
    if "images" in p:
        prod["images"] = as_list(p["images"])
    if "default_price" in p:
        if p["default_price"]:
            get_or_404(ctx.store, "price", p["default_price"], param="default_price")
        prod["default_price"] = p["default_price"] or None
    update_metadata(prod, p.get("metadata"))
    prod["updated"] = real_now()
    ctx.store.emit("product.updated", prod, diff(before, prod, [k for k in prod if k != "updated"]))
    return ctx.out(prod)


@route("GET", "/v1/products", "_product_list_params:ProductListParams")
def list_products(ctx: Ctx):
    p = ctx.params
    objs = flag_filter(ctx.store.all("product"), p, "active")
    if p.get("ids"):
        ids = set(as_list(p["ids"]))
        objs = [x for x in objs if x["id"] in ids]
    objs = created_filter(objs, p.get("created"))
    return ctx.page(objs, "/v1/products")


@route("DELETE", "/v1/products/{id}", "_product_delete_params:ProductDeleteParams")
def delete_product(ctx: Ctx, id):
    prod = get_or_404(ctx.store, "product", id)
    if any(pr["product"] == id for pr in ctx.store.all("price")):
        raise invalid("This product cannot be deleted because it has one or more user-created prices.", None, "product_has_prices")
    ctx.store.delete("product", id)
    ctx.store.emit("product.deleted", prod)
    return o.deleted("product", id)


def _new_price(store, currency, product_id, unit_amount, rec, **fields):
    r = None
    if rec:
        interval = rec.get("interval")
        if interval not in ("day", "week", "month", "year"):
            raise invalid("Invalid recurring[interval]: must be one of day, week, month, or year", "recurring[interval]")
        r = o.recurring(interval, as_int(rec.get("interval_count"), "recurring[interval_count]") or 1,
                        as_int(rec.get("trial_period_days"), "recurring[trial_period_days]"))
    pr = o.price(gen_id("price"), real_now(), currency.lower(), product_id, unit_amount, r, **fields)
    store.put(pr)
    store.emit("price.created", pr)
    return pr


def _claim_lookup_key(store, key, transfer, param="lookup_key"):
    if not key:
        return
    holder = next((x for x in store.all("price") if x["lookup_key"] == key), None)
    if holder is None:
        return
    if not transfer:
        raise invalid(f"A price (`{holder['id']}`) already uses that lookup key.", param)
    holder["lookup_key"] = None
    store.emit("price.updated", holder, {"lookup_key": key})


@route("POST", "/v1/prices", "_price_create_params:PriceCreateParams")
def create_price(ctx: Ctx):
    p, store = ctx.params, ctx.store
    if p.get("product"):
        prod = get_or_404(store, "product", p["product"], param="product")
    elif p.get("product_data"):
        pd = p["product_data"]
        prod = o.product(pd.get("id") or gen_id("prod", 14), real_now(), pd["name"], metadata=pd.get("metadata") or {})
        store.put(prod)
        store.emit("product.created", prod)
    else:
        raise invalid("Missing required param: product.", "product", "parameter_missing")
    amount = as_int(p.get("unit_amount"), "unit_amount")
    if amount is None and p.get("unit_amount_decimal"):
        amount = int(float(p["unit_amount_decimal"]))
    if amount is None:
        raise invalid("Missing required param: unit_amount.", "unit_amount", "parameter_missing")
    if amount < 0:
        raise invalid("Invalid non-negative integer", "unit_amount", "parameter_invalid_integer")
    _claim_lookup_key(store, p.get("lookup_key"), as_bool(p.get("transfer_lookup_key"), "transfer_lookup_key"))
    pr = _new_price(store, p["currency"], prod["id"], amount, p.get("recurring"),
                    active=as_bool(p.get("active"), "active") is not False, lookup_key=p.get("lookup_key") or None,
                    metadata=p.get("metadata") or {}, nickname=p.get("nickname"),
                    tax_behavior=p.get("tax_behavior") or "unspecified")
    return ctx.out(pr)


retrieve_route("/v1/prices/{id}", "_price_retrieve_params:PriceRetrieveParams", "price")


@route("POST", "/v1/prices/{id}", "_price_update_params:PriceUpdateParams")
def update_price(ctx: Ctx, id):
    pr = get_or_404(ctx.store, "price", id)
    before = copy.deepcopy(pr)
    p = ctx.params
    if "lookup_key" in p and p["lookup_key"] != pr["lookup_key"]:
        _claim_lookup_key(ctx.store, p["lookup_key"], as_bool(p.get("transfer_lookup_key"), "transfer_lookup_key"))
        pr["lookup_key"] = p["lookup_key"] or None
    if "active" in p:
        pr["active"] = as_bool(p["active"], "active")
    if "nickname" in p:
        pr["nickname"] = p["nickname"] or None
    if "tax_behavior" in p:
        pr["tax_behavior"] = p["tax_behavior"]
    update_metadata(pr, p.get("metadata"))
    ctx.store.emit("price.updated", pr, diff(before, pr, pr.keys()))
    return ctx.out(pr)


@route("GET", "/v1/prices", "_price_list_params:PriceListParams")
def list_prices(ctx: Ctx):
    p = ctx.params
    objs = equal_filter(flag_filter(ctx.store.all("price"), p, "active"), p, "product", "type")
    if p.get("lookup_keys"):
        keys = set(as_list(p["lookup_keys"]))
        objs = [x for x in objs if x["lookup_key"] in keys]
    if p.get("currency"):
        objs = [x for x in objs if x["currency"] == p["currency"].lower()]
    rec = p.get("recurring")
    if isinstance(rec, dict) and rec.get("interval"):
        objs = [x for x in objs if x["recurring"] and x["recurring"]["interval"] == rec["interval"]]
    objs = created_filter(objs, p.get("created"))
    return ctx.page(objs, "/v1/prices")
