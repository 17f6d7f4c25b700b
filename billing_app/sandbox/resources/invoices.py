"""Invoices (incl. create_preview), invoice payments, payment intents, charges and refunds."""

from __future__ import annotations

import threading
import time

from .. import discounts as disc
from .. import objects as o
from ..api import Ctx, created_filter, equal_filter, retrieve_route, route, update_metadata
from ..billing import (
    SCHEDULE_LIVE, decline_error, get_or_404, invoice_paid_outside, invoice_subscription, item_lines, mark_paid,
    mark_uncollectible, now_for, pay_invoice, pending_lines, period_end_for, phase_beginning, phase_items, phase_trial_end, plan_change,
    resolve_payment_method, sub_period, trial_lines, void_invoice, finalize,
)
from ..errors import invalid
from ..ids import gen_id
from ..params import as_bool, as_int
from .subscriptions import PRORATION, changes_from


retrieve_route("/v1/invoices/{id}", "_invoice_retrieve_params:InvoiceRetrieveParams", "invoice")


@route("GET", "/v1/invoices", "_invoice_list_params:InvoiceListParams")
def list_invoices(ctx: Ctx):
    p = ctx.params
    objs = ctx.store.all("invoice")
    objs = equal_filter(objs, p, "customer", "status", "collection_method")
    if p.get("subscription"):
        objs = [i for i in objs if invoice_subscription(i) == p["subscription"]]
    objs = created_filter(objs, p.get("created"))
    return ctx.page(objs, "/v1/invoices")


@route("GET", "/v1/invoices/{id}/lines", "_invoice_line_item_list_params:InvoiceLineItemListParams")
def invoice_lines(ctx: Ctx, id):
    inv = get_or_404(ctx.store, "invoice", id)
    lines = inv["lines"]["data"]
    return ctx.page([dict(l, _seq=-i) for i, l in enumerate(lines)], f"/v1/invoices/{id}/lines")


@route("POST", "/v1/invoices/{id}", "_invoice_update_params:InvoiceUpdateParams")
def update_invoice(ctx: Ctx, id):
    inv = get_or_404(ctx.store, "invoice", id)
    before = dict(metadata=dict(inv["metadata"]), description=inv["description"])
    update_metadata(inv, ctx.params.get("metadata"))
    if "description" in ctx.params:
        inv["description"] = ctx.params["description"] or None
    ctx.store.emit("invoice.updated", inv, {k: v for k, v in before.items() if inv[k] != v})
    return ctx.out(inv)


@route("POST", "/v1/invoices/{id}/pay", "_invoice_pay_params:InvoicePayParams")
def pay(ctx: Ctx, id):
    store, p = ctx.store, ctx.params
    inv = get_or_404(store, "invoice", id)
    now = now_for(store, inv["customer"])
    if as_bool(p.get("paid_out_of_band"), "paid_out_of_band"):
        mark_paid(store, inv, now)
        invoice_paid_outside(store, inv, now)
        return ctx.out(inv)
    pm = resolve_payment_method(store, p["payment_method"], "payment_method") if p.get("payment_method") else None
    if inv["status"] == "draft":
        finalize(store, inv, now)
    ok, pi, ch = pay_invoice(store, inv, now, pm)
    if not ok:
        if pi is None:
            raise invalid("This invoice has no payment method to charge: attach one to the customer first.", "payment_method")
        raise decline_error(pi, ch)
    invoice_paid_outside(store, inv, now)
    return ctx.out(inv)


@route("POST", "/v1/invoices/{id}/finalize", "_invoice_finalize_invoice_params:InvoiceFinalizeInvoiceParams")
def finalize_invoice(ctx: Ctx, id):
    inv = get_or_404(ctx.store, "invoice", id)
    if inv["status"] != "draft":
        raise invalid("This invoice is already finalized, you can't re-finalize a non-draft invoice.", None, "invoice_not_editable")
    finalize(ctx.store, inv, now_for(ctx.store, inv["customer"]))
    return ctx.out(inv)


@route("POST", "/v1/invoices/{id}/void", "_invoice_void_invoice_params:InvoiceVoidInvoiceParams")
def void(ctx: Ctx, id):
    inv = get_or_404(ctx.store, "invoice", id)
    void_invoice(ctx.store, inv, now_for(ctx.store, inv["customer"]))
    return ctx.out(inv)


