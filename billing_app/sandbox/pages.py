"""The hosted pages Stripe would serve: Checkout, the customer portal, invoices and their PDFs.

Plain HTML forms with a little CSS and no JavaScript, so any browser (and Playwright)
can drive them.  Every action calls the same billing functions as the API, so it
changes the real state and emits the real events.
"""

from __future__ import annotations

import datetime as dt
import functools
import html
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from . import billing as b
from .errors import StripeError

from . import discounts as disc
from .resources import checkout as checkout_res
from .resources import customers as cust_res
from .resources import subscriptions as subs_res
from .resources.portal import default_configuration, quantity_bounds

E = html.escape

CSS = """
*{box-sizing:border-box}body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1a1f36;background:#f6f8fa}
main{max-width:760px;margin:40px auto;padding:0 20px}.card{background:#fff;border:1px solid #e3e8ee;border-radius:10px;padding:24px;margin-bottom:20px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:0 0 12px}.muted{color:#697386;font-size:13px}
table{width:100%;border-collapse:collapse}td,th{padding:8px 4px;border-bottom:1px solid #eef0f3;text-align:left}td.r,th.r{text-align:right}
label{display:block;font-size:13px;color:#3c4257;margin:12px 0 4px}input,select{width:100%;padding:10px;border:1px solid #cfd7df;border-radius:6px;font-size:15px}
.row{display:flex;gap:12px}.row>div{flex:1}button{margin-top:16px;background:#635bff;color:#fff;border:0;border-radius:6px;padding:11px 18px;font-size:15px;cursor:pointer}
button.secondary{background:#fff;color:#3c4257;border:1px solid #cfd7df}button.danger{background:#df1b41}
.error{background:#fdecee;color:#a41c2c;border:1px solid #f5c2c9;border-radius:6px;padding:10px 12px;margin:12px 0}
.notice{background:#e8f6ee;color:#0e6245;border:1px solid #b7e4c7;border-radius:6px;padding:10px 12px;margin:12px 0}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;background:#eef0f3;font-size:12px}.total{font-weight:600;font-size:18px}
fieldset{border:1px solid #e3e8ee;border-radius:8px;margin:16px 0 0;padding:4px 14px 14px}legend{font-size:13px;color:#3c4257;padding:0 4px}
a{color:#635bff}.banner{background:#fff3cd;color:#6b4e00;text-align:center;font-size:12px;padding:4px}
"""


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    doc = (f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content='width=device-width,initial-scale=1'>"
           f"<title>{E(title)}</title><style>{CSS}</style></head><body><div class=banner>Test mode — offline Stripe sandbox</div>"
           f"<main>{body}</main></body></html>")
    return HTMLResponse(doc, status)


def not_found(what: str) -> HTMLResponse:
    return page("Not found", f"<div class=card><h1>{E(what)} not found</h1><p class=muted>This link is invalid or has been reset.</p></div>", 404)


def date(ts) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%d %b %Y") if ts else "—"


async def form_of(request: Request) -> dict:
    return dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))


def card_fields(prefix_label: str = "Card information") -> str:
    return (f"<label for=card_number>{E(prefix_label)}</label>"
            "<input id=card_number name=card_number placeholder='4242 4242 4242 4242' autocomplete=cc-number required>"
            "<div class=row><div><label for=card_expiry>Expiry</label><input id=card_expiry name=card_expiry placeholder='MM / YY' value='12 / 34'></div>"
            "<div><label for=card_cvc>CVC</label><input id=card_cvc name=card_cvc placeholder='CVC' value='123'></div></div>"
            "<p class=muted>Test cards: 4242 4242 4242 4242 pays, 4000 0000 0000 0002 is declined; pm_card_* tokens work too.</p>")


# --- checkout --------------------------------------------------------------------------------------------
def authentication_buttons(action: str, hidden: dict) -> str:
    fields = "".join(f"<input type=hidden name={E(k)} value='{E(v)}'>" for k, v in hidden.items())
    return (f"<form method=post action='{E(action)}'>{fields}"
            "<p>This is the sandbox's stand-in for your bank's 3-D Secure page.</p>"
            "<button type=submit name=authentication value=approve id=authenticate-approve>Complete authentication</button> "
            "<button type=submit name=authentication value=fail id=authenticate-fail class=secondary>Fail authentication</button></form>")


def authentication_step(action: str, amount: str, hidden: dict) -> str:
    return (f"<div class=card id=authentication><h1>Confirm your payment</h1>"
            f"<p>Your bank asks you to confirm a payment of <b>{E(amount)}</b>.</p>{authentication_buttons(action, hidden)}</div>")


