"""The sandbox's coupons, promotion codes, discounts, tax, tax IDs, pauses and portal offers, through the SDK."""

from __future__ import annotations

import httpx
import pytest
import stripe

from tests.sandbox.helpers import CANCEL, SUCCESS, advance, catalog, clock_customer, event_types, subscribe

T0 = 1_767_225_600  # 2026-01-01
DAY = 86400


def test_coupons_are_checked_like_stripe_and_never_edited(sandbox):
    c = sandbox.client
    coupon = c.v1.coupons.create(params={"id": "spring20", "percent_off": 20, "duration": "repeating", "duration_in_months": 3,
                                         "name": "Spring sale", "max_redemptions": 5})
    assert (coupon.id, coupon.percent_off, coupon.duration_in_months, coupon.valid, coupon.times_redeemed) == ("spring20", 20, 3, True, 0)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        c.v1.coupons.create(params={"id": "spring20", "percent_off": 10})
    assert exc.value.code == "resource_already_exists"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        c.v1.coupons.create(params={"percent_off": 10, "amount_off": 100, "currency": "usd"})
    with pytest.raises(stripe.InvalidRequestError) as exc:
        c.v1.coupons.create(params={"percent_off": 10, "duration": "repeating"})
    assert exc.value.param == "duration_in_months"
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.coupons.update("spring20", params={"percent_off": 50})  # not a parameter of the update: coupons are not edited
    assert c.v1.coupons.update("spring20", params={"name": "Spring"}).name == "Spring"
    amount = c.v1.coupons.create(params={"amount_off": 500, "currency": "usd", "duration": "once"})
    assert len(amount.id) == 8 and amount.amount_off == 500
    assert c.v1.coupons.delete(amount.id).deleted is True
    assert [x.id for x in c.v1.coupons.list().data] == ["spring20"]


def test_a_promotion_code_at_checkout_discounts_the_subscription_and_its_invoices(sandbox):
    c = sandbox.client
    _, m, _, _ = catalog(c)
    c.v1.coupons.create(params={"id": "launch", "percent_off": 25, "duration": "repeating", "duration_in_months": 2})
    promo = c.v1.promotion_codes.create(params={"promotion": {"type": "coupon", "coupon": "launch"}, "code": "LAUNCH25",
                                                "max_redemptions": 10})
    assert c.v1.promotion_codes.list(params={"code": "launch25"}).data[0].id == promo.id
    clock, cust = clock_customer(c, T0)
    cs = c.v1.checkout.sessions.create(params={
        "mode": "subscription", "customer": cust.id, "line_items": [{"price": m.id, "quantity": 1}],
        "success_url": SUCCESS, "cancel_url": CANCEL, "allow_promotion_codes": True})
    assert cs.allow_promotion_codes is True and cs.amount_total == 1000
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sandbox.complete_checkout(cs.id, promotion_code="NOPE")
    assert exc.value.code == "promotion_code_invalid"
    sandbox.complete_checkout(cs.id, promotion_code="launch25")
    cs = c.v1.checkout.sessions.retrieve(cs.id)
    assert cs.total_details.amount_discount == 250 and cs.amount_total == 750
    assert cs.discounts[0].promotion_code == promo.id
    sub = c.v1.subscriptions.retrieve(cs.subscription, params={"expand": ["discounts.source.coupon"]})
    discount = sub.discounts[0]
    assert discount.promotion_code == promo.id and discount.source.coupon.id == "launch"
    assert discount.end == T0 + (31 + 28) * DAY  # two months from Jan 1
    first = c.v1.invoices.retrieve(sub.latest_invoice)
    assert (first.subtotal, first.total, first.amount_paid) == (1000, 750, 750)
    assert first.total_discount_amounts[0].amount == 250 and first.lines.data[0].discount_amounts[0].amount == 250
    assert c.v1.promotion_codes.retrieve(promo.id).times_redeemed == 1
    assert c.v1.coupons.retrieve("launch").times_redeemed == 1
    preview = c.v1.invoices.create_preview(params={"subscription": sub.id})
    assert preview.total == 750  # the second month is discounted too
    advance(c, clock, T0 + 31 * DAY + 60)
    assert c.v1.invoices.retrieve(c.v1.subscriptions.retrieve(sub.id).latest_invoice).total == 750
    advance(c, clock, T0 + 59 * DAY + 60)  # the two months are over: the discount ends before the third invoice
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert sub.discounts == [] and c.v1.invoices.retrieve(sub.latest_invoice).total == 1000
    types = event_types(c)
    assert types.count("customer.discount.created") == 1 and "customer.discount.deleted" in types