@route("POST", "/v1/invoices/{id}/mark_uncollectible", "_invoice_mark_uncollectible_params:InvoiceMarkUncollectibleParams")
def uncollectible(ctx: Ctx, id):
    inv = get_or_404(ctx.store, "invoice", id)
    if inv["status"] != "open":
        raise invalid("You can only mark an open invoice as uncollectible.", None)
    mark_uncollectible(ctx.store, inv, now_for(ctx.store, inv["customer"]))
    return ctx.out(inv)


@route("POST", "/v1/invoices/create_preview", "_invoice_create_preview_params:InvoiceCreatePreviewParams")
def create_preview(ctx: Ctx):
    """What the next invoice would be, optionally after a plan change (for proration previews); for a
    `schedule`, the invoice its next phase sends when it begins at the renewal."""
    store, p = ctx.store, ctx.params
    sub = schedule = phase = None
    if p.get("schedule_details"):
        raise invalid("The sandbox previews an existing schedule (schedule), not schedule_details.", "schedule_details")
    if p.get("schedule"):
        if p.get("subscription") or p.get("subscription_details"):
            raise invalid("You may only specify one of these parameters: schedule, subscription.", "schedule")
        schedule = get_or_404(store, "subscription_schedule", p["schedule"], param="schedule")
        if schedule["status"] not in SCHEDULE_LIVE:
            raise invalid(f"No upcoming invoices for schedule: {schedule['id']}", None, "invoice_upcoming_none")
        sub = store.get("subscription", schedule["subscription"])
    if p.get("subscription"):
        sub = get_or_404(store, "subscription", p["subscription"], param="subscription")
    cust_id = p.get("customer") or (sub and sub["customer"])
    if not cust_id:
        raise invalid("Missing required param: customer or subscription.", "customer", "parameter_missing")
    cust = get_or_404(store, "customer", cust_id, param="customer")
    if sub is None:
        sub = next((s for s in store.all("subscription") if s["customer"] == cust_id and s["status"] not in ("canceled", "incomplete_expired")), None)
    # As Stripe: an ended subscription has no next invoice to preview.
    if sub is None or sub["status"] in ("canceled", "incomplete_expired"):
        raise invalid("No upcoming invoices for customer: %s" % cust_id, None, "invoice_upcoming_none")
    sd = p.get("subscription_details") or {}
    behavior = sd.get("proration_behavior") or "create_prorations"
    if behavior not in PRORATION:
        raise invalid("Invalid subscription_details[proration_behavior]", "subscription_details[proration_behavior]")
    now = now_for(store, cust_id)
    at = as_int(sd.get("proration_date"), "subscription_details[proration_date]") or now
    start, end = sub_period(sub)
    if sd.get("items"):
        change = plan_change(store, sub, changes_from(store, sd["items"], "subscription_details[items]"), behavior, at)
        temp = {**sub, "items": {**sub["items"], "data": [dict(it, current_period_start=change["period"][0], current_period_end=change["period"][1]) for it in change["items"]]}}
        if change["reset"] or behavior == "always_invoice":
            # Billed now, as the update bills it: the pending items too, when it makes an invoice.
            pending = pending_lines(store, sub) if change["reset"] or change["lines"] else []
            lines = pending + change["lines"] + (item_lines(store, temp, change["period"]) if change["reset"] else [])
            reason, period, created = "subscription_update", (at, at), at
        else:
            p0 = store.get("price", change["items"][0]["price"])
            nxt = (end, period_end_for(end, p0, sub["billing_cycle_anchor"]))
            lines = pending_lines(store, sub) + change["lines"] + item_lines(store, temp, nxt)
            reason, period, created = "subscription_cycle", (start, end), end
    else:
        nxt_start = sub["trial_end"] if sub["status"] == "trialing" else end
        # The schedule's phase beginning then bills its own items, or starts its trial (as renew does).
        phase = phase_beginning(schedule, nxt_start)
        renewed = {**sub, "items": {**sub["items"], "data": phase_items(sub, phase)}} if phase else sub
        p0 = store.get("price", renewed["items"]["data"][0]["price"])
        trial_end = phase_trial_end(phase) if phase else None
        trial = bool(trial_end and trial_end > nxt_start)
        nxt = (nxt_start, trial_end if trial else period_end_for(nxt_start, p0, sub["billing_cycle_anchor"]))
        lines = pending_lines(store, sub) + (trial_lines if trial else item_lines)(store, renewed, nxt)
        reason, period, created = "subscription_cycle", (start, end), nxt_start
    for l in lines:
        l.pop("_ii", None)
    inv = o.invoice("upcoming_" + gen_id("in"), created, dict(cust), sub["currency"], [], reason, store.base_url,
                    sub=sub, period_start=period[0], period_end=period[1])
    for spec in lines:
        inv["lines"]["data"].append(o.invoice_line(
            inv["id"], spec["amount"], sub["currency"], spec["description"], spec["period"][0], spec["period"][1],
            price_obj=spec.get("price"), quantity=spec.get("quantity", 1), sub_id=sub["id"], sub_item_id=spec.get("item"),
            proration=spec.get("proration", False), proration_discounts=spec.get("discounts")))
    # The discounts still running on the invoice's date (a phase beginning then brings its own), and the
    # subscription's automatic tax.
    discounts = disc.phase_preview_discounts(store, sub, phase["discounts"], created) if phase \
        else disc.live_discounts(store, sub["discounts"], created)
    disc.price_invoice(store, inv, discounts, cust, bool(sub["automatic_tax"]["enabled"]))
    total = inv["total"]
    credit = min(-cust["balance"], max(total, 0)) if cust["balance"] < 0 else 0
    inv.update(amount_due=max(total - credit, 0), amount_remaining=max(total - credit, 0), starting_balance=cust["balance"])
    inv["lines"]["total_count"] = len(inv["lines"]["data"])
    return o.expand(store, o.render(store, inv), ctx.expand)


