"""Webhook endpoints and delivery: signed like Stripe, asynchronous, retried, and chaos for reliability tests."""

from __future__ import annotations

import collections
import json
import time

import pytest
import stripe

from tests.sandbox_fixture import free_port, start_sandbox, stop, wait_until_up

from .helpers import catalog, subscribe


def verify(delivery, secret):
    stripe.WebhookSignature.verify_header(delivery["body"], delivery["signature"], secret, tolerance=300)
    return stripe.Webhook.construct_event(delivery["body"], delivery["signature"], secret)


def test_endpoint_crud_and_secret_only_on_create(sandbox, webhook_receiver):
    c = sandbox.client
    we = sandbox.register_webhook(webhook_receiver.url, ["customer.created"])
    assert we.secret.startswith("whsec_") and we.url == webhook_receiver.url and we.status == "enabled"
    assert we.enabled_events == ["customer.created"]
    got = c.v1.webhook_endpoints.retrieve(we.id)
    assert "secret" not in got
    assert [x.id for x in c.v1.webhook_endpoints.list().data] == [we.id]
    assert c.v1.webhook_endpoints.delete(we.id).deleted is True
    assert c.v1.webhook_endpoints.list().data == []


def test_deliveries_are_signed_and_verify_with_the_sdk(sandbox, webhook_receiver):
    we = sandbox.register_webhook(webhook_receiver.url)
    cust = sandbox.client.v1.customers.create(params={"email": "hook@x.test"})
    d = webhook_receiver.wait_for_type("customer.created", id=cust.id)
    event = verify(d, we.secret)
    assert event.type == "customer.created" and event.data.object.email == "hook@x.test"
    assert event.api_version == "2026-10-28.endive"
    assert d["signature"].startswith("t=") and ",v1=" in d["signature"]
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(d["body"], d["signature"], "whsec_wrong", tolerance=300)
    tampered = d["body"].replace("hook@x.test", "evil@x.test")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(tampered, d["signature"], we.secret, tolerance=300)


def test_only_enabled_events_are_sent_and_pending_webhooks_drops(sandbox, webhook_receiver):
    c = sandbox.client
    sandbox.register_webhook(webhook_receiver.url, ["product.updated"])
    prod = c.v1.products.create(params={"name": "a"})
    c.v1.products.update(prod.id, params={"name": "b"})
    d = webhook_receiver.wait_for_type("product.updated")
    assert d["event"]["data"]["previous_attributes"] == {"name": "a"}
    time.sleep(0.3)
    assert {e["type"] for e in webhook_receiver.events()} == {"product.updated"}
    ev = c.v1.events.retrieve(d["event"]["id"])
    assert ev.pending_webhooks == 0


def test_failed_delivery_is_retried_with_backoff(sandbox, webhook_receiver):
    sandbox.configure(webhook_retry_schedule=[0.2, 0.4, 0.8])
    sandbox.register_webhook(webhook_receiver.url, ["customer.created"])
    webhook_receiver.fail_next(2)
    t0 = time.monotonic()
    cust = sandbox.client.v1.customers.create(params={})
    webhook_receiver.wait_for_type("customer.created", id=cust.id)
    took = time.monotonic() - t0
    statuses = [d["status"] for d in webhook_receiver.deliveries]
    assert statuses == [500, 500, 200]
    assert took >= 0.6  # waited 0.2 then 0.4 between attempts
    deadline = time.monotonic() + 5  # the sandbox logs an attempt just after the receiver answers
    while time.monotonic() < deadline and len(sandbox.deliveries()["attempts"]) < 3:
        time.sleep(0.02)
    attempts = [a["attempt"] for a in sandbox.deliveries()["attempts"]]
    assert attempts == [1, 2, 3]


def test_timeout_counts_as_failure(sandbox, webhook_receiver):
    sandbox.configure(webhook_timeout=0.3, webhook_retry_schedule=[0.1])
    sandbox.register_webhook(webhook_receiver.url, ["customer.created"])
    webhook_receiver.slow = 0.6
    sandbox.client.v1.customers.create(params={})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(sandbox.deliveries()["attempts"]) < 2:
        time.sleep(0.05)
    attempts = sandbox.deliveries()["attempts"]
    assert [a["error"] for a in attempts] == ["ReadTimeout", "ReadTimeout"]


