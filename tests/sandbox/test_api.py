"""The REST plumbing, through the official SDK: auth, errors, params, idempotency, pagination, expand."""

from __future__ import annotations

import httpx
import pytest
import stripe

from .helpers import catalog


def test_sdk_talks_to_sandbox_over_http_with_pinned_version(sandbox):
    r = httpx.get(sandbox.base_url + "/v1/products", headers={"Authorization": f"Bearer {sandbox.api_key}"})
    assert r.status_code == 200
    assert r.headers["stripe-version"] == "2026-10-28.endive"
    assert r.headers["request-id"].startswith("req_")
    assert r.json() == {"object": "list", "data": [], "has_more": False, "url": "/v1/products"}


@pytest.mark.parametrize("key", ["sk_live_abcdefghijklmnop", "pk_test_123", "rk_test_1234567890"])
def test_non_test_keys_get_stripes_401(sandbox, key):
    client = stripe.StripeClient(key, base_addresses={"api": sandbox.base_url}, max_network_retries=0)
    with pytest.raises(stripe.AuthenticationError) as exc:
        client.v1.products.list()
    assert exc.value.http_status == 401
    assert "Invalid API Key provided" in exc.value.user_message
    assert key not in exc.value.user_message  # masked, like Stripe


def test_missing_key_is_401_and_any_sk_test_key_works(sandbox):
    r = httpx.get(sandbox.base_url + "/v1/customers")
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "invalid_request_error"
    other = stripe.StripeClient("sk_test_someone_else", base_addresses={"api": sandbox.base_url})
    assert other.v1.customers.list().data == []


def test_unknown_parameter_is_rejected_with_its_path(sandbox):
    prod = sandbox.client.v1.products.create(params={"name": "x"})
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sandbox.client.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 1, "recurring": {"interval": "month", "bogus": 1}})
    assert exc.value.http_status == 400
    assert exc.value.code == "parameter_unknown"
    assert exc.value.param == "recurring[bogus]"
    assert exc.value.json_body["error"]["message"] == "Received unknown parameter: recurring[bogus]"


def test_missing_required_parameter(sandbox):
    prod = sandbox.client.v1.products.create(params={"name": "x"})
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sandbox.client.v1.prices.create(params={"product": prod.id, "unit_amount": 100})
    assert (exc.value.http_status, exc.value.code, exc.value.param) == (400, "parameter_missing", "currency")
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sandbox.client.v1.products.create(params={})
    assert exc.value.param == "name"


def test_unknown_id_is_404_resource_missing(sandbox):
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sandbox.client.v1.customers.retrieve("cus_doesnotexist")
    assert exc.value.http_status == 404
    assert exc.value.code == "resource_missing"
    assert exc.value.json_body["error"]["message"] == "No such customer: 'cus_doesnotexist'"


def test_unknown_url_is_404(sandbox):
    r = httpx.get(sandbox.base_url + "/v1/nothing_here", headers={"Authorization": "Bearer sk_test_x"})
    assert r.status_code == 404
    assert r.json()["error"]["message"].startswith("Unrecognized request URL (GET: /v1/nothing_here)")


def test_idempotency_key_replays_first_response(sandbox):
    c = sandbox.client
    a = c.v1.customers.create(params={"email": "a@x.test"}, options={"idempotency_key": "k1"})
    b = c.v1.customers.create(params={"email": "a@x.test"}, options={"idempotency_key": "k1"})
    assert a.id == b.id
    assert b.last_response.headers.get("Idempotent-Replayed") == "true"
    assert len(c.v1.customers.list().data) == 1
    with pytest.raises(stripe.IdempotencyError) as exc:
        c.v1.customers.create(params={"email": "other@x.test"}, options={"idempotency_key": "k1"})
    assert exc.value.http_status == 400
    assert exc.value.json_body["error"]["type"] == "idempotency_error"


def test_idempotency_replays_errors_too(sandbox):
    c = sandbox.client
    for _ in range(2):
        with pytest.raises(stripe.InvalidRequestError):
            c.v1.prices.create(params={"product": "prod_missing", "currency": "usd", "unit_amount": 1}, options={"idempotency_key": "k2"})


def test_a_request_failing_validation_keeps_nothing_under_its_key(sandbox):
    """Stripe saves an answer only once the endpoint began: the corrected request may use the same key."""
    c = sandbox.client
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.customers.create(params={"email": "a@x.test", "no_such_param": "1"}, options={"idempotency_key": "k3"})
    assert c.v1.customers.create(params={"email": "a@x.test"}, options={"idempotency_key": "k3"}).email == "a@x.test"