# --- invoice payments ----------------------------------------------------------------------------------
@route("GET", "/v1/invoice_payments", "_invoice_payment_list_params:InvoicePaymentListParams")
def list_invoice_payments(ctx: Ctx):
    p = ctx.params
    objs = ctx.store.all("invoice_payment")
    objs = equal_filter(objs, p, "invoice", "status")
    pay = p.get("payment") or {}
    if isinstance(pay, dict) and pay.get("payment_intent"):
        objs = [x for x in objs if x["payment"].get("payment_intent") == pay["payment_intent"]]
    return ctx.page(objs, "/v1/invoice_payments")


retrieve_route("/v1/invoice_payments/{id}", "_invoice_payment_retrieve_params:InvoicePaymentRetrieveParams", "invoice_payment", "invoice payment")


# --- payment intents, charges --------------------------------------------------------------------------
retrieve_route("/v1/payment_intents/{id}", "_payment_intent_retrieve_params:PaymentIntentRetrieveParams", "payment_intent", "payment_intent")


@route("GET", "/v1/payment_intents", "_payment_intent_list_params:PaymentIntentListParams")
def list_payment_intents(ctx: Ctx):
    objs = equal_filter(ctx.store.all("payment_intent"), ctx.params, "customer")
    return ctx.page(created_filter(objs, ctx.params.get("created")), "/v1/payment_intents")


retrieve_route("/v1/charges/{id}", "_charge_retrieve_params:ChargeRetrieveParams", "charge")


@route("GET", "/v1/charges", "_charge_list_params:ChargeListParams")
def list_charges(ctx: Ctx):
    objs = equal_filter(ctx.store.all("charge"), ctx.params, "customer", "payment_intent")
    return ctx.page(created_filter(objs, ctx.params.get("created")), "/v1/charges")