def routes(sb) -> list[Route]:
    store = sb.store

    def base(request):
        store.base_url = sb.base_url(request)

    def named(request, kind):
        """The object of `kind` the path's id names (None if there is none); call under store.lock."""
        base(request)
        return store.get(kind, request.path_params["id"])

    def open_checkout(request):
        """The checkout session the path names, expired first if its time is up."""
        cs = named(request, "checkout.session")
        if cs is not None:
            checkout_res.expire_if_due(store, cs)
        return cs

    def checkout_body(cs, error=None, email="", form=None):
        def qty(li):
            aq = li.get("adjustable_quantity")
            if not aq or cs["status"] != "open":
                return str(li["quantity"])
            # Submitted with the payment form (form=pay): the buyer's seats, say.
            return (f"<input form=pay id=quantity name=quantity type=number aria-label=Quantity style='width:6em' "
                    f"min={aq['minimum']} max={aq['maximum']} value={li['quantity']}>")
        items = "".join(
            f"<tr><td>{E(li['description'] or '')}<div class=muted>{E(_price_label(store, li['price']))}</div></td>"
            f"<td class=r>{qty(li)}</td><td class=r>{E(b.money(li['amount_total'], li['currency']))}</td></tr>"
            for li in cs["_line_items"])
        cust = store.get("customer", cs["customer"]) if cs["customer"] else None
        trial = cs["_subscription_data"].get("trial_period_days")
        head = (f"<h1>{'Subscribe' if cs['mode'] == 'subscription' else 'Pay'}</h1>"
                f"<p class=muted>Checkout session {E(cs['id'][:24])}…</p>")
        td = cs.get("total_details") or {}
        extra = ""
        if td.get("amount_discount"):
            extra += (f"<tr><td colspan=2>Discount</td><td class=r id=discount>"
                      f"-{E(b.money(td['amount_discount'], cs['currency']))}</td></tr>")
        if td.get("amount_tax"):
            extra += f"<tr><td colspan=2>Tax</td><td class=r id=tax>{E(b.money(td['amount_tax'], cs['currency']))}</td></tr>"
        summary = (f"<table><tr><th>Item</th><th class=r>Qty</th><th class=r>Amount</th></tr>{items}{extra}"
                   f"<tr><td colspan=2 class=total>Total due today</td><td class='r total' id=total>"
                   f"{E(b.money(0 if trial else cs['amount_total'], cs['currency']))}</td></tr></table>")
        if trial:
            summary += f"<p class=notice>{int(trial)}-day free trial, then {E(b.money(cs['amount_total'], cs['currency']))}.</p>"
        if cs["status"] != "open":
            msg = "This checkout session is complete." if cs["status"] == "complete" else "This checkout session has expired."
            return f"<div class=card>{head}<p class=notice id=status>{msg}</p></div>"
        err = f"<div class=error role=alert id=error>{E(error)}</div>" if error else ""
        email_field = (f"<p>Paying as <b>{E(cust.get('email') or cust['id'])}</b></p>" if cust else
                       f"<label for=email>Email</label><input id=email name=email type=email required value='{E(email or cs.get('customer_email') or '')}'>")
        name_field = "" if cust else "<label for=name>Name on card</label><input id=name name=name>"
        cancel = f"<a id=cancel href='{E(cs['cancel_url'])}'>← Cancel and go back</a>" if cs["cancel_url"] else ""
        label = "Start trial" if trial else ("Subscribe" if cs["mode"] == "subscription" else "Pay")
        return (f"<div class=card>{head}{summary}</div><div class=card>{err}"
                f"<form id=pay method=post action='/checkout/{E(cs['id'])}'>{email_field}{name_field}{billing_fields(cs, form or {})}"
                f"{card_fields()}<button type=submit id=submit>{label}</button></form><p>{cancel}</p></div>")

    def billing_fields(cs, form):
        """What the session asks for besides the card: address, business and tax ID, a promotion code."""
        v = lambda k: E(form.get(k, ""))  # noqa: E731
        out = ""
        if checkout_res.needs_address(cs) or cs.get("billing_address_collection") == "auto":
            out += ("<fieldset><legend>Billing address</legend>"
                    f"<label for=address_line1>Address</label><input id=address_line1 name=address_line1 value='{v('address_line1')}' autocomplete=address-line1>"
                    f"<div class=row><div><label for=address_city>City</label><input id=address_city name=address_city value='{v('address_city')}'></div>"
                    f"<div><label for=address_postal_code>Postal code</label><input id=address_postal_code name=address_postal_code value='{v('address_postal_code')}'></div></div>"
                    f"<div class=row><div><label for=address_state>State or region</label><input id=address_state name=address_state value='{v('address_state')}'></div>"
                    f"<div><label for=address_country>Country (2-letter code)</label><input id=address_country name=address_country "
                    f"value='{v('address_country') or 'US'}' maxlength=2 autocomplete=country></div></div></fieldset>")
        if cs["tax_id_collection"]["enabled"]:
            out += ("<fieldset><legend>Purchasing as a business (optional)</legend>"
                    f"<label for=business_name>Business name</label><input id=business_name name=business_name value='{v('business_name')}'>"
                    "<div class=row><div><label for=tax_id_type>Tax ID type</label><select id=tax_id_type name=tax_id_type>"
                    "<option value=eu_vat>EU VAT</option><option value=gb_vat>UK VAT</option><option value=us_ein>US EIN</option>"
                    "<option value=ch_vat>Swiss VAT</option><option value=au_abn>Australian ABN</option></select></div>"
                    f"<div><label for=tax_id_value>Tax ID</label><input id=tax_id_value name=tax_id_value value='{v('tax_id_value')}'></div></div></fieldset>")
        if cs.get("allow_promotion_codes"):
            out += (f"<label for=promotion_code>Promotion code</label><input id=promotion_code name=promotion_code "
                    f"value='{v('promotion_code')}' autocomplete=off>")
        return out

    async def checkout_get(request: Request):
        with store.lock:
            cs = open_checkout(request)
            if cs is None:
                return not_found("Checkout session")
            return page("Checkout", checkout_body(cs))

    async def checkout_post(request: Request):
        form = await form_of(request)
        with store.lock:
            cs = open_checkout(request)
            if cs is None:
                return not_found("Checkout session")
            card = (form.get("card_number") or "").replace(" ", "").replace("-", "")
            if not card:
                return page("Checkout", checkout_body(cs, "Enter a card number.", form.get("email", ""), form), 400)
            if not (card in b.o.CARDS):
                return page("Checkout", checkout_body(cs, "Your card number is invalid. Use a Stripe test card, e.g. 4242 4242 4242 4242.",
                                                      form.get("email", ""), form), 400)
            address = {k[8:]: v for k, v in form.items() if k.startswith("address_") and v} or None
            if checkout_res.needs_address(cs) and not (address and address.get("line1") and address.get("country")):
                return page("Checkout", checkout_body(cs, "Enter your billing address.", form.get("email", ""), form), 400)
            tax_id = {"type": form.get("tax_id_type") or "eu_vat", "value": form["tax_id_value"]} if form.get("tax_id_value") else None
            if b.o.CARDS[card][2] == "authenticate" and form.get("authentication") not in ("approve", "fail"):
                hidden = {k: v for k, v in form.items() if k != "authentication"}
                return page("Checkout", authentication_step(f"/checkout/{cs['id']}", b.money(cs["amount_total"], cs["currency"]), hidden))
            try:
                if form.get("quantity"):
                    checkout_res.set_quantity(cs, form["quantity"])
                checkout_res.complete(store, cs, card, form.get("email") or None, form.get("name") or None,
                                      promotion_code=form.get("promotion_code") or None, address=address,
                                      business_name=form.get("business_name") or None, tax_id=tax_id,
                                      authentication=form.get("authentication"))
            except StripeError as exc:
                message = "That tax ID is not valid." if exc.code == "tax_id_invalid" else exc.message
                return page("Checkout", checkout_body(cs, message, form.get("email", ""), form), exc.status)
            store.touch()
            target = cs["success_url"].replace("{CHECKOUT_SESSION_ID}", cs["id"])
        return RedirectResponse(target, 303)

    # --- portal ----------------------------------------------------------------------------------------
    def portal_ctx(bps_id):
        sess = store.get("billing_portal.session", bps_id)
        if sess is None:
            return None, None, None
        cfg = store.get("billing_portal.configuration", sess["configuration"]) or default_configuration(store)
        cust = store.get("customer", sess["customer"])
        return sess, cfg, cust

    def portal_body(sess, cfg, cust, msg=None, error=None):
        f = cfg["features"]
        bid = E(sess["id"])
        flow = sess.get("flow") or {}
        ftype = flow.get("type")
        subs = [s for s in store.all("subscription") if s["customer"] == cust["id"] and s["status"] not in ("canceled", "incomplete_expired")]
        if ftype in ("subscription_cancel", "subscription_pause", "subscription_update", "subscription_update_confirm"):
            sub_id = flow[ftype]["subscription"]
            subs = [s for s in subs if s["id"] == sub_id]
        bp = cfg.get("business_profile") or {}
        parts = [f"<div class=card><h1>{E(bp.get('headline') or 'Manage your billing')}</h1>"
                 f"<p class=muted>{E(cust.get('email') or cust.get('name') or cust['id'])}</p>"]
        if msg:
            parts.append(f"<div class=notice role=status id=notice>{E(msg)}</div>")
        if error:
            parts.append(f"<div class=error role=alert id=error>{E(error)}</div>")
        if sess.get("return_url"):
            parts.append(f"<a id=return href='{E(sess['return_url'])}'>← Return to the app</a>")
        parts.append("</div>")
        show_all = ftype is None
        if ftype not in ("payment_method_update", "customer_update"):
            parts.append("<div class=card><h2>Current plan</h2>")
            if not subs:
                parts.append("<p class=muted id=no-subscription>No active subscription.</p>")
            for s in subs:
                parts.append(sub_block(s, cfg, bid, ftype, flow))
            parts.append("</div>")
        if show_all or ftype == "payment_method_update":
            pm_id = cust["invoice_settings"]["default_payment_method"] or next((s.get("default_payment_method") for s in subs if s.get("default_payment_method")), None)
            pm = store.get("payment_method", pm_id) if pm_id else None
            desc = f"{pm['card']['brand'].title()} •••• {pm['card']['last4']}" if pm else "No payment method on file"
            parts.append(f"<div class=card><h2>Payment method</h2><p id=payment-method>{E(desc)}</p>")
            if f["payment_method_update"]["enabled"]:
                parts.append(f"<form method=post action='/portal/{bid}/payment_method'>{card_fields('New card')}"
                             "<button type=submit id=update-payment-method>Update payment method</button></form>")
            parts.append("</div>")
        if (show_all or ftype == "customer_update") and f["customer_update"]["enabled"]:
            parts.append(billing_info(cust, f["customer_update"]["allowed_updates"], bid))
        if show_all and f["invoice_history"]["enabled"]:
            invs = sorted([i for i in store.all("invoice") if i["customer"] == cust["id"] and i["status"] != "draft"],
                          key=lambda i: (i["created"], i["_seq"]), reverse=True)
            rows = "".join(
                f"<tr class=invoice-row><td>{date(i['created'])}</td><td>{E(b.money(i['total'], i['currency']))}</td>"
                f"<td><span class=badge>{E(i['status'])}</span></td>"
                f"<td class=r><a href='{E(i['hosted_invoice_url'] or '')}'>View</a> · <a class=pdf href='{E(i['invoice_pdf'] or '')}'>PDF</a></td></tr>"
                for i in invs)
            parts.append(f"<div class=card><h2>Invoice history</h2><table id=invoices>{rows or '<tr><td class=muted>No invoices yet.</td></tr>'}</table></div>")
        return "".join(parts)

    def billing_info(cust, allowed, bid):
        labels = {"email": "Billing email", "name": "Name or company", "phone": "Phone"}
        fields = "".join(f"<label for=cu_{k}>{labels[k]}</label><input id=cu_{k} name={k} value='{E(cust.get(k) or '')}'>"
                         for k in ("email", "name", "phone") if k in allowed)
        if "address" in allowed:
            a = cust.get("address") or {}
            names = {"line1": "Address line 1", "line2": "Address line 2", "city": "City", "state": "State or region",
                     "postal_code": "Postal code", "country": "Country (2-letter code)"}
            fields += "".join(f"<label for=cu_address_{k}>{v}</label><input id=cu_address_{k} name=address_{k} value='{E(a.get(k) or '')}'>"
                              for k, v in names.items())
        out = ["<div class=card><h2>Billing information</h2>"]
        if fields:
            out.append(f"<form method=post action='/portal/{bid}/customer'>{fields}"
                       "<button type=submit class=secondary id=update-customer>Save</button></form>")
        if "tax_id" in allowed:
            ids = [t for t in store.all("tax_id") if t["customer"] == cust["id"]]
            rows = "".join(f"<li class=tax-id>{E(t['type'])} {E(t['value'])} <form method=post action='/portal/{bid}/tax_id_delete' style=display:inline>"
                           f"<input type=hidden name=tax_id value='{E(t['id'])}'><button type=submit class=secondary "
                           f"aria-label='Remove tax ID {E(t['value'])}'>Remove</button></form></li>" for t in ids)
            out.append(f"<h2>Tax IDs</h2><ul id=tax-ids>{rows or '<li class=muted>None</li>'}</ul>"
                       f"<form method=post action='/portal/{bid}/tax_id_add'><label for=tax_id_type>Tax ID type</label>"
                       "<select id=tax_id_type name=type><option value=eu_vat>EU VAT</option><option value=gb_vat>UK VAT</option>"
                       "<option value=us_ein>US EIN</option><option value=ch_vat>Swiss VAT</option><option value=au_abn>Australian ABN</option></select>"
                       "<label for=tax_id_value>Tax ID</label><input id=tax_id_value name=value placeholder='DE123456789'>"
                       "<button type=submit class=secondary id=add-tax-id>Add tax ID</button></form>")
        out.append("</div>")
        return "".join(out)

    def pause_form(s, cfg, bid, label="Pause payments"):
        hidden = f"<input type=hidden name=subscription value='{E(s['id'])}'>"
        duration = cfg["features"]["subscription_pause"]["duration"]
        options = duration.get("interval_options") or []
        choices = "".join(
            f"<option value='{o['interval_count']} {o['interval']}'>{o['interval_count']} {o['interval']}{'s' if o['interval_count'] > 1 else ''}</option>"
            for o in options)
        select = (f"<label for=pause_for>Pause for</label><select id=pause_for name=pause_for>{choices}</select>"
                  if duration.get("type") == "interval_options" and choices else "")
        return (f"<form method=post action='/portal/{bid}/pause'>{hidden}{select}<p class=muted>No payments are taken while paused; "
                "the plan resumes by itself.</p>"
                f"<button type=submit class=secondary id=pause>{E(label)}</button></form>")

    def retention_offer(s, flow, bid):
        """The coupon offered before a cancellation (flow_data[subscription_cancel][retention])."""
        retention = (flow.get("subscription_cancel") or {}).get("retention") or {}
        coupon_id = (retention.get("coupon_offer") or {}).get("coupon")
        c = store.get("coupon", coupon_id) if coupon_id else None
        if c is None or not disc.coupon_valid(c):
            return ""
        if any((store.get("discount", d) or {}).get("source", {}).get("coupon") == coupon_id for d in s["discounts"]):
            return ""  # already taken
        hidden = f"<input type=hidden name=subscription value='{E(s['id'])}'>"
        return (f"<div class=notice id=retention-offer><b>Before you go: {E(c.get('name') or disc.describe(c))}</b>"
                f"<p>{E(disc.describe(c))} if you stay.</p><form method=post action='/portal/{bid}/accept_retention'>{hidden}"
                "<button type=submit id=accept-offer>Accept offer</button></form></div>")

    def sub_block(s, cfg, bid, ftype, flow):
        f = cfg["features"]
        it = s["items"]["data"][0]
        pr = store.get("price", it["price"])
        sid = E(s["id"])
        out = [f"<div class=subscription id='sub-{sid}'><p><b class=plan-name>{E(b.product_name(store, pr))}</b> — "
               f"{E(_price_label(store, pr['id']))} <span class=badge id=sub-status>{E(s['status'])}</span></p>"]
        end = it["current_period_end"]
        if s["status"] == "trialing":
            out.append(f"<p class=muted>Trial ends {date(s['trial_end'])}</p>")
        if s["cancel_at"]:
            out.append(f"<p class=notice id=cancel-notice>Your plan will be canceled on {date(s['cancel_at'])}.</p>")
        elif s["status"] in ("active", "past_due", "trialing"):
            out.append(f"<p class=muted>Renews {date(end)}</p>")
        pc = s.get("pause_collection")
        if pc:
            until = f" until {date(pc['resumes_at'])}" if pc.get("resumes_at") else ""
            out.append(f"<p class=notice id=pause-notice>Payment collection is paused{until}.</p>")
        for d in disc.live_discounts(store, s["discounts"], b.now_for(store, s["customer"])):
            c = store.get("coupon", d["source"]["coupon"])
            ends = f" (until {date(d['end'])})" if d["end"] else ""
            out.append(f"<p class=muted data-discount>{E(c.get('name') or disc.describe(c))}{ends}</p>")
        hidden = f"<input type=hidden name=subscription value='{sid}'>"
        if s["status"] == "paused":
            out.append(f"<form method=post action='/portal/{bid}/resume'>{hidden}<button type=submit id=resume>Resume subscription</button></form>")
        can_pause = f["subscription_pause"]["enabled"] and s["status"] in ("active", "trialing") and not pc
        if ftype == "subscription_pause" and can_pause:
            out.append(pause_form(s, cfg, bid))
        if ftype in (None, "subscription_cancel") and f["subscription_cancel"]["enabled"] and s["status"] != "paused":
            if s["cancel_at_period_end"] and ftype is None:
                out.append(f"<form method=post action='/portal/{bid}/renew'>{hidden}<button type=submit id=renew>Don't cancel (renew plan)</button></form>")
            elif not s["cancel_at_period_end"]:
                if ftype == "subscription_cancel":
                    out.append(retention_offer(s, flow, bid))
                    if can_pause:
                        out.append("<h2>Pause instead</h2>" + pause_form(s, cfg, bid, "Pause instead"))
                reason = ""
                cr = f["subscription_cancel"]["cancellation_reason"]
                if cr["enabled"]:
                    opts = "".join(f"<option value='{E(o)}'>{E(o.replace('_', ' '))}</option>" for o in cr["options"])
                    reason = (f"<label for=reason>Why are you canceling?</label><select id=reason name=reason><option value=''>—</option>{opts}</select>"
                              "<label for=comment>Anything else? (optional)</label><input id=comment name=comment maxlength=500>")
                when = "immediately" if f["subscription_cancel"]["mode"] == "immediately" else f"at the end of the period ({date(end)})"
                out.append(f"<form method=post action='/portal/{bid}/cancel'>{hidden}{reason}<p class=muted>Your plan will be canceled {E(when)}.</p>"
                           f"<button type=submit class=danger id=cancel-subscription>Cancel plan</button></form>")
        if ftype in (None, "subscription_update") and f["subscription_update"]["enabled"] and s["status"] in ("active", "trialing", "past_due"):
            choices = []
            for prod in f["subscription_update"]["products"]:
                for pid in prod["prices"]:
                    p2 = store.get("price", pid)
                    if p2 and p2["id"] != pr["id"] and p2["active"]:
                        choices.append(f"<option value='{E(pid)}'>{E(b.product_name(store, p2))} — {E(_price_label(store, pid))}</option>")
            if choices:
                out.append(f"<form method=post action='/portal/{bid}/update'>{hidden}<label for=price>Change plan</label>"
                           f"<select id=price name=price>{''.join(choices)}</select><button type=submit class=secondary id=update-plan>Update plan</button></form>")
            bounds = quantity_bounds(cfg, pr)
            if bounds:
                top = f" max={bounds[1]}" if bounds[1] else ""
                out.append(f"<form method=post action='/portal/{bid}/quantity'>{hidden}<label for=quantity>Quantity</label>"
                           f"<input id=quantity name=quantity type=number min={bounds[0]}{top} value={it['quantity']}>"
                           "<button type=submit class=secondary id=update-quantity>Update quantity</button></form>")
        if ftype == "subscription_update_confirm":
            conf = flow["subscription_update_confirm"]
            desc = ", ".join(_price_label(store, i["price"]) for i in conf["items"] if i.get("price"))
            out.append(f"<form method=post action='/portal/{bid}/confirm_update'>{hidden}<p>New plan: <b>{E(desc)}</b></p>"
                       "<button type=submit id=confirm-update>Confirm</button></form>")
        if ftype is None and f["subscription_pause"]["enabled"] and s["status"] in ("active", "trialing"):
            if pc:
                out.append(f"<form method=post action='/portal/{bid}/unpause'>{hidden}<button type=submit class=secondary id=unpause>Resume payments</button></form>")
            else:
                out.append(pause_form(s, cfg, bid))
        out.append("</div>")
        return "".join(out)

    async def portal_get(request: Request):
        with store.lock:
            base(request)
            sess, cfg, cust = portal_ctx(request.path_params["id"])
            if sess is None or cust is None:
                return not_found("Portal session")
            q = request.query_params
            return page("Billing portal", portal_body(sess, cfg, cust, q.get("msg"), q.get("error")))

    async def portal_post(request: Request):
        form = await form_of(request)
        action = request.path_params["action"]
        with store.lock:
            base(request)
            sess, cfg, cust = portal_ctx(request.path_params["id"])
            if sess is None or cust is None:
                return not_found("Portal session")
            try:
                msg = portal_action(action, form, sess, cfg, cust)
            except StripeError as exc:
                return RedirectResponse(f"/portal/{sess['id']}?" + urlencode({"error": exc.message}), 303)
            store.touch()
            flow = sess.get("flow") or {}
            ac = flow.get("after_completion") or {}
            if flow and ac.get("type") == "redirect" and ac.get("redirect"):
                return RedirectResponse(ac["redirect"]["return_url"], 303)
            if flow and ac.get("type") == "hosted_confirmation" and (ac.get("hosted_confirmation") or {}).get("custom_message"):
                msg = ac["hosted_confirmation"]["custom_message"]
        return RedirectResponse(f"/portal/{sess['id']}?" + urlencode({"msg": msg}), 303)

    def own_sub(form, cust):
        sub = store.get("subscription", form.get("subscription", ""))
        if sub is None or sub["customer"] != cust["id"]:
            raise StripeError(404, "invalid_request_error", "resource_missing", "That subscription is not yours.")
        return sub

    def portal_action(action, form, sess, cfg, cust) -> str:
        f = cfg["features"]
        def need(name):
            if not f[name]["enabled"]:
                raise StripeError(400, "invalid_request_error", None, f"The portal configuration does not enable {name}.")
        if action == "cancel":
            need("subscription_cancel")
            sub = own_sub(form, cust)
            feedback = form.get("reason") or None
            comment = (form.get("comment") or "").strip()[:500] or None
            if f["subscription_cancel"]["mode"] == "immediately":
                b.cancel_now(store, sub, b.now_for(store, cust["id"]), feedback=feedback, comment=comment,
                             prorate=f["subscription_cancel"]["proration_behavior"] != "none",
                             invoice_now=f["subscription_cancel"]["proration_behavior"] == "always_invoice")
                return "Your plan has been canceled."
            params = {"cancel_at_period_end": "true"}
            if feedback or comment:
                params["cancellation_details"] = {k: v for k, v in {"feedback": feedback, "comment": comment}.items() if v}
            subs_res.update(store, sub, params)
            return f"Your plan will be canceled on {date(sub['cancel_at'])}."
        if action == "renew":
            need("subscription_cancel")
            subs_res.update(store, own_sub(form, cust), {"cancel_at_period_end": "false"})
            return "Your plan will renew."
        if action in ("update", "confirm_update"):
            sub = own_sub(form, cust)
            if action == "update":
                need("subscription_update")
                allowed = {p for prod in f["subscription_update"]["products"] for p in prod["prices"]}
                if form.get("price") not in allowed:
                    raise StripeError(400, "invalid_request_error", None, "That price is not offered in this portal.")
                items = [{"id": sub["items"]["data"][0]["id"], "price": form["price"]}]
            else:
                items = [{k: v for k, v in i.items() if v is not None} for i in sess["flow"]["subscription_update_confirm"]["items"]]
            behavior = f["subscription_update"]["proration_behavior"]
            subs_res.update(store, sub, {"items": items, "proration_behavior": behavior})
            return "Your plan has been updated."
        if action == "quantity":
            need("subscription_update")
            sub = own_sub(form, cust)
            item = sub["items"]["data"][0]
            bounds = quantity_bounds(cfg, store.get("price", item["price"]))
            if bounds is None:
                raise StripeError(400, "invalid_request_error", None, "This portal does not let you change the quantity.")
            try:
                qty = int(form.get("quantity", ""))
            except ValueError:
                qty = -1
            if qty < bounds[0] or (bounds[1] is not None and qty > bounds[1]):
                top = f" to {bounds[1]}" if bounds[1] else " or more"
                raise StripeError(400, "invalid_request_error", None, f"Choose a quantity from {bounds[0]}{top}.")
            behavior = f["subscription_update"]["proration_behavior"]
            subs_res.update(store, sub, {"items": [{"id": item["id"], "quantity": str(qty)}], "proration_behavior": behavior})
            return f"Your quantity is now {qty}."
        if action == "payment_method":
            need("payment_method_update")
            card = (form.get("card_number") or "").replace(" ", "")
            if card not in b.o.CARDS:
                raise StripeError(400, "invalid_request_error", None, "Your card number is invalid.")
            pm = b.resolve_payment_method(store, card)
            b.attach(store, pm, cust)
            b.set_default_pm(store, cust, pm["id"])
            for s in store.all("subscription"):
                if s["customer"] == cust["id"] and s["status"] not in ("canceled", "incomplete_expired") and s.get("default_payment_method"):
                    subs_res.update(store, s, {"default_payment_method": pm["id"]})
            # Stripe retries open invoices of past_due subscriptions when the card changes.
            now = b.now_for(store, cust["id"])
            for s in store.all("subscription"):
                if s["customer"] == cust["id"] and s.get("_retry"):
                    inv = store.get("invoice", s["_retry"]["invoice"])
                    if inv and inv["status"] == "open":
                        ok, _, _ = b.pay_invoice(store, inv, now)
                        if ok:
                            b.invoice_paid_outside(store, inv, now)
            return "Your payment method has been updated."
        if action == "customer":
            need("customer_update")
            allowed = f["customer_update"]["allowed_updates"]
            if "email" in allowed and "email" in form:
                cust_res.check_email(form["email"])
            address = None
            if "address" in allowed and any(k.startswith("address_") for k in form):
                address = cust_res.clean_address({k[8:]: v for k, v in form.items() if k.startswith("address_")})
            before = {k: cust.get(k) for k in ("email", "name", "phone", "address")}
            for k in allowed:
                if k in form and k in before and k != "address":
                    cust[k] = form[k] or None
            if "address" in allowed and any(k.startswith("address_") for k in form):
                cust["address"] = address
            prev = {k: v for k, v in before.items() if cust.get(k) != v}
            if prev:
                store.emit("customer.updated", cust, prev)
            return "Your billing information has been saved."
        if action == "tax_id_add":
            need("customer_update")
            if "tax_id" not in f["customer_update"]["allowed_updates"]:
                raise StripeError(400, "invalid_request_error", None, "This portal does not allow tax ID changes.")
            disc.add_tax_id(store, cust, form.get("type") or "eu_vat", form.get("value") or "", b.now_for(store, cust["id"]))
            return "Your tax ID has been added."
        if action == "tax_id_delete":
            need("customer_update")
            t = store.get("tax_id", form.get("tax_id", ""))
            if t is None or t["customer"] != cust["id"]:
                raise StripeError(404, "invalid_request_error", "resource_missing", "That tax ID is not yours.")
            store.delete("tax_id", t["id"])
            store.emit("customer.tax_id.deleted", t)
            return "Your tax ID has been removed."
        if action == "pause":
            need("subscription_pause")
            sub = own_sub(form, cust)
            params = {"behavior": "void"}
            if form.get("pause_for"):
                count, interval = form["pause_for"].split(" ", 1)
                allowed = {f"{o['interval_count']} {o['interval']}" for o in f["subscription_pause"]["duration"].get("interval_options") or []}
                if form["pause_for"] not in allowed:
                    raise StripeError(400, "invalid_request_error", None, "That pause duration is not offered.")
                params["resumes_at"] = b.add_interval(b.now_for(store, cust["id"]), interval, int(count))
            subs_res.update(store, sub, {"pause_collection": params})
            until = f" until {date(params['resumes_at'])}" if params.get("resumes_at") else ""
            return f"Payments are paused{until}."
        if action == "accept_retention":
            need("subscription_cancel")
            sub = own_sub(form, cust)
            flow = sess.get("flow") or {}
            coupon_id = (((flow.get("subscription_cancel") or {}).get("retention") or {}).get("coupon_offer") or {}).get("coupon")
            if not coupon_id or flow["subscription_cancel"]["subscription"] != sub["id"]:
                raise StripeError(400, "invalid_request_error", None, "There is no offer in this session.")
            if any((store.get("discount", d) or {}).get("source", {}).get("coupon") == coupon_id for d in sub["discounts"]):
                raise StripeError(400, "invalid_request_error", None, "This offer has already been applied.")
            keep = [{"discount": d} for d in sub["discounts"]]
            subs_res.update(store, sub, {"discounts": keep + [{"coupon": coupon_id}]})
            return "The offer has been applied to your plan. Thank you for staying!"
        if action == "unpause":
            subs_res.update(store, own_sub(form, cust), {"pause_collection": ""})
            return "Payments have resumed."
        if action == "resume":
            subs_res.resume(store, own_sub(form, cust))
            return "Your subscription has resumed."
        raise StripeError(404, "invalid_request_error", None, f"Unknown action {action}.")

    # --- invoices ----------------------------------------------------------------------------------------
    def invoice_body(inv, error=None, msg=None):
        cust = store.get("customer", inv["customer"])
        rows = "".join(f"<tr><td>{E(l['description'] or '')}<div class=muted>{date(l['period']['start'])} – {date(l['period']['end'])}</div></td>"
                       f"<td class=r>{E(b.money(l['amount'], l['currency']))}</td></tr>" for l in inv["lines"]["data"])
        parts = [f"<div class=card><h1>Invoice {E(inv['number'] or '')}</h1><p class=muted>Billed to {E((cust or {}).get('email') or inv['customer'])} · "
                 f"<span class=badge id=invoice-status>{E(inv['status'])}</span></p>",
                 f"<div class=error role=alert>{E(error)}</div>" if error else "", f"<div class=notice>{E(msg)}</div>" if msg else "",
                 f"<table>{rows}<tr><td class=total>Amount due</td><td class='r total'>{E(b.money(inv['amount_remaining'], inv['currency']))}</td></tr></table>",
                 f"<p><a id=download-pdf href='/invoices/{E(inv['id'])}/pdf'>Download PDF</a></p></div>"]
        if b.action_required_intent(store, inv) is not None:
            action = f"/invoices/{inv['id']}/authenticate"
            parts.append(f"<div class=card id=action-required><h2>Your bank needs you to confirm this payment</h2>"
                         f"{authentication_buttons(action, {})}</div>")
        if inv["status"] == "open" and inv["amount_remaining"] > 0:
            parts.append(f"<div class=card><h2>Pay this invoice</h2><form method=post action='/invoices/{E(inv['id'])}/pay'>{card_fields()}"
                         "<button type=submit id=pay>Pay</button></form></div>")
        return "".join(parts)

    def paid_outside(inv, now, ok):
        """The answer once a payment of `inv` (outside its subscription's cycle) went through or was declined."""
        if not ok:
            return page("Invoice", invoice_body(inv, "Your card was declined."), 402)
        b.invoice_paid_outside(store, inv, now)
        store.touch()
        return RedirectResponse(f"/invoices/{inv['id']}?msg=Paid", 303)

    async def invoice_get(request: Request):
        with store.lock:
            inv = named(request, "invoice")
            if inv is None or inv["status"] == "draft":
                return not_found("Invoice")
            return page(f"Invoice {inv['number']}", invoice_body(inv, msg=request.query_params.get("msg")))

    def invoice_form(handle):
        """A form posted on an invoice's page: `handle(inv, form)` runs under store.lock (a 404 page when there is no such invoice)."""

        @functools.wraps(handle)
        async def endpoint(request: Request):
            form = await form_of(request)
            with store.lock:
                inv = named(request, "invoice")
                if inv is None:
                    return not_found("Invoice")
                return handle(inv, form)

        return endpoint

    @invoice_form
    def invoice_pay(inv, form):
        card = (form.get("card_number") or "").replace(" ", "")
        if card not in b.o.CARDS:
            return page("Invoice", invoice_body(inv, "Your card number is invalid."), 400)
        now = b.now_for(store, inv["customer"])
        answer = form.get("authentication")
        if b.o.CARDS[card][2] == "authenticate":
            if answer not in ("approve", "fail"):
                return page("Invoice", authentication_step(f"/invoices/{inv['id']}/pay", b.money(inv["amount_remaining"], inv["currency"]),
                                                           {"card_number": card}))
            if answer == "fail":
                return page("Invoice", invoice_body(inv, b.AUTHENTICATION_FAILED), 402)
        try:
            pm = b.resolve_payment_method(store, card)
            with b.approved(store, pm["id"] if answer == "approve" else None):
                ok, pi, ch = b.pay_invoice(store, inv, now, pm)
        except StripeError as exc:
            return page("Invoice", invoice_body(inv, exc.message), exc.status)
        return paid_outside(inv, now, ok)

    @invoice_form
    def invoice_authenticate(inv, form):
        """The 3-D Secure step for a payment made off-session (a renewal, an upgrade)."""
        pi = b.action_required_intent(store, inv)
        if pi is None:
            return page("Invoice", invoice_body(inv, "This payment no longer needs confirming."), 400)
        now = b.now_for(store, inv["customer"])
        if form.get("authentication") != "approve":
            b.authentication_failed(store, pi)
            store.touch()
            return page("Invoice", invoice_body(inv, b.AUTHENTICATION_FAILED), 402)
        pm = store.get("payment_method", pi["payment_method"])
        with b.approved(store, pm["id"]):
            ok, _, _ = b.pay_invoice(store, inv, now, pm, pi=pi)
        return paid_outside(inv, now, ok)

    async def invoice_pdf_route(request: Request):
        with store.lock:
            inv = store.get("invoice", request.path_params["id"])
            if inv is None or inv["status"] == "draft":
                return not_found("Invoice")
            inv = b.o.copy_obj(inv)
            cust = b.o.copy_obj(store.get("customer", inv["customer"]))
        from .pdf import invoice_pdf  # fpdf2 is loaded on first use, to keep start-up fast

        data = invoice_pdf(inv, cust)
        name = f"Invoice-{inv['number'] or inv['id']}.pdf"
        return Response(data, media_type="application/pdf", headers={"Content-Disposition": f'inline; filename="{name}"'})

    async def receipt(request: Request):
        with store.lock:
            ch = store.get("charge", request.path_params["id"])
            if ch is None:
                return not_found("Receipt")
            return page("Receipt", f"<div class=card><h1>Receipt</h1><p>{E(b.money(ch['amount'], ch['currency']))} paid {date(ch['created'])} "
                        f"with {E(ch['payment_method_details']['card']['brand'])} •••• {E(ch['payment_method_details']['card']['last4'])}</p>"
                        f"<p class=muted>Refunded: {E(b.money(ch['amount_refunded'], ch['currency']))}</p></div>")

    return [
        Route("/checkout/{id}", checkout_get, methods=["GET"]),
        Route("/checkout/{id}", checkout_post, methods=["POST"]),
        Route("/portal/{id}", portal_get, methods=["GET"]),
        Route("/portal/{id}/{action}", portal_post, methods=["POST"]),
        Route("/invoices/{id}", invoice_get, methods=["GET"]),
        Route("/invoices/{id}/pay", invoice_pay, methods=["POST"]),
        Route("/invoices/{id}/pdf", invoice_pdf_route, methods=["GET"]),
        Route("/invoices/{id}/authenticate", invoice_authenticate, methods=["POST"]),
        Route("/receipts/{id}", receipt, methods=["GET"]),
    ]


def _price_label(store, price_id) -> str:
    p = store.get("price", price_id)
    if not p:
        return price_id
    amount = b.money(p["unit_amount"], p["currency"])
    r = p["recurring"]
    if not r:
        return amount
    every = r["interval"] if r["interval_count"] == 1 else f"{r['interval_count']} {r['interval']}s"
    return f"{amount} / {every}"