def test_a_500_is_kept_under_its_key_like_any_answer(sandbox):
    """Stripe keeps a 500 under its idempotency key for 24 h and replays it; `fail_next` makes one."""
    c = sandbox.client
    sandbox.configure(fail_next=["POST /v1/customers"])
    for _ in range(2):
        with pytest.raises(stripe.APIError) as exc:
            c.v1.customers.create(params={"email": "a@x.test"}, options={"idempotency_key": "k500"})
        assert exc.value.http_status == 500
    assert c.v1.customers.list().data == []  # failed before doing anything
    c.v1.customers.create(params={"email": "a@x.test"}, options={"idempotency_key": "k501"})
    sandbox.configure(fail_next=["POST /v1/customers/* after"])
    customer = c.v1.customers.list().data[0]
    with pytest.raises(stripe.APIError):
        c.v1.customers.update(customer.id, params={"name": "Done anyway"})
    assert c.v1.customers.retrieve(customer.id).name == "Done anyway"  # the work, then the 500
    assert sandbox.http.get("/_sandbox/config").json()["fail_next"] == []  # each entry used once
    for bad in ("POST", ["PUT /v1/customers"], [1]):
        assert sandbox.http.post("/_sandbox/config", json={"fail_next": bad}).status_code == 400, bad


def test_pagination_newest_first_with_cursors(sandbox):
    c = sandbox.client
    ids = [c.v1.customers.create(params={"email": f"u{i}@x.test"}).id for i in range(7)]
    newest_first = ids[::-1]
    page1 = c.v1.customers.list(params={"limit": 3})
    assert [x.id for x in page1.data] == newest_first[:3] and page1.has_more
    page2 = c.v1.customers.list(params={"limit": 3, "starting_after": page1.data[-1].id})
    assert [x.id for x in page2.data] == newest_first[3:6] and page2.has_more
    back = c.v1.customers.list(params={"limit": 2, "ending_before": page2.data[0].id})
    assert [x.id for x in back.data] == newest_first[1:3]
    assert [x.id for x in c.v1.customers.list(params={"limit": 2}).auto_paging_iter()] == newest_first
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.customers.list(params={"limit": 0})


def test_expand_nested_and_in_lists(sandbox):
    c = sandbox.client
    prod, m, _, _ = catalog(c)
    p = c.v1.prices.retrieve(m.id, params={"expand": ["product"]})
    assert p.product.id == prod.id and p.product.name == "Pro plan"
    listed = c.v1.prices.list(params={"expand": ["data.product"], "product": prod.id})
    assert all(x.product.object == "product" for x in listed.data)
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.prices.retrieve(m.id, params={"expand": ["nickname"]})


def test_price_filters_lookup_keys_and_transfer(sandbox):
    c = sandbox.client
    prod, m, y, one = catalog(c)
    got = c.v1.prices.list(params={"lookup_keys": ["pro_monthly", "pro_yearly"]})
    assert {x.id for x in got.data} == {m.id, y.id}
    assert {x.id for x in c.v1.prices.list(params={"type": "one_time"}).data} == {one.id}
    assert one.type == "one_time" and one.recurring is None
    assert y.recurring.interval == "year" and y.recurring.interval_count == 1
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 1200,
                                   "recurring": {"interval": "month"}, "lookup_key": "pro_monthly"})
    new = c.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 1200, "recurring": {"interval": "month",
                                     "interval_count": 3}, "lookup_key": "pro_monthly", "transfer_lookup_key": True})
    assert new.recurring.interval_count == 3
    assert [x.id for x in c.v1.prices.list(params={"lookup_keys": ["pro_monthly"]}).data] == [new.id]
    assert c.v1.prices.retrieve(m.id).lookup_key is None
    c.v1.prices.update(m.id, params={"active": False})
    active = c.v1.prices.list(params={"active": True, "product": prod.id})
    assert m.id not in {x.id for x in active.data} and new.id in {x.id for x in active.data}


def test_product_and_price_events_with_previous_attributes(sandbox):
    c = sandbox.client
    prod = c.v1.products.create(params={"name": "Basic", "metadata": {"tier": "1"}})
    c.v1.products.update(prod.id, params={"name": "Basic+", "metadata": {"tier": ""}})
    updated = c.v1.events.list(params={"type": "product.updated"}).data[0]
    assert updated.data.object.name == "Basic+"
    assert updated.data.object.metadata.to_dict() == {}
    assert updated.data.previous_attributes["name"] == "Basic"
    assert [e.type for e in c.v1.events.list().data] == ["product.updated", "product.created"]
    assert c.v1.events.retrieve(updated.id).id == updated.id