def test_a_once_coupon_reduces_one_invoice_and_automatic_tax_follows_the_address(sandbox):
    c = sandbox.client
    _, m, _, _ = catalog(c)
    c.v1.coupons.create(params={"id": "welcome5", "amount_off": 500, "currency": "usd", "duration": "once"})
    clock, cust = clock_customer(c, T0)
    cs = c.v1.checkout.sessions.create(params={
        "mode": "subscription", "customer": cust.id, "line_items": [{"price": m.id, "quantity": 1}],
        "success_url": SUCCESS, "discounts": [{"coupon": "welcome5"}], "automatic_tax": {"enabled": True},
        "billing_address_collection": "required", "customer_update": {"address": "auto", "name": "auto"},
        "tax_id_collection": {"enabled": True}})
    sandbox.complete_checkout(cs.id, billing_address={"line1": "Unter den Linden 1", "city": "Berlin", "postal_code": "10117",
                                                      "country": "DE"},
                              business_name="Ada GmbH", tax_id={"type": "eu_vat", "value": "DE 123456789"})
    cs = c.v1.checkout.sessions.retrieve(cs.id)
    assert cs.total_details.amount_discount == 500 and cs.total_details.amount_tax == 95 and cs.amount_total == 595
    cust = c.v1.customers.retrieve(cust.id, params={"expand": ["tax_ids"]})
    assert cust.address.country == "DE" and cust.name == "Ada GmbH"
    assert [(t.type, t.value, t.country) for t in cust.tax_ids.data] == [("eu_vat", "DE123456789", "DE")]
    sub = c.v1.subscriptions.retrieve(cs.subscription)
    first = c.v1.invoices.retrieve(sub.latest_invoice)
    assert (first.subtotal, first.total_excluding_tax, first.total, first.automatic_tax.status) == (1000, 500, 595, "complete")
    assert first.total_taxes[0].amount == 95 and first.total_taxes[0].taxable_amount == 500
    assert sub.discounts == []  # used up by the first invoice
    assert c.v1.invoices.create_preview(params={"subscription": sub.id}).total == 1190


def test_tax_ids_are_validated_listed_and_deleted(sandbox):
    c = sandbox.client
    cust = c.v1.customers.create(params={"email": "tax@example.com"})
    with pytest.raises(stripe.InvalidRequestError) as exc:
        c.v1.customers.tax_ids.create(cust.id, params={"type": "eu_vat", "value": "DE12"})
    assert (exc.value.code, exc.value.user_message) == ("tax_id_invalid", "Invalid value for eu_vat.")
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.customers.tax_ids.create(cust.id, params={"type": "not_a_type", "value": "1"})
    gb = c.v1.customers.tax_ids.create(cust.id, params={"type": "gb_vat", "value": "GB123456789"})
    assert gb.id.startswith("txi_") and gb.verification.status == "verified" and gb.owner.customer == cust.id
    assert [t.id for t in c.v1.customers.tax_ids.list(cust.id).data] == [gb.id]
    assert c.v1.customers.tax_ids.delete(cust.id, gb.id).deleted is True
    assert c.v1.customers.tax_ids.list(cust.id).data == []
    assert {"customer.tax_id.created", "customer.tax_id.deleted"} <= set(event_types(c))


def test_customer_details_are_validated(sandbox):
    c = sandbox.client
    cust = c.v1.customers.create(params={"email": "ok@example.com"})
    with pytest.raises(stripe.InvalidRequestError) as exc:
        c.v1.customers.update(cust.id, params={"email": "not-an-email"})
    assert exc.value.code == "email_invalid"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        c.v1.customers.update(cust.id, params={"address": {"country": "Germany"}})
    assert exc.value.param == "address[country]"
    cust = c.v1.customers.update(cust.id, params={"address": {"line1": "1 Main", "country": "us"}, "name": "Acme Inc"})
    assert cust.address.country == "US" and cust.address.city is None and cust.name == "Acme Inc"


def test_subscription_discounts_can_be_added_and_kept(sandbox):
    c = sandbox.client
    _, m, _, _ = catalog(c)
    c.v1.coupons.create(params={"id": "a10", "percent_off": 10, "duration": "forever"})
    c.v1.coupons.create(params={"id": "b5", "amount_off": 100, "currency": "usd", "duration": "forever"})
    _, cust = clock_customer(c, T0)
    _, sub = subscribe(sandbox, cust, m)
    sub = c.v1.subscriptions.update(sub.id, params={"discounts": [{"coupon": "a10"}]})
    first = sub.discounts[0]
    sub = c.v1.subscriptions.update(sub.id, params={"discounts": [{"discount": first}, {"coupon": "b5"}]})
    assert sub.discounts[0] == first and len(sub.discounts) == 2
    assert c.v1.invoices.create_preview(params={"subscription": sub.id}).total == 1000 - 100 - 100  # in order: 10%, then $1
    sub = c.v1.subscriptions.update(sub.id, params={"discounts": ""})
    assert sub.discounts == []


