"""POST /api/stripe/webhook through the real Starlette app on a real database."""

from __future__ import annotations

import json
import time

import pytest
from structlog.testing import capture_logs

from billing_app.webhooks.handlers import RESYNC_EVENT_TYPES, customer_of
from billing_app.webhooks.worker import Worker
from tests.aio import run_async
from tests.webhooks.helpers import OLD_SECRET, CountingSync, event, row, rows, sign


def test_a_signed_event_is_stored_pending_with_its_customer(post):
    ev = event("invoice.paid", "cus_123")
    response = post(ev)
    assert response.status_code == 200 and response.json() == {"received": True, "duplicate": False}
    stored = row(ev["id"])
    assert (stored.type, stored.customer_id, stored.state, stored.attempts) == ("invoice.paid", "cus_123", "pending", 0)
    assert json.loads(stored.payload) == ev  # the raw body, kept as Stripe sent it
    assert stored.received_at is not None and stored.processed_at is None


@pytest.mark.parametrize(
    "case",
    ["wrong secret", "missing header", "expired timestamp", "future timestamp", "tampered body", "garbage header"],
)
def test_a_bad_or_missing_signature_gets_400_a_log_line_and_no_row(client, case):
    ev = event("invoice.paid", "cus_123")
    body = json.dumps(ev)
    headers = {"Stripe-Signature": sign(body)}
    if case == "wrong secret":
        headers["Stripe-Signature"] = sign(body, "whsec_someone_else")
    elif case == "missing header":
        headers = {}
    elif case == "expired timestamp":
        headers["Stripe-Signature"] = sign(body, timestamp=int(time.time()) - 301)
    elif case == "future timestamp":
        headers["Stripe-Signature"] = sign(body, timestamp=int(time.time()) + 3600)
    elif case == "tampered body":
        body = body.replace("cus_123", "cus_evil")
    elif case == "garbage header":
        headers["Stripe-Signature"] = "not-a-signature"
    with capture_logs() as logs:
        response = client.post("/api/stripe/webhook", content=body, headers=headers)
    if case == "future timestamp":
        # Stripe's scheme only bounds the age; a future timestamp signed with the secret is genuine.
        assert response.status_code == 200
        return
    assert response.status_code == 400
    assert response.json() == {"success": False, "error_code": "VALIDATION_ERROR", "message": "Missing or invalid Stripe-Signature."}
    assert rows() == []
    assert [entry["event"] for entry in logs] == ["webhook.rejected"]
    assert logs[0]["log_level"] == "warning" and logs[0]["reason"] == "signature_invalid"


def test_a_timestamp_within_the_tolerance_is_accepted(post):
    ev = event()
    assert post(ev, timestamp=int(time.time()) - 280).status_code == 200
    assert row(ev["id"]).state == "pending"


def test_rotation_both_the_old_and_the_new_secret_are_accepted(post):
    old, new = event(customer="cus_old"), event(customer="cus_new")
    assert post(old, OLD_SECRET).status_code == 200
    assert post(new).status_code == 200
    assert {r.stripe_event_id for r in rows()} == {old["id"], new["id"]}


def test_no_configured_secret_refuses_everything(database_url, monkeypatch):
    from starlette.testclient import TestClient

    from billing_app.api import build_api
    from billing_app.settings import get_settings

    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "")
    get_settings.cache_clear()
    body = json.dumps(event())
    with TestClient(build_api()) as client:
        response = client.post("/api/stripe/webhook", content=body, headers={"Stripe-Signature": sign(body)})
    get_settings.cache_clear()
    assert response.status_code == 400 and rows() == []


def test_signed_but_not_an_event_is_400(client):
    for body in ["not json", json.dumps({"hello": "world"}), json.dumps([1, 2])]:
        response = client.post("/api/stripe/webhook", content=body, headers={"Stripe-Signature": sign(body)})
        assert response.status_code == 400, body
    assert rows() == []