# --- refunds -------------------------------------------------------------------------------------------
@route("POST", "/v1/refunds", "_refund_create_params:RefundCreateParams")
def create_refund(ctx: Ctx):
    store, p = ctx.store, ctx.params
    if p.get("charge"):
        ch = get_or_404(store, "charge", p["charge"], param="charge")
    elif p.get("payment_intent"):
        pi = get_or_404(store, "payment_intent", p["payment_intent"], "payment_intent", "payment_intent")
        if not pi["latest_charge"] or pi["status"] != "succeeded":
            raise invalid(f"This PaymentIntent ({pi['id']}) does not have a successful charge to refund.", "payment_intent")
        ch = store.get("charge", pi["latest_charge"])
    else:
        raise invalid("One of the following params should be provided for this request: payment_intent or charge.", "charge", "parameter_missing")
    if not ch["paid"]:
        raise invalid(f"Charge {ch['id']} has no successful payment to refund.", "charge")
    if any(d["status"] == "lost" for d in store.all("dispute") if d["charge"] == ch["id"]):  # the chargeback took it back
        raise invalid(f"Charge {ch['id']} has been charged back; cannot issue a refund.", "charge", "charge_disputed")
    left = ch["amount"] - ch["amount_refunded"]
    amount = as_int(p.get("amount"), "amount")
    amount = left if amount is None else amount
    if left <= 0:
        raise invalid(f"Charge {ch['id']} has already been refunded.", "charge", "charge_already_refunded")
    if amount <= 0 or amount > left:
        raise invalid(f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})", "amount", "amount_too_large")
    now = now_for(store, ch["customer"])
    rf = o.refund(gen_id("re"), now, amount, ch, p.get("reason"), p.get("metadata") or {})
    store.put(rf)
    prev = {"amount_refunded": ch["amount_refunded"], "refunded": ch["refunded"]}
    ch["amount_refunded"] += amount
    ch["refunded"] = ch["amount_refunded"] >= ch["amount"]
    ch["refunds"]["data"].insert(0, o.render(store, rf))
    ch["refunds"]["total_count"] = len(ch["refunds"]["data"])
    store.emit("refund.created", rf)
    store.emit("charge.refunded", ch, prev)
    pm = store.get("payment_method", ch["payment_method"])
    if pm and pm["_behaviour"] == "refund_fail":
        # The time is kept on the refund (saved with --data), so a restart in between still fails it.
        rf["_fails_at"] = time.time() + store.settings["refund_failure_seconds"]
        _schedule_failure(store, rf)
    return ctx.out(rf)


def _schedule_failure(store, rf: dict) -> None:
    timer = threading.Timer(max(0.0, rf["_fails_at"] - time.time()), _fail_refund, (store, rf["id"]))
    timer.daemon = True
    timer.start()


def schedule_refund_failures(store) -> None:
    """As the sandbox starts: the refunds its saved state has waiting to fail fail at their time
    (at once if that passed while it was down)."""
    with store.lock:
        for rf in store.all("refund"):
            if rf.get("_fails_at") is not None and rf["status"] == "succeeded":
                _schedule_failure(store, rf)


def _fail_refund(store, refund_id: str) -> None:
    """What Stripe does some time after a refund to the refund-failing test card: the refund fails and
    its amount counts as refunded no more (refund.updated, refund.failed, charge.refund.updated)."""
    with store.lock:
        rf = store.get("refund", refund_id)
        if rf is None or rf.get("_fails_at") is None:  # the sandbox was reset meanwhile, or it failed already
            return
        del rf["_fails_at"]
        ch = store.get("charge", rf["charge"])
        was = {"status": "succeeded", "failure_reason": None, "failure_balance_transaction": None}
        rf.update(status="failed", failure_reason="expired_or_canceled_card", failure_balance_transaction=gen_id("txn"))
        ch["amount_refunded"] -= rf["amount"]
        ch["refunded"] = ch["amount_refunded"] >= ch["amount"]
        ch["refunds"]["data"] = [o.render(store, rf) if r["id"] == refund_id else r for r in ch["refunds"]["data"]]
        store.touch()
        store.emit("refund.updated", rf, was)
        store.emit("refund.failed", rf)
        store.emit("charge.refund.updated", rf, was)


retrieve_route("/v1/refunds/{id}", "_refund_retrieve_params:RefundRetrieveParams", "refund")


@route("GET", "/v1/refunds", "_refund_list_params:RefundListParams")
def list_refunds(ctx: Ctx):
    objs = equal_filter(ctx.store.all("refund"), ctx.params, "charge", "payment_intent")
    return ctx.page(objs, "/v1/refunds")


@route("GET", "/v1/invoiceitems", "_invoice_item_list_params:InvoiceItemListParams")
def list_invoiceitems(ctx: Ctx):
    objs = equal_filter(ctx.store.all("invoiceitem"), ctx.params, "customer")
    if "pending" in ctx.params:
        pend = as_bool(ctx.params["pending"], "pending")
        objs = [x for x in objs if (x["invoice"] is None) == pend]
    return ctx.page(objs, "/v1/invoiceitems")