def test_pause_collection_resumes_by_itself_and_voids_what_falls_inside(sandbox):
    c = sandbox.client
    _, m, _, _ = catalog(c)
    clock, cust = clock_customer(c, T0)
    _, sub = subscribe(sandbox, cust, m)
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.subscriptions.update(sub.id, params={"pause_collection": {"behavior": "void", "resumes_at": T0 - 1}})
    resumes = T0 + 45 * DAY
    sub = c.v1.subscriptions.update(sub.id, params={"pause_collection": {"behavior": "void", "resumes_at": resumes}})
    assert sub.pause_collection.resumes_at == resumes
    advance(c, clock, resumes + 60)
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert sub.pause_collection is None and sub.status == "active"
    statuses = [i.status for i in c.v1.invoices.list(params={"customer": cust.id}).data]
    assert statuses == ["void", "paid"]  # the renewal inside the pause was not charged


def _post(sandbox, path: str, **form) -> httpx.Response:
    return httpx.post(f"{sandbox.base_url}{path}", data=form, follow_redirects=False)


def test_portal_cancel_flow_offers_the_retention_coupon_and_a_pause(sandbox):
    c = sandbox.client
    prod, m, _, _ = catalog(c)
    c.v1.coupons.create(params={"id": "stay20", "percent_off": 20, "duration": "repeating", "duration_in_months": 3,
                                "name": "20% off for 3 months"})
    clock, cust = clock_customer(c, T0)
    _, sub = subscribe(sandbox, cust, m)
    cfg = c.v1.billing_portal.configurations.create(params={"features": {
        "subscription_cancel": {"enabled": True, "mode": "at_period_end", "cancellation_reason": {"enabled": True, "options": ["too_expensive", "other"]}},
        "subscription_pause": {"enabled": True, "duration": {"type": "interval_options", "interval_options": [
            {"interval": "month", "interval_count": n} for n in (1, 2, 3)]}}}})
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.billing_portal.sessions.create(params={"customer": cust.id, "configuration": cfg.id, "flow_data": {
            "type": "subscription_cancel", "subscription_cancel": {"subscription": sub.id, "retention": {
                "type": "coupon_offer", "coupon_offer": {"coupon": "missing"}}}}})
    s = c.v1.billing_portal.sessions.create(params={"customer": cust.id, "configuration": cfg.id, "flow_data": {
        "type": "subscription_cancel", "subscription_cancel": {"subscription": sub.id, "retention": {
            "type": "coupon_offer", "coupon_offer": {"coupon": "stay20"}}}}})
    assert s.flow.subscription_cancel.retention.coupon_offer.coupon == "stay20"
    html = httpx.get(s.url).text
    assert "20% off for 3 months" in html and "id=accept-offer" in html and "Pause for" in html and "3 months" in html
    assert _post(sandbox, f"/portal/{s.id}/accept_retention", subscription=sub.id).status_code == 303
    sub = c.v1.subscriptions.retrieve(sub.id, params={"expand": ["discounts"]})
    assert sub.discounts[0].source.coupon == "stay20" and sub.cancel_at_period_end is False
    assert "id=accept-offer" not in httpx.get(s.url).text  # taken: not offered again
    assert _post(sandbox, f"/portal/{s.id}/pause", subscription=sub.id, pause_for="2 month").status_code == 303
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert sub.pause_collection.behavior == "void" and sub.pause_collection.resumes_at == T0 + (31 + 28) * DAY
    pause = c.v1.billing_portal.sessions.create(params={"customer": cust.id, "configuration": cfg.id, "flow_data": {
        "type": "subscription_pause", "subscription_pause": {"subscription": sub.id}}})
    assert pause.flow.type == "subscription_pause"


def test_portal_customer_update_flow_edits_the_address_and_tax_ids(sandbox):
    c = sandbox.client
    cust = c.v1.customers.create(params={"email": "a@example.com"})
    cfg = c.v1.billing_portal.configurations.create(params={"features": {
        "customer_update": {"enabled": True, "allowed_updates": ["email", "name", "address", "tax_id"]}}})
    s = c.v1.billing_portal.sessions.create(params={"customer": cust.id, "configuration": cfg.id,
                                                    "flow_data": {"type": "customer_update"}})
    assert s.flow.type == "customer_update"
    html = httpx.get(s.url).text
    assert "cu_address_line1" in html and "tax_id_value" in html and "update-payment-method" not in html
    r = _post(sandbox, f"/portal/{s.id}/customer", email="billing@example.com", name="Acme", address_line1="1 Main",
              address_city="Springfield", address_postal_code="12345", address_state="", address_line2="", address_country="US")
    assert r.status_code == 303 and "msg=" in r.headers["location"]
    r = _post(sandbox, f"/portal/{s.id}/tax_id_add", type="eu_vat", value="FR12")
    assert "error=" in r.headers["location"]
    _post(sandbox, f"/portal/{s.id}/tax_id_add", type="eu_vat", value="FRAB123456789")
    cust = c.v1.customers.retrieve(cust.id, params={"expand": ["tax_ids"]})
    assert (cust.email, cust.name, cust.address.city) == ("billing@example.com", "Acme", "Springfield")
    assert [t.value for t in cust.tax_ids.data] == ["FRAB123456789"]