def test_customer_crud_with_metadata_and_default_payment_method(sandbox):
    c = sandbox.client
    cust = c.v1.customers.create(params={"email": "m@x.test", "name": "M", "metadata": {"user_id": "42"},
                                         "payment_method": "pm_card_visa",
                                         "invoice_settings": {"default_payment_method": "pm_card_visa"}})
    pm_id = cust.invoice_settings.default_payment_method
    assert pm_id.startswith("pm_") and pm_id != "pm_card_visa"
    pm = c.v1.payment_methods.retrieve(pm_id)
    assert pm.customer == cust.id and pm.card.last4 == "4242" and pm.card.brand == "visa"
    cust = c.v1.customers.update(cust.id, params={"name": "Mia", "metadata": {"plan": "pro"}})
    assert cust.name == "Mia" and cust.metadata.to_dict() == {"user_id": "42", "plan": "pro"}
    assert [x.id for x in c.v1.customers.list(params={"email": "m@x.test"}).data] == [cust.id]
    found = c.v1.customers.search(params={"query": "metadata['user_id']:'42'"})
    assert [x.id for x in found.data] == [cust.id]
    gone = c.v1.customers.delete(cust.id)
    assert gone.deleted is True
    assert "customer.deleted" in [e.type for e in c.v1.events.list().data]


def test_declining_card_cannot_be_attached_but_customer_fail_card_can(sandbox):
    c = sandbox.client
    cust = c.v1.customers.create(params={"email": "d@x.test"})
    with pytest.raises(stripe.CardError) as exc:
        c.v1.payment_methods.attach("pm_card_chargeDeclined", params={"customer": cust.id})
    assert exc.value.http_status == 402 and exc.value.code == "card_declined"
    pm = c.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": cust.id})
    assert pm.customer == cust.id and pm.card.last4 == "0341"
    assert [x.id for x in c.v1.customers.payment_methods.list(cust.id).data] == [pm.id]


def test_updating_a_card_sets_its_expiry_and_billing_details_and_tells(sandbox):
    """As Stripe documents: card[exp_month], card[exp_year] and billing_details change, payment_method.updated
    carries the old values in previous_attributes; an impossible expiry is Stripe's card_error."""
    c = sandbox.client
    cust = c.v1.customers.create(params={"email": "u@x.test"})
    pm = c.v1.payment_methods.attach("pm_card_visa", params={"customer": cust.id})
    updated = c.v1.payment_methods.update(pm.id, params={
        "card": {"exp_month": 3, "exp_year": 2037},
        "billing_details": {"name": "Ada Lovelace", "address": {"country": "gb", "postal_code": "N1 9GU"}}})
    assert (updated.card.exp_month, updated.card.exp_year) == (3, 2037)
    assert (c.v1.payment_methods.retrieve(pm.id).card.exp_month, updated.card.last4) == (3, "4242")
    assert updated.billing_details.name == "Ada Lovelace"
    assert updated.billing_details.address.to_dict() == {
        "city": None, "country": "GB", "line1": None, "line2": None, "postal_code": "N1 9GU", "state": None}
    event = c.v1.events.list(params={"type": "payment_method.updated"}).data[0]
    assert event.data.object.id == pm.id and event.data.object.customer == cust.id
    previous = event.data.previous_attributes
    assert (previous["card"]["exp_month"], previous["card"]["exp_year"]) == (12, 2034)
    assert previous["billing_details"]["name"] is None

    for card, code in (({"exp_month": 13}, "invalid_expiry_month"), ({"exp_month": 0}, "invalid_expiry_month"),
                       ({"exp_year": 2001}, "invalid_expiry_year")):
        with pytest.raises(stripe.CardError) as exc:
            c.v1.payment_methods.update(pm.id, params={"card": card})
        assert (exc.value.http_status, exc.value.code, exc.value.param) == (402, code, next(iter(card)))
    kept = c.v1.payment_methods.retrieve(pm.id).card
    assert (kept.exp_month, kept.exp_year) == (3, 2037)


def test_reset_clears_state(sandbox):
    sandbox.client.v1.products.create(params={"name": "temp"})
    sandbox.reset()
    assert sandbox.client.v1.products.list().data == []
    assert sandbox.client.v1.events.list().data == []


def test_base_address_with_trailing_slash_still_works(sandbox):
    client = stripe.StripeClient(sandbox.api_key, base_addresses={"api": sandbox.base_url + "/"})
    assert client.v1.customers.create(params={"email": "slash@x.test"}).email == "slash@x.test"


def test_concurrent_requests_are_serialised_safely(sandbox):
    from concurrent.futures import ThreadPoolExecutor

    c = sandbox.client
    prod = c.v1.products.create(params={"name": "busy"})

    def work(i):
        price = c.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 100 + i, "lookup_key": f"k{i}"})
        c.v1.products.update(prod.id, params={"metadata": {f"m{i}": str(i)}})
        return price.id

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(work, range(40)))
    assert len(set(ids)) == 40
    assert len(list(c.v1.prices.list(params={"product": prod.id, "limit": 100}).auto_paging_iter())) == 40
    assert len(c.v1.products.retrieve(prod.id).metadata.to_dict()) == 40
    assert len(c.v1.events.list(params={"type": "product.updated", "limit": 100}).data) == 40