def test_only_post_is_accepted(client):
    for method in ("GET", "PUT", "DELETE"):
        response = client.request(method, "/api/stripe/webhook")
        assert response.status_code == 405 and response.headers["allow"] == "POST"
        assert response.json()["error_code"] == "METHOD_NOT_ALLOWED"
    assert rows() == []


def test_errors_answer_in_the_envelope_of_the_rest_api(client):
    body = json.dumps(event())
    refused = client.post("/api/stripe/webhook", content=body, headers={"Stripe-Signature": sign(body, "whsec_wrong")})
    rest = client.get("/api/no-such-route")  # the REST API's own error answer
    assert rest.status_code == 404 and refused.status_code == 400
    assert refused.json().keys() == rest.json().keys() == {"success", "error_code", "message"}
    assert refused.json()["success"] is rest.json()["success"] is False


def test_a_duplicate_id_is_a_no_op_200_one_row_one_effect(post):
    ev = event("customer.subscription.updated", "cus_dup")
    first, second = post(ev), post(ev)
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json() == {"received": True, "duplicate": True}
    assert len(rows()) == 1
    sync = CountingSync()
    Worker(sync).drain()
    assert sync.calls == ["cus_dup"]
    # Stripe redelivers after we processed it: still one row, no second sync.
    assert post(ev).json()["duplicate"] is True
    Worker(sync).drain()
    assert sync.calls == ["cus_dup"] and len(rows()) == 1 and row(ev["id"]).state == "processed"


def test_an_unknown_type_is_stored_and_ignored(post):
    ev = event("payment_intent.created", obj={"id": "pi_1", "object": "payment_intent", "customer": "cus_unknown"})
    response = post(ev)
    assert response.status_code == 200 and response.json()["duplicate"] is False
    stored = row(ev["id"])
    assert (stored.state, stored.customer_id, stored.attempts) == ("processed", None, 0)
    assert stored.processed_at is not None
    sync = CountingSync()
    assert Worker(sync).drain() == [] and sync.calls == []


@pytest.mark.parametrize("type_", sorted(RESYNC_EVENT_TYPES))
def test_every_handled_type_names_the_customer_to_sync(post, type_):
    ev = event(type_, "cus_handled")
    assert post(ev).status_code == 200
    sync = CountingSync()
    Worker(sync).drain()
    assert sync.calls == ["cus_handled"]
    assert row(ev["id"]).state == "processed"


def test_the_customer_is_read_from_an_expanded_customer_or_a_customer_object(post):
    expanded = event("invoice.paid", obj={"id": "in_1", "object": "invoice", "customer": {"id": "cus_expanded", "object": "customer"}})
    assert post(expanded).status_code == 200
    assert row(expanded["id"]).customer_id == "cus_expanded"

    assert customer_of({"id": "cus_self", "object": "customer"}) == "cus_self"


def test_a_detached_payment_method_names_its_customer_in_previous_attributes(post):
    """Stripe sends it with `customer: null`: the customer it left is in previous_attributes."""
    ev = event("payment_method.detached", obj={"id": "pm_1", "object": "payment_method", "customer": None})
    ev["data"]["previous_attributes"] = {"customer": "cus_left"}
    assert post(ev).status_code == 200
    assert row(ev["id"]).customer_id == "cus_left"


def test_a_handled_event_without_a_customer_is_processed_without_a_sync(post):
    ev = event("checkout.session.expired", None)
    assert post(ev).status_code == 200
    sync = CountingSync()
    Worker(sync).drain()
    assert sync.calls == [] and row(ev["id"]).state == "processed"