def test_gives_up_after_schedule(sandbox, webhook_receiver):
    sandbox.configure(webhook_retry_schedule=[0.1])
    sandbox.register_webhook(webhook_receiver.url, ["customer.created"])
    webhook_receiver.fail_next(10)
    sandbox.client.v1.customers.create(params={})
    time.sleep(1.0)
    assert [d["status"] for d in webhook_receiver.deliveries] == [500, 500]
    assert sandbox.deliveries()["pending"] == 0


def test_chaos_duplicates_and_reorders(sandbox, webhook_receiver):
    sandbox.configure(chaos=["dup", "shuffle"])
    sandbox.register_webhook(webhook_receiver.url, ["customer.created"])
    ids = [sandbox.client.v1.customers.create(params={"email": f"c{i}@x.test"}).id for i in range(12)]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(webhook_receiver.events()) < 24:
        time.sleep(0.05)
    events = webhook_receiver.events()
    counts = collections.Counter(e["id"] for e in events)
    assert len(counts) == 12 and set(counts.values()) == {2}
    first_seen = list(dict.fromkeys(e["data"]["object"]["id"] for e in events))
    assert first_seen != ids  # with 12 events shuffled over 300 ms, in-order arrival is vanishingly unlikely


def test_deleted_endpoint_gets_nothing_more(sandbox, webhook_receiver):
    we = sandbox.register_webhook(webhook_receiver.url, ["customer.created"])
    sandbox.client.v1.webhook_endpoints.delete(we.id)
    sandbox.client.v1.customers.create(params={})
    time.sleep(0.5)
    assert webhook_receiver.deliveries == []


def test_events_api_filters(sandbox):
    c = sandbox.client
    _, m, _, _ = catalog(c)
    cust = c.v1.customers.create(params={})
    subscribe(sandbox, cust, m)
    subs = c.v1.events.list(params={"type": "customer.subscription.*", "limit": 100}).data
    assert subs and all(e.type.startswith("customer.subscription.") for e in subs)
    two = c.v1.events.list(params={"types": ["invoice.paid", "invoice.created"]}).data
    assert {e.type for e in two} == {"invoice.paid", "invoice.created"}
    ev = c.v1.events.list(params={"type": "invoice.paid"}).data[0]
    assert ev.request.id.startswith("req_") and ev.request.idempotency_key


def test_cli_webhook_url_and_secret(tmp_path, webhook_receiver):
    """`make run` style: --webhook-url/--webhook-secret deliver everything to the app."""
    port = free_port()
    proc = start_sandbox(port, "--webhook-url", webhook_receiver.url, "--webhook-secret", "whsec_cli_test")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, proc)
        client = stripe.StripeClient("sk_test_cli", base_addresses={"api": url})
        cust = client.v1.customers.create(params={"name": "cli"})
        d = webhook_receiver.wait_for_type("customer.created", id=cust.id)
        assert verify(d, "whsec_cli_test").data.object.name == "cli"
        import httpx
        httpx.post(url + "/_sandbox/reset", json={}, headers={"Authorization": "Bearer sk_test_cli"}).raise_for_status()
        client.v1.customers.create(params={"name": "after reset"})
        d = webhook_receiver.wait_for_type("customer.created", name="after reset")
        json.loads(d["body"])
    finally:
        stop(proc)


def test_chaos_delay_still_delivers_every_event_once(sandbox, webhook_receiver):
    sandbox.configure(chaos=["delay"])
    sandbox.register_webhook(webhook_receiver.url, ["customer.created"])
    t0 = time.monotonic()
    ids = {sandbox.client.v1.customers.create(params={}).id for _ in range(3)}
    for cid in ids:
        webhook_receiver.wait_for_type("customer.created", id=cid)
    assert time.monotonic() - t0 >= 0.2  # each delivery is held back 0.2-1.0 s
    assert sorted(e["data"]["object"]["id"] for e in webhook_receiver.events()) == sorted(ids)


def test_config_validation(sandbox):
    for bad in ({"chaos": ["explode"]}, {"webhook_retry_schedule": "fast"}, {"after_final_failure": "shrug"}, {"nope": 1}):
        r = sandbox.http.post("/_sandbox/config", json=bad)
        assert r.status_code == 400, bad
    assert sandbox.configure(payment_retry_days=[1, 2])["payment_retry_days"] == [1, 2]
    sandbox.reset()
    assert sandbox.http.get("/_sandbox/config").json()["payment_retry_days"] == [3, 5, 7]
