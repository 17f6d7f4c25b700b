"""The billing engine shared by the API, the hosted pages and test clocks.

Charging a card, creating/finalising/paying invoices, starting, changing,
renewing and ending subscriptions all live here so that the same state change
emits the same events whichever door it came through.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import time

from . import discounts as disc
from . import objects as o
from .dates import DAY, add_interval  # noqa: F401  (add_interval is used through this module too)
from .errors import StripeError, card_declined, invalid, missing
from .ids import gen_id
from .store import Store

INCOMPLETE_EXPIRY = 23 * 3600

FAILURES = {
    "decline": ("card_declined", "Your card was declined.", "generic_decline"),
    "fail": ("card_declined", "Your card was declined.", "generic_decline"),
    "insufficient_funds": ("card_declined", "Your card has insufficient funds.", "insufficient_funds"),
}


AUTHENTICATION_FAILED = ("We are unable to authenticate your payment method. Please choose a different payment "
                         "method and try again.")


@contextlib.contextmanager
def approved(store: Store, pm_id: str | None):
    """The customer approved 3-D Secure for `pm_id` on a hosted page: charges inside succeed."""
    store._approved_pm = pm_id
    try:
        yield
    finally:
        store._approved_pm = None


def needs_authentication(store: Store, pm: dict) -> bool:
    return pm["_behaviour"] == "authenticate" and getattr(store, "_approved_pm", None) != pm["id"]


def authentication_failed(store: Store, pi: dict) -> None:
    """The customer failed (or refused) 3-D Secure: the intent wants another payment method."""
    pi.update(status="requires_payment_method", next_action=None)
    pi["last_payment_error"] = {"type": "card_error", "code": "payment_intent_authentication_failure",
                                "message": AUTHENTICATION_FAILED}
    store.emit("payment_intent.payment_failed", pi)


def authentication_error() -> StripeError:
    return StripeError(402, "card_error", "payment_intent_authentication_failure", AUTHENTICATION_FAILED)


# --- time ------------------------------------------------------------------------------------------
def real_now() -> int:
    return int(time.time())


def now_for(store: Store, customer_id: str | None) -> int:
    """Objects of a customer on a test clock live at the clock's frozen time."""
    cust = store.get("customer", customer_id) if customer_id else None
    if cust and cust.get("test_clock"):
        clock = store.get("test_helpers.test_clock", cust["test_clock"])
        if clock:
            return clock["frozen_time"]
    return real_now()


def period_end_for(start: int, price: dict, anchor: int | None = None) -> int:
    r = price["recurring"]
    anchor_day = dt.datetime.fromtimestamp(anchor if anchor is not None else start, dt.timezone.utc).day
    return add_interval(start, r["interval"], r["interval_count"], anchor_day)


