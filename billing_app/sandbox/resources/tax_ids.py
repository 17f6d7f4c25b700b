"""A customer's tax IDs: create (checked like Stripe: `tax_id_invalid`), retrieve, list, delete."""

from __future__ import annotations

from .. import objects as o
from ..api import Ctx, route
from ..billing import get_or_404, now_for
from ..discounts import add_tax_id
from ..errors import invalid, missing

MAX_TAX_IDS = 25


def _own(store, customer_id: str, id_: str) -> dict:
    t = store.get("tax_id", id_)
    if t is None or t["customer"] != customer_id:
        raise missing("tax_id", id_)
    return t


@route("POST", "/v1/customers/{id}/tax_ids", "_customer_tax_id_create_params:CustomerTaxIdCreateParams")
def create_tax_id(ctx: Ctx, id):
    store, p = ctx.store, ctx.params
    cust = get_or_404(store, "customer", id)
    if sum(1 for t in store.all("tax_id") if t["customer"] == id) >= MAX_TAX_IDS:
        raise invalid(f"A customer can have at most {MAX_TAX_IDS} tax IDs.", None, "tax_id_limit")
    return ctx.out(add_tax_id(store, cust, p["type"], p["value"], now_for(store, id)))


@route("GET", "/v1/customers/{id}/tax_ids/{tax_id}", "_customer_tax_id_retrieve_params:CustomerTaxIdRetrieveParams")
def get_tax_id(ctx: Ctx, id, tax_id):
    get_or_404(ctx.store, "customer", id)
    return ctx.out(_own(ctx.store, id, tax_id))


@route("GET", "/v1/customers/{id}/tax_ids", "_customer_tax_id_list_params:CustomerTaxIdListParams")
def list_tax_ids(ctx: Ctx, id):
    get_or_404(ctx.store, "customer", id)
    return ctx.page([t for t in ctx.store.all("tax_id") if t["customer"] == id], f"/v1/customers/{id}/tax_ids")


@route("DELETE", "/v1/customers/{id}/tax_ids/{tax_id}", "_customer_tax_id_delete_params:CustomerTaxIdDeleteParams")
def delete_tax_id(ctx: Ctx, id, tax_id):
    store = ctx.store
    get_or_404(store, "customer", id)
    t = _own(store, id, tax_id)
    store.delete("tax_id", tax_id)
    store.emit("customer.tax_id.deleted", t)
    return o.deleted("tax_id", tax_id)