@pytest.mark.parametrize("data", [["not", "an", "object"], "a string", {"object": ["a", "list"]}, {"object": {"customer": ["x"]}}])
def test_a_handled_event_whose_data_has_another_shape_is_stored_once_and_synced_for_no_customer(post, data):
    """Signed by Stripe but not shaped as we expect: stored (nothing lost; the 200 stops redeliveries),
    never answered 503 as if the database were down, and synced for no customer."""
    ev = event("invoice.paid", "cus_x")
    ev["data"] = data
    with capture_logs() as logs:
        response = post(ev)
    assert (response.status_code, response.json()) == (200, {"received": True, "duplicate": False})
    assert not [line for line in logs if line["event"] == "webhook.store_failed"]
    stored = row(ev["id"])
    assert (stored.type, stored.customer_id, stored.state) == ("invoice.paid", None, "pending")
    assert json.loads(stored.payload)["data"] == data
    sync = CountingSync()
    Worker(sync).drain()
    assert sync.calls == [] and row(ev["id"]).state == "processed"


def test_concurrent_deliveries_of_one_event_store_one_row(webhook_secrets):
    """Stripe (or a retry racing the original) sends the same event at once: one row, one "new" answer."""
    import asyncio

    import httpx

    from billing_app.api import build_api

    body = json.dumps(event("invoice.paid", "cus_race"))

    async def deliver_many():
        transport = httpx.ASGITransport(app=build_api())
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await asyncio.gather(*[
                client.post("/api/stripe/webhook", content=body, headers={"Stripe-Signature": sign(body)}) for _ in range(12)
            ])

    responses = run_async(deliver_many())
    assert [r.status_code for r in responses] == [200] * 12
    assert sorted(r.json()["duplicate"] for r in responses) == [False] + [True] * 11
    assert len(rows()) == 1


def test_when_the_event_cannot_be_stored_the_answer_is_503_so_stripe_retries(post, database_url):
    from sqlalchemy import text

    from billing_app.db import get_engine

    with get_engine().begin() as connection:
        connection.execute(text("DROP TABLE webhookevent"))
    with capture_logs() as logs:
        response = post(event("invoice.paid", "cus_x"))
    assert response.status_code == 503 and response.json()["error_code"] == "SERVICE_UNAVAILABLE"
    assert [entry["event"] for entry in logs] == ["webhook.store_failed"]


def test_a_body_larger_than_any_stripe_event_is_refused_unread(client):
    from billing_app.webhooks.route import MAX_BODY_BYTES

    body = json.dumps(event(obj={"id": "in_big", "object": "invoice", "customer": "cus_big", "pad": "x" * MAX_BODY_BYTES}))
    response = client.post("/api/stripe/webhook", content=body, headers={"Stripe-Signature": sign(body)})
    assert response.status_code == 413 and response.json()["error_code"] == "PAYLOAD_TOO_LARGE"
    assert rows() == []


def test_an_implausible_customer_id_is_not_synced():
    assert customer_of({"id": "in_1", "object": "invoice", "customer": "cus_" + "x" * 300}) is None
    assert customer_of({"id": "in_1", "object": "invoice", "customer": 42}) is None
    assert customer_of({"id": "in_1", "object": "invoice"}) is None


def test_one_bad_event_in_a_batch_fails_alone_and_the_writer_keeps_going():
    """The group-commit writer: a batch whose INSERT fails is retried event by event."""
    from concurrent.futures import wait

    from billing_app.webhooks.ingest import GroupCommitWriter

    written = []

    def store_events(items):
        if any(e["id"] == "evt_poison" for e, _ in items):
            raise ValueError("poison")
        written.extend(e["id"] for e, _ in items)
        return [True] * len(items)

    writer = GroupCommitWriter(store_events)
    futures = {ev_id: writer.submit({"id": ev_id}, "{}") for ev_id in ["evt_a", "evt_poison", "evt_b"]}
    wait(futures.values(), timeout=10)
    assert futures["evt_a"].result() is True and futures["evt_b"].result() is True
    assert isinstance(futures["evt_poison"].exception(), ValueError)
    assert writer.submit({"id": "evt_c"}, "{}").result(timeout=10) is True
    assert sorted(written) == ["evt_a", "evt_b", "evt_c"]