def fmt_date(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%d %b %Y")


# --- lookups ---------------------------------------------------------------------------------------
def get_or_404(store: Store, kind: str, id_: str, label: str | None = None, param: str = "id") -> dict:
    obj = store.get(kind, id_) if isinstance(id_, str) else None
    if obj is None:
        raise missing(label or kind.split(".")[-1].replace("_", " "), id_, param)
    return obj


def get_required(store: Store, kind: str, params: dict, key: str, param: str | None = None, message: str | None = None) -> dict:
    """A required id parameter (`params[key]`): the stored object it names.

    Stripe's 400 parameter_missing when it is absent or empty (``message`` replaces the usual
    "Missing required param: …." text), its 404 resource_missing when there is no such object;
    both name ``param`` (the key itself unless the parameter is nested, e.g. ``items[0][price]``).
    """
    param = param or key
    if not params.get(key):
        raise invalid(message or f"Missing required param: {param}.", param, "parameter_missing")
    return get_or_404(store, kind, params[key], param=param)


def product_name(store: Store, price: dict) -> str:
    prod = store.get("product", price["product"])
    return prod["name"] if prod else price["product"]


# --- payment methods -------------------------------------------------------------------------------
def resolve_payment_method(store: Store, ref: str, param: str = "payment_method", memo: dict | None = None) -> dict:
    """A pm_ id, or one of Stripe's test tokens/numbers, which mint a fresh PaymentMethod."""
    if memo is not None and ref in memo:
        return memo[ref]
    ref_clean = ref.replace(" ", "") if isinstance(ref, str) else ref
    if ref_clean in o.CARDS:
        brand, last4, behaviour = o.CARDS[ref_clean]
        pm = store.put(o.payment_method(gen_id("pm"), real_now(), brand, last4, behaviour))
        if memo is not None:
            memo[ref] = pm
        return pm
    if isinstance(ref, str) and ref.startswith("pm_card_"):
        raise missing("PaymentMethod", ref, param)
    return get_or_404(store, "payment_method", ref, "PaymentMethod", param)


def attach(store: Store, pm: dict, cust: dict) -> dict:
    if pm["customer"] == cust["id"]:
        return pm
    if pm["customer"]:
        raise invalid("The payment method you provided has already been attached to a customer.", "payment_method")
    if pm["_behaviour"] == "decline":
        # Attaching runs a card check, which 4000 0000 0000 0002 fails (0341 passes it).
        raise card_declined()
    pm["customer"] = cust["id"]
    store.emit("payment_method.attached", pm)
    return pm


def set_default_pm(store: Store, cust: dict, pm_id: str | None) -> None:
    prev = cust["invoice_settings"]["default_payment_method"]
    if prev == pm_id:
        return
    cust["invoice_settings"]["default_payment_method"] = pm_id
    store.emit("customer.updated", cust, {"invoice_settings": {"default_payment_method": prev}})


# --- payments --------------------------------------------------------------------------------------
def charge_card(store: Store, amount: int, currency: str, cust_id: str | None, pm: dict, now: int,
                description: str | None = None, metadata: dict | None = None, pi: dict | None = None):
    """Create (or reuse) a PaymentIntent and try to charge ``pm``; returns (pi, charge, ok)."""
    if pi is None:
        pi = store.put(o.payment_intent(gen_id("pi"), now, amount, currency, cust_id, description, metadata))
        store.emit("payment_intent.created", pi)
    pi["payment_method"] = pm["id"]
    if needs_authentication(store, pm):
        # No charge yet: the bank wants the customer (the hosted invoice page shows the step).
        pi.update(status="requires_action", last_payment_error=None, next_action={
            "type": "redirect_to_url",
            "redirect_to_url": {"url": store.base_url, "return_url": None},
        })
        store.emit("payment_intent.requires_action", pi)
        return pi, None, False
    pi["next_action"] = None
    failure = FAILURES.get(pm["_behaviour"])
    ch = store.put(o.charge(gen_id("ch"), now, amount, currency, cust_id, pi["id"], pm, failure is None, failure, store.base_url))
    pi["latest_charge"] = ch["id"]
    if failure is None:
        pi.update(status="succeeded", amount_received=amount, last_payment_error=None)
        store.emit("charge.succeeded", ch)
        store.emit("payment_intent.succeeded", pi)
        if pm["_behaviour"] == "dispute":
            open_dispute(store, ch, now)
        return pi, ch, True
    pi["status"] = "requires_payment_method"
    pi["last_payment_error"] = {
        "type": "card_error", "code": failure[0], "decline_code": failure[2], "message": failure[1],
        "charge": ch["id"], "payment_method": o.render(store, pm),
    }
    store.emit("charge.failed", ch)
    store.emit("payment_intent.payment_failed", pi)
    return pi, ch, False


def open_dispute(store: Store, ch: dict, now: int) -> dict:
    """What Stripe's dispute test card does after paying: the buyer's bank takes the money back and
    the dispute waits for our response (Stripe does it a moment later; here at once)."""
    dp = store.put(o.dispute(gen_id("dp"), now, ch))
    ch["disputed"] = True
    store.emit("charge.dispute.created", dp)
    store.emit("charge.dispute.funds_withdrawn", dp)
    return dp


def decline_error(pi: dict | None, ch: dict | None) -> StripeError:
    err = (pi or {}).get("last_payment_error") or {}
    return card_declined(err.get("message", "Your card was declined."), err.get("decline_code", "generic_decline"),
                         charge=ch["id"] if ch else None, payment_intent=None)


# --- invoices ----------------------------------------------------------------------------------------
def new_invoice(store: Store, cust: dict, currency: str, line_specs: list[dict], billing_reason: str, now: int,
                sub: dict | None = None, period: tuple[int, int] | None = None, discounts: list[dict] | None = None,
                tax: bool = False) -> dict:
    """Create a draft invoice; each line spec: amount, description, price, quantity, period, proration, item.

    A subscription's invoice is priced with its live discounts and its automatic tax; another
    invoice with the `discounts` and `tax` given.
    """
    inv_id = gen_id("in")
    lines = []
    for spec in line_specs:
        if sub is None and not spec.get("invoice_item"):
            # A one-off line comes from an invoice item, as on Stripe (Checkout's invoice_creation makes them).
            ii = store.put(o.invoiceitem(gen_id("ii"), now, cust["id"], spec["amount"], currency, spec["description"],
                                         spec["period"][0], spec["period"][1], price_obj=spec["price"], proration=False,
                                         test_clock=cust.get("test_clock"), quantity=spec.get("quantity", 1)))
            ii["invoice"] = inv_id
            store.emit("invoiceitem.created", ii)
            spec = dict(spec, invoice_item=ii["id"])
        lines.append(o.invoice_line(
            inv_id, spec["amount"], currency, spec["description"], spec["period"][0], spec["period"][1],
            price_obj=spec.get("price"), quantity=spec.get("quantity", 1), sub_id=sub["id"] if sub else None,
            sub_item_id=spec.get("item"), proration=spec.get("proration", False), invoice_item=spec.get("invoice_item"),
            proration_discounts=spec.get("discounts")))
    p0, p1 = period or (now, now)
    inv = o.invoice(inv_id, now, cust, currency, lines, billing_reason, store.base_url, sub=sub, period_start=p0, period_end=p1)
    if sub is not None:
        disc.end_finished_discounts(store, sub, now)
        discounts, tax = disc.live_discounts(store, sub["discounts"], now), bool(sub["automatic_tax"]["enabled"])
    if discounts or tax:
        disc.price_invoice(store, inv, discounts or [], cust, tax)
    # Credit from the customer's balance (negative balance = credit) is applied first.
    if cust["balance"] < 0 and inv["total"] > 0:
        used = min(-cust["balance"], inv["total"])
        inv["starting_balance"] = cust["balance"]
        cust["balance"] += used
        inv["ending_balance"] = cust["balance"]
        inv["amount_due"] = inv["amount_remaining"] = inv["total"] - used
    elif inv["total"] < 0:
        # A net credit goes to the customer's balance, as Stripe does.
        inv["starting_balance"] = cust["balance"]
        cust["balance"] += inv["total"]
        inv["ending_balance"] = cust["balance"]
        store.emit("customer.updated", cust, {"balance": inv["starting_balance"]})
    store.put(inv)
    store.emit("invoice.created", inv)
    if sub:
        sub["latest_invoice"] = inv["id"]
        disc.use_up_once_discounts(store, sub, inv)
    return inv


def finalize(store: Store, inv: dict, now: int) -> dict:
    cust = store.get("customer", inv["customer"])
    inv["number"] = f"{cust['invoice_prefix']}-{cust['next_invoice_sequence']:04d}"
    cust["next_invoice_sequence"] += 1
    inv["status"] = "open"
    inv["effective_at"] = now
    inv["status_transitions"]["finalized_at"] = now
    inv["hosted_invoice_url"] = f"{store.base_url}/invoices/{inv['id']}"
    inv["invoice_pdf"] = f"{store.base_url}/invoices/{inv['id']}/pdf"
    store.emit("invoice.finalized", inv)
    if inv["amount_due"] == 0:
        mark_paid(store, inv, now)
    return inv


def mark_paid(store: Store, inv: dict, now: int, paid_out_of_band: bool = False) -> None:
    inv.update(status="paid", amount_paid=inv["amount_due"], amount_remaining=0, attempted=True,
               next_payment_attempt=None)
    inv["status_transitions"]["paid_at"] = now
    for ip in store.all("invoice_payment"):
        if ip["invoice"] == inv["id"] and ip["status"] == "open":
            ip.update(status="paid", amount_paid=ip["amount_requested"])
            ip["status_transitions"]["paid_at"] = now
    store.emit("invoice.paid", inv)
    store.emit("invoice.payment_succeeded", inv)


def default_pm_for(store: Store, inv: dict) -> dict | None:
    sub_id = invoice_subscription(inv)
    sub = store.get("subscription", sub_id) if sub_id else None
    cust = store.get("customer", inv["customer"])
    pm_id = (sub and sub.get("default_payment_method")) or (cust and cust["invoice_settings"]["default_payment_method"])
    return store.get("payment_method", pm_id) if pm_id else None


def invoice_subscription(inv: dict) -> str | None:
    parent = inv.get("parent") or {}
    return (parent.get("subscription_details") or {}).get("subscription")


def pay_invoice(store: Store, inv: dict, now: int, pm: dict | None = None, pi: dict | None = None):
    """Attempt to collect an open invoice; returns (ok, payment_intent, charge)."""
    if inv["status"] == "paid":
        return True, None, None
    if inv["status"] != "open":
        raise invalid(f"You can only pay an invoice that is open (this one is {inv['status']}).", "invoice", "invoice_not_open")
    if inv["amount_due"] == 0:
        mark_paid(store, inv, now)
        return True, None, None
    pm = pm or default_pm_for(store, inv)
    inv["attempt_count"] += 1
    inv["attempted"] = True
    if pm is None:
        inv["next_payment_attempt"] = None
        store.emit("invoice.payment_failed", inv)
        return False, None, None
    pi, ch, ok = charge_card(store, inv["amount_due"], inv["currency"], inv["customer"], pm, now,
                             description=f"Invoice {inv['number']}", pi=pi)
    ip = next((p for p in store.all("invoice_payment") if p["invoice"] == inv["id"] and p["status"] == "open"), None)
    if ip is None:
        ip = store.put(o.invoice_payment(gen_id("inpay"), now, inv, pi["id"]))
    ip["payment"]["payment_intent"] = pi["id"]
    if ok:
        inv["default_payment_method"] = None
        mark_paid(store, inv, now)
    elif pi["status"] == "requires_action":
        # The customer confirms on the hosted invoice page (its 3-D Secure step).
        pi["next_action"]["redirect_to_url"]["url"] = inv["hosted_invoice_url"]
        store.emit("invoice.payment_action_required", inv)
    else:
        store.emit("invoice.payment_failed", inv)
    return ok, pi, ch


def void_invoice(store: Store, inv: dict, now: int) -> None:
    if inv["status"] not in ("open", "draft", "uncollectible"):
        raise invalid(f"You can only void an open or uncollectible invoice (this one is {inv['status']}).", "invoice")
    inv["status"] = "void"
    inv["amount_remaining"] = 0
    inv["status_transitions"]["voided_at"] = now
    store.emit("invoice.voided", inv)
    sub_id = invoice_subscription(inv)
    sub = store.get("subscription", sub_id) if sub_id else None
    if sub and sub.get("_pending_after") is not None and sub.get("latest_invoice") == inv["id"]:
        discard_pending_update(store, sub)  # voiding a pending update's invoice discards the update


def discard_pending_update(store: Store, sub: dict) -> None:
    """The subscription stays as it is, without its pending update."""
    sub.pop("_pending_after")
    previous = {"pending_update": sub["pending_update"]}
    sub["pending_update"] = None
    store.emit("customer.subscription.updated", sub, previous)


def expire_pending_update(store: Store, sub: dict, at: int) -> None:
    """At `pending_update.expires_at` Stripe voids the update's invoice and discards the update
    (docs: billing/subscriptions/pending-updates-reference, "Expiration")."""
    inv = store.get("invoice", sub["_pending_after"]["latest_invoice"])
    if inv and inv["status"] == "open":
        void_invoice(store, inv, at)
    if sub.get("_pending_after") is not None:  # its invoice was no longer the latest one
        discard_pending_update(store, sub)
    store.emit("customer.subscription.pending_update_expired", sub)


def mark_uncollectible(store: Store, inv: dict, now: int) -> None:
    inv["status"] = "uncollectible"
    inv["status_transitions"]["marked_uncollectible_at"] = now
    store.emit("invoice.marked_uncollectible", inv)


# --- subscriptions -----------------------------------------------------------------------------------
def sub_period(sub: dict) -> tuple[int, int]:
    it = sub["items"]["data"][0]
    return it["current_period_start"], it["current_period_end"]


def set_period(sub: dict, start: int, end: int) -> None:
    for it in sub["items"]["data"]:
        it["current_period_start"], it["current_period_end"] = start, end


def item_lines(store: Store, sub: dict, period: tuple[int, int]) -> list[dict]:
    lines = []
    for it in sub["items"]["data"]:
        p = store.get("price", it["price"])
        desc = f"{it['quantity']} × {product_name(store, p)} (at {money(p['unit_amount'], p['currency'])} / {p['recurring']['interval']})"
        lines.append({"amount": p["unit_amount"] * it["quantity"], "description": desc, "price": p,
                      "quantity": it["quantity"], "period": period, "item": it["id"]})
    return lines


def trial_lines(store: Store, sub: dict, period: tuple[int, int]) -> list[dict]:
    """The $0 lines of a trial's invoice."""
    return [dict(l, amount=0, description=f"Trial period for {product_name(store, l['price'])}") for l in item_lines(store, sub, period)]


def money(amount: int, currency: str) -> str:
    sym = {"usd": "$", "eur": "€", "gbp": "£"}.get(currency, "")
    value = f"{abs(amount) / 100:,.2f}"
    sign = "-" if amount < 0 else ""
    return f"{sign}{sym}{value}" if sym else f"{sign}{value} {currency.upper()}"


def pending_items(store: Store, sub: dict) -> list[dict]:
    return [ii for ii in store.all("invoiceitem") if ii["invoice"] is None and
            ii["parent"]["subscription_details"]["subscription"] == sub["id"]]


def pending_lines(store: Store, sub: dict) -> list[dict]:
    """Pending invoice items (prorations) as invoice line specs; "_ii" lets the caller claim them."""
    out = []
    for ii in pending_items(store, sub):
        p = store.get("price", ii["pricing"]["price_details"]["price"])
        out.append({"amount": ii["amount"], "description": ii["description"], "price": p, "quantity": 1,
                    "period": (ii["period"]["start"], ii["period"]["end"]), "proration": ii["proration"],
                    "invoice_item": ii["id"], "item": ii["parent"]["subscription_details"]["subscription_item"], "_ii": ii,
                    "discounts": [x["discount"] for x in (ii.get("proration_details") or {}).get("discount_amounts", [])]})
    return out


def invoice_subscription_now(store: Store, sub: dict, lines: list[dict], reason: str, now: int,
                             period: tuple[int, int]) -> dict:
    """Create, finalise and collect a subscription invoice; updates the subscription's status."""
    cust = store.get("customer", sub["customer"])
    inv = new_invoice(store, cust, sub["currency"], [dict(l) for l in lines], reason, now, sub=sub, period=period)
    for l in lines:
        if "_ii" in l:
            l["_ii"]["invoice"] = inv["id"]
    pc = sub.get("pause_collection")
    if pc:
        # Paused collection: Stripe still creates the invoice but doesn't collect it.
        if pc["behavior"] == "void":
            _finalize_quiet(store, inv, now)
            void_invoice(store, inv, now)
        elif pc["behavior"] == "mark_uncollectible":
            _finalize_quiet(store, inv, now)
            mark_uncollectible(store, inv, now)
        return inv
    if sub["status"] == "unpaid":
        return inv  # Stripe leaves invoices of unpaid subscriptions as drafts
    finalize(store, inv, now)
    if inv["status"] == "paid":
        return inv
    ok, pi, ch = pay_invoice(store, inv, now)
    if not ok:
        payment_failed(store, sub, inv, now)
    return inv


def _finalize_quiet(store, inv, now):
    cust = store.get("customer", inv["customer"])
    inv["number"] = f"{cust['invoice_prefix']}-{cust['next_invoice_sequence']:04d}"
    cust["next_invoice_sequence"] += 1
    inv["status"] = "open"
    inv["status_transitions"]["finalized_at"] = now
    inv["hosted_invoice_url"] = f"{store.base_url}/invoices/{inv['id']}"
    inv["invoice_pdf"] = f"{store.base_url}/invoices/{inv['id']}/pdf"
    store.emit("invoice.finalized", inv)


def set_status(store: Store, sub: dict, status: str, extra_prev: dict | None = None) -> None:
    prev = sub["status"]
    if prev == status and not extra_prev:
        return
    sub["status"] = status
    previous = dict(extra_prev or {})
    if prev != status:
        previous["status"] = prev
    store.emit("customer.subscription.updated", sub, previous)


def payment_failed(store: Store, sub: dict, inv: dict, now: int) -> None:
    """A renewal payment failed: past_due, and retries on the sandbox's schedule."""
    days = store.settings["payment_retry_days"]
    retries = [now + int(d * DAY) for d in days]
    sub["_retry"] = {"invoice": inv["id"], "at": retries}
    inv["next_payment_attempt"] = retries[0] if retries else None
    if sub["status"] in ("active", "trialing"):
        set_status(store, sub, "past_due")
    elif not retries:
        final_failure(store, sub, now)


def final_failure(store: Store, sub: dict, now: int) -> None:
    sub.pop("_retry", None)
    action = store.settings["after_final_failure"]
    if action == "cancel":
        cancel_now(store, sub, now, reason="payment_failed")
    elif action == "unpaid":
        set_status(store, sub, "unpaid")


def retry_payment(store: Store, sub: dict, now: int) -> None:
    retry = sub["_retry"]
    inv = store.get("invoice", retry["invoice"])
    retry["at"].pop(0)
    if inv is None or inv["status"] != "open":
        sub.pop("_retry", None)
        return
    ok, _, _ = pay_invoice(store, inv, now)
    if ok:
        sub.pop("_retry", None)
        if sub["status"] in ("past_due", "unpaid"):
            set_status(store, sub, "active")
        return
    inv["next_payment_attempt"] = retry["at"][0] if retry["at"] else None
    if not retry["at"]:
        final_failure(store, sub, now)


def invoice_paid_outside(store: Store, inv: dict, now: int) -> None:
    """An invoice paid via API or hosted page brings its subscription back to active."""
    sub_id = invoice_subscription(inv)
    sub = store.get("subscription", sub_id) if sub_id else None
    if not sub:
        return
    if sub.get("_retry", {}).get("invoice") == inv["id"]:
        sub.pop("_retry", None)
    after = sub.get("_pending_after")
    if after is not None and sub.get("latest_invoice") == inv["id"]:
        # A pending update's invoice is paid: the update applies now.
        previous = {"items": copy.deepcopy(sub["items"]), "pending_update": sub["pending_update"]}
        status = sub["status"]
        sub.pop("_pending_after")
        sub.update({k: v for k, v in after.items() if k not in ("status", "pending_update")})
        sub.update(status=status, pending_update=None)
        store.emit("customer.subscription.updated", sub, previous)
        store.emit("customer.subscription.pending_update_applied", sub)
    if sub["status"] in ("past_due", "unpaid", "incomplete"):
        set_status(store, sub, "active")


def cancel_now(store: Store, sub: dict, now: int, reason: str = "cancellation_requested", invoice_now: bool = False,
               prorate: bool = False, comment: str | None = None, feedback: str | None = None) -> dict:
    if sub["status"] in ("canceled", "incomplete_expired"):
        raise invalid("A canceled subscription can only update its cancellation_details and metadata.", None)
    if prorate and sub["status"] in ("active", "past_due"):
        start, end = sub_period(sub)
        if end > now:
            net, ids = period_net(store, sub, sub["items"]["data"], now)
            for it in sub["items"]["data"]:
                p = store.get("price", it["price"])
                credit = -round(net[it["id"]] * (end - now) / (end - start))
                if credit:
                    _pending_item(store, sub, p, credit, f"Unused time on {product_name(store, p)} after {fmt_date(now)}", (now, end), now,
                                  it["id"], ids)
    if invoice_now:
        lines = pending_lines(store, sub)
        if lines:
            invoice_subscription_now(store, sub, lines, "subscription_cycle", now, (now, now))
    was = sub["status"]
    sub["status"] = "incomplete_expired" if was == "incomplete" else "canceled"
    sub["canceled_at"] = sub["canceled_at"] if sub["cancel_at_period_end"] and sub["canceled_at"] else now
    sub["ended_at"] = now
    sub["cancel_at"] = sub["cancel_at"] if sub["cancel_at"] and sub["cancel_at"] <= now else None
    sub["cancellation_details"]["reason"] = reason
    if comment is not None:
        sub["cancellation_details"]["comment"] = comment
    if feedback is not None:
        sub["cancellation_details"]["feedback"] = feedback
    sub.pop("_retry", None)
    if sub["status"] == "incomplete_expired":
        store.emit("customer.subscription.updated", sub, {"status": was})
    store.emit("customer.subscription.deleted", sub)
    return sub


def _pending_item(store, sub, price, amount, desc, period, now, item_id, discounts=()):
    ii = o.invoiceitem(gen_id("ii"), now, sub["customer"], amount, sub["currency"], desc, period[0], period[1],
                       price_obj=price, sub_id=sub["id"], sub_item_id=item_id, test_clock=sub.get("test_clock"),
                       proration_discounts=discounts)
    store.put(ii)
    store.emit("invoiceitem.created", ii)
    return ii


def start_subscription(store: Store, cust: dict, items: list[tuple[dict, int]], now: int, *, pm: dict | None,
                       trial_days: int | None = None, trial_end: int | None = None, metadata: dict | None = None,
                       missing_pm: str = "create_invoice", description: str | None = None,
                       payment_behavior: str = "allow_incomplete", cancel_at_period_end: bool = False,
                       discounts: list | None = None, automatic_tax: bool = False):
    """Create a subscription and its first invoice; returns (subscription, invoice, ok).

    `discounts`: (kind, value) pairs from `discounts.from_params` (a "discount" pair carries an
    existing discount object, e.g. Checkout's); they apply from the first invoice.
    """
    prices = [p for p, _ in items]
    currency = prices[0]["currency"]
    for p in prices:
        if p["type"] != "recurring":
            raise invalid(f"The price `{p['id']}` is a one-time price; a subscription needs recurring prices.", "items")
        if p["currency"] != currency:
            raise invalid("All prices on a subscription must have the same currency.", "items")
    sub_id = gen_id("sub")
    if trial_days and not trial_end:
        trial_end = now + int(trial_days) * DAY
    trialing = bool(trial_end and trial_end > now)
    end = trial_end if trialing else period_end_for(now, prices[0])
    sub_items = [o.subscription_item(sub_id, p["id"], q, now, now, end) for p, q in items]
    sub = o.subscription(sub_id, now, cust["id"], currency, sub_items, status="trialing" if trialing else "incomplete",
                         default_payment_method=pm["id"] if pm else None, metadata=metadata or {},
                         trial_start=now if trialing else None, trial_end=trial_end if trialing else None,
                         test_clock=cust.get("test_clock"), missing_payment_method=missing_pm, description=description,
                         billing_cycle_anchor=end if trialing else now)
    if automatic_tax:
        sub["automatic_tax"] = {"enabled": True, "liability": {"account": None, "type": "self"}, "disabled_reason": None}
    store.put(sub)
    for kind, value in discounts or []:
        if kind == "discount":
            value["subscription"] = sub["id"]
            sub["discounts"].append(value["id"])
        elif kind == "coupon":
            sub["discounts"].append(disc.new_discount(store, cust["id"], value, now, sub=sub)["id"])
        else:
            c = store.get("coupon", value["promotion"]["coupon"])
            sub["discounts"].append(disc.new_discount(store, cust["id"], c, now, promo=value, sub=sub)["id"])
    if trialing:
        lines = trial_lines(store, sub, (now, end))
        store.emit("customer.subscription.created", sub)
        inv = new_invoice(store, cust, currency, lines, "subscription_create", now, sub=sub, period=(now, now))
        finalize(store, inv, now)
        if trial_end - now <= 3 * DAY:
            sub["_trial_will_end_sent"] = True
            store.emit("customer.subscription.trial_will_end", sub)
        ok = True
    else:
        store.emit("customer.subscription.created", sub)
        inv = new_invoice(store, cust, currency, item_lines(store, sub, (now, end)), "subscription_create", now, sub=sub, period=(now, now))
        finalize(store, inv, now)
        ok = inv["status"] == "paid"
        if not ok and pm is not None:
            ok, pi, ch = pay_invoice(store, inv, now, pm)
            if not ok and payment_behavior == "error_if_incomplete":
                raise decline_error(pi, ch)
        if ok:
            set_status(store, sub, "active")
        else:
            sub["_incomplete_until"] = now + INCOMPLETE_EXPIRY
    if cancel_at_period_end:
        sub["cancel_at_period_end"] = True
        sub["cancel_at"] = sub_period(sub)[1]
        sub["canceled_at"] = now
    return sub, inv, ok


# --- subscription schedules ------------------------------------------------------------------------
SCHEDULE_LIVE = ("not_started", "active")


def release_schedule(store: Store, schedule: dict, at: int) -> None:
    """Detach the schedule; the subscription carries on as it is."""
    sub = store.get("subscription", schedule["subscription"])
    schedule.update(status="released", released_at=at, released_subscription=sub["id"], current_phase=None)
    if sub.get("schedule") == schedule["id"]:
        sub["schedule"] = None
        store.emit("customer.subscription.updated", sub, {"schedule": schedule["id"]})
    store.emit("subscription_schedule.released", schedule)


def phase_trial_end(phase: dict) -> int | None:
    """A phase's trial lasts until its trial_end, or the whole phase with trial=true."""
    return phase.get("trial_end") or (phase["end_date"] if phase.get("trial") else None)


def live_schedule(store: Store, sub: dict) -> dict | None:
    schedule = store.get("subscription_schedule", sub.get("schedule") or "")
    return schedule if schedule and schedule["status"] in SCHEDULE_LIVE else None


def running_phase(schedule: dict) -> dict:
    """The schedule's current phase (past phases stay listed before it)."""
    return next(ph for ph in schedule["phases"] if ph["start_date"] == schedule["current_phase"]["start_date"])


def phase_beginning(schedule: dict | None, at: int) -> dict | None:
    """The phase after the running one that has begun by `at` (a renewal or a trial's end at `at` switches to it)."""
    if not schedule:
        return None
    current = schedule["current_phase"]["start_date"]
    return next((ph for ph in schedule["phases"] if ph["start_date"] <= at < ph["end_date"] and ph["start_date"] > current), None)


def phase_items(sub: dict, phase: dict) -> list[dict]:
    """The subscription's items as `phase` sets them (copies: prices and quantities, in order)."""
    planned = phase["items"]
    return [dict(it, price=planned[i]["price"], quantity=planned[i]["quantity"]) if i < len(planned) else dict(it)
            for i, it in enumerate(sub["items"]["data"])]


def advance_phase(store: Store, sub: dict, at: int) -> None:
    """Called at a renewal or a trial's end: if the schedule's next phase starts now, switch the items
    to it (and start its trial, if it has one). As on Stripe, past phases stay in `phases` and
    `current_phase` names the running one; the schedule ends only when its last phase does (`end_schedule`)."""
    schedule = live_schedule(store, sub)
    phase = phase_beginning(schedule, at)
    if not phase:
        return
    for item, planned in zip(sub["items"]["data"], phase_items(sub, phase)):
        item.update(price=planned["price"], quantity=planned["quantity"])
    # It takes the phase's discounts (one the phase does not list ends) and adds its metadata.
    disc.take_phase_discounts(store, sub, phase.get("discounts") or [], at)
    for key, value in (phase.get("metadata") or {}).items():
        if value == "":
            sub["metadata"].pop(key, None)
        else:
            sub["metadata"][key] = value
    trial_end = phase_trial_end(phase)
    if trial_end and trial_end > at:
        sub.update(status="trialing", trial_start=at, trial_end=trial_end)
        sub.pop("_trial_will_end_sent", None)
    schedule["current_phase"] = {"start_date": phase["start_date"], "end_date": phase["end_date"]}
    store.emit("subscription_schedule.updated", schedule)


def end_schedule(store: Store, sub: dict, at: int) -> None:
    """The last phase has ended: Stripe applies the schedule's end_behavior (release: the subscription
    carries on by itself; cancel: it ends, and the schedule is completed)."""
    schedule = live_schedule(store, sub)
    if schedule["end_behavior"] == "release":
        release_schedule(store, schedule, at)
        return
    schedule.update(status="completed", completed_at=at, current_phase=None)
    sub["schedule"] = None
    cancel_now(store, sub, at)
    store.emit("subscription_schedule.completed", schedule)


def renew(store: Store, sub: dict, at: int) -> None:
    start, end = sub_period(sub)
    was = sub["status"]
    advance_phase(store, sub, at)  # a scheduled plan change begins with the new period
    trial = sub["status"] == "trialing"  # the phase beginning now starts with a trial
    p0 = store.get("price", sub["items"]["data"][0]["price"])
    new_end = sub["trial_end"] if trial else period_end_for(at, p0, sub["billing_cycle_anchor"])
    set_period(sub, at, new_end)
    previous = {"items": {"data": [
        {"id": it["id"], "current_period_start": start, "current_period_end": end} for it in sub["items"]["data"]]}}
    store.emit("customer.subscription.updated", sub, {**previous, "status": was} if trial else previous)
    lines = pending_lines(store, sub) + (trial_lines if trial else item_lines)(store, sub, (at, new_end))
    invoice_subscription_now(store, sub, lines, "subscription_cycle", at, (start, at))


def end_trial(store: Store, sub: dict, at: int) -> None:
    cust = store.get("customer", sub["customer"])
    has_pm = bool(sub.get("default_payment_method") or cust["invoice_settings"]["default_payment_method"])
    if not has_pm and sub["trial_settings"]["end_behavior"]["missing_payment_method"] == "pause":
        set_status(store, sub, "paused")
        store.emit("customer.subscription.paused", sub)
        return
    if not has_pm and sub["trial_settings"]["end_behavior"]["missing_payment_method"] == "cancel":
        cancel_now(store, sub, at, reason="cancellation_requested")
        return
    before = {"trial_start": sub["trial_start"], "trial_end": sub["trial_end"]}
    advance_phase(store, sub, at)  # a scheduled change may begin with the trial's end
    if sub["trial_end"] > at:  # ... and bring a trial of its own
        set_period(sub, at, sub["trial_end"])
        store.emit("customer.subscription.updated", sub, before)
        return
    period = restart_cycle(store, sub, at)
    store.emit("customer.subscription.updated", sub, {"status": "trialing"})
    invoice_subscription_now(store, sub, pending_lines(store, sub) + item_lines(store, sub, period), "subscription_cycle", at, (at, at))


def restart_cycle(store: Store, sub: dict, at: int) -> tuple[int, int]:
    """Make `sub` active on a new cycle starting at `at` (its trial ended, its pause resumed); the new period."""
    p0 = store.get("price", sub["items"]["data"][0]["price"])
    period = (at, period_end_for(at, p0, at))
    set_period(sub, *period)
    sub["billing_cycle_anchor"] = at
    sub["status"] = "active"
    return period


def next_milestone(store: Store, sub: dict):
    """The earliest thing that happens to ``sub`` by itself, as (time, action)."""
    st = sub["status"]
    if st in ("canceled", "incomplete_expired", "paused"):
        return None
    cands = []
    start, end = sub_period(sub)
    if st == "incomplete":
        cands.append((sub.get("_incomplete_until", sub["created"] + INCOMPLETE_EXPIRY), "expire_incomplete"))
        return min(cands)
    if st == "trialing":
        if not sub.get("_trial_will_end_sent"):
            cands.append((sub["trial_end"] - 3 * DAY, "trial_will_end"))
        if sub.get("cancel_at") and sub["cancel_at"] <= sub["trial_end"]:
            cands.append((sub["cancel_at"], "cancel"))
        else:
            cands.append((sub["trial_end"], "end_trial"))
    else:
        if sub.get("cancel_at") and sub["cancel_at"] <= end:
            cands.append((sub["cancel_at"], "cancel"))
        else:
            cands.append((end, "renew"))
        if sub.get("_retry") and sub["_retry"]["at"]:
            cands.append((sub["_retry"]["at"][0], "retry"))
    if sub.get("pending_update"):
        cands.append((sub["pending_update"]["expires_at"], "expire_pending_update"))
    schedule = live_schedule(store, sub)
    if schedule:
        # Its own step, sorted before a renewal at the same moment ("end_schedule" < "renew").
        cands.append((schedule["phases"][-1]["end_date"], "end_schedule"))
    pc = sub.get("pause_collection")
    if pc and pc.get("resumes_at"):
        cands.append((pc["resumes_at"], "unpause"))
    for d in disc.live_discounts(store, sub.get("discounts") or [], 0):
        if d["end"] is not None:
            cands.append((d["end"], "end_discount"))
    return min(cands) if cands else None


def run_until(store: Store, sub: dict, target: int) -> None:
    for _ in range(5000):  # a bound, in case of a zero-length period
        m = next_milestone(store, sub)
        if m is None or m[0] > target:
            return
        at, action = m
        if action == "trial_will_end":
            sub["_trial_will_end_sent"] = True
            store.emit("customer.subscription.trial_will_end", sub)
        elif action == "end_trial":
            end_trial(store, sub, at)
        elif action == "cancel":
            cancel_now(store, sub, at, reason=sub["cancellation_details"].get("reason") or "cancellation_requested")
        elif action == "renew":
            renew(store, sub, at)
        elif action == "retry":
            retry_payment(store, sub, at)
        elif action == "expire_incomplete":
            sub.pop("_incomplete_until", None)
            inv = store.get("invoice", sub["latest_invoice"])
            if inv and inv["status"] == "open":
                void_invoice(store, inv, at)
            set_status(store, sub, "incomplete_expired")
        elif action == "unpause":
            prev = sub["pause_collection"]
            sub["pause_collection"] = None
            store.emit("customer.subscription.updated", sub, {"pause_collection": prev})
        elif action == "end_discount":
            disc.end_finished_discounts(store, sub, at)
        elif action == "end_schedule":
            end_schedule(store, sub, at)
        elif action == "expire_pending_update":
            expire_pending_update(store, sub, at)


# --- plan changes and prorations ----------------------------------------------------------------
def period_net(store: Store, sub: dict, items: list[dict], at: int) -> tuple[dict, list[str]]:
    """What a whole period of each item costs after the subscription's discounts running at `at` (spread
    as its invoice spreads them), and their ids. Prorations are these, times the part of the period
    (Stripe's default `proration_discounts=included`: a proration's amount is net of the discounts)."""
    live = disc.live_discounts(store, sub["discounts"], at)
    gross = {it["id"]: store.get("price", it["price"])["unit_amount"] * it["quantity"] for it in items}
    return disc.net_amounts(store, live, gross, sub["currency"]), [d["id"] for d in live]


def plan_change(store: Store, sub: dict, changes: list[dict], behavior: str, at: int) -> dict:
    """Work out a change of items without applying it (shared by update and create_preview).

    ``changes``: dicts with id (existing item or None), price (dict), quantity, deleted.
    Returns new item list, proration lines, whether the billing period restarts.
    """
    start, end = sub_period(sub)
    old = {it["id"]: it for it in sub["items"]["data"]}
    new_items = [dict(it) for it in sub["items"]["data"]]
    by_id = {it["id"]: it for it in new_items}
    for ch in changes:
        if ch.get("id"):
            if ch["id"] not in by_id:
                raise missing("subscription item", ch["id"], "items")
            it = by_id[ch["id"]]
            if ch.get("deleted"):
                new_items.remove(it)
                continue
            if ch.get("price"):
                it["price"] = ch["price"]["id"]
            if ch.get("quantity") is not None:
                it["quantity"] = ch["quantity"]
        else:
            new_items.append({"id": gen_id("si", 14), "price": ch["price"]["id"], "quantity": ch.get("quantity") or 1,
                              "_new": True})
    if not new_items:
        raise invalid("A subscription must have at least one active item.", "items")
    old_p = store.get("price", sub["items"]["data"][0]["price"])
    new_p = store.get("price", new_items[0]["price"])
    for it in new_items:
        p = store.get("price", it["price"])
        if p["currency"] != sub["currency"]:
            raise invalid("The price must have the same currency as the subscription.", "items")
    # A new billing interval restarts the period now (as Stripe does), except during a trial,
    # which keeps its end date.
    reset = (old_p["recurring"]["interval"], old_p["recurring"]["interval_count"]) != (
        new_p["recurring"]["interval"], new_p["recurring"]["interval_count"]) and sub["status"] != "trialing"
    lines = []
    prorate = behavior != "none" and sub["status"] in ("active", "past_due") and end > at
    frac = (end - at) / (end - start) if end > start else 0
    if prorate:
        was, ids = period_net(store, sub, sub["items"]["data"], at)
        for it in sub["items"]["data"]:
            nxt = next((n for n in new_items if n["id"] == it["id"]), None)
            if nxt and nxt["price"] == it["price"] and nxt["quantity"] == it["quantity"] and not reset:
                continue
            p = store.get("price", it["price"])
            lines.append({"amount": -round(was[it["id"]] * frac), "price": p, "quantity": it["quantity"],
                          "description": f"Unused time on {product_name(store, p)} after {fmt_date(at)}",
                          "period": (at, end), "proration": True, "item": it["id"], "discounts": ids})
        if not reset:
            will = period_net(store, sub, new_items, at)[0]
            for it in new_items:
                o_it = old.get(it["id"])
                if o_it and o_it["price"] == it["price"] and o_it["quantity"] == it["quantity"]:
                    continue
                p = store.get("price", it["price"])
                lines.append({"amount": round(will[it["id"]] * frac), "price": p, "quantity": it["quantity"],
                              "description": f"Remaining time on {product_name(store, p)} after {fmt_date(at)}",
                              "period": (at, end), "proration": True, "item": it["id"], "discounts": ids})
    new_period = (at, period_end_for(at, new_p, at)) if reset else (start, end)
    return {"items": new_items, "lines": lines, "reset": reset, "period": new_period}


def apply_plan_change(store: Store, sub: dict, change: dict, behavior: str, at: int) -> dict:
    previous_items = {"data": [dict(o.render(store, it)) for it in sub["items"]["data"]]}
    items = []
    for it in change["items"]:
        if it.get("_new"):
            items.append(o.subscription_item(sub["id"], it["price"], it["quantity"], at, *change["period"]))
            items[-1]["id"] = it["id"]
        else:
            it.pop("_new", None)
            items.append(it)
    sub["items"]["data"] = items
    sub["items"]["total_count"] = len(items)
    set_period(sub, *change["period"])
    if change["reset"]:
        sub["billing_cycle_anchor"] = at
    store.emit("customer.subscription.updated", sub, {"items": previous_items})
    if change["reset"] and sub["status"] in ("active", "past_due"):
        lines = change["lines"] + pending_lines(store, sub) + item_lines(store, sub, change["period"])
        invoice_subscription_now(store, sub, lines, "subscription_update", at, (at, at))
    elif behavior == "always_invoice" and change["lines"]:
        lines = pending_lines(store, sub) + change["lines"]
        invoice_subscription_now(store, sub, lines, "subscription_update", at, (at, at))
    else:
        for l in change["lines"]:
            _pending_item(store, sub, l["price"], l["amount"], l["description"], l["period"], at, l["item"], l["discounts"])
    return sub


def action_required_intent(store: Store, inv: dict) -> dict | None:
    """The payment intent of an open invoice that waits for the customer's 3-D Secure, if any."""
    if inv["status"] != "open":
        return None
    for ip in store.all("invoice_payment"):
        if ip["invoice"] == inv["id"] and ip["status"] == "open":
            pi = store.get("payment_intent", (ip.get("payment") or {}).get("payment_intent") or "")
            if pi and pi["status"] == "requires_action":
                return pi
    return None
