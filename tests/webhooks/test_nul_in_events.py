"""An event carrying text PostgreSQL cannot store (a NUL, "\\u0000" in the JSON) is never lost.

The raw payload is kept as Stripe sent it: the column is text, where the escape is six plain
characters (PostgreSQL's JSON type would take it too, JSONB refuses it: keep the column text).
The customer it names is synced, with the NUL dropped from what the mirror shows.
"""

from __future__ import annotations

import json

from sqlmodel import select

from billing_app.db import session_scope
from billing_app.models import BillingProfile, WebhookEvent
from billing_app.webhooks.worker import Worker
from tests.billing.helpers import buy
from tests.dashboard.helpers import wait_for
from tests.ops.helpers import customer_of_org
from tests.webhooks.helpers import CountingSync, event, row, served_backend


def test_an_event_with_a_nul_in_its_payload_is_stored_as_sent_and_processed(post):
    ev = event("customer.updated", "cus_nul")
    ev["data"]["object"]["name"] = "Acme\x00 Inc"
    response = post(ev)
    assert response.status_code == 200 and response.json()["duplicate"] is False
    stored = row(ev["id"])
    assert "\\u0000" in stored.payload and json.loads(stored.payload) == ev
    sync = CountingSync()
    Worker(sync).drain()
    assert sync.calls == ["cus_nul"] and row(ev["id"]).state == "processed"


def test_a_name_with_a_nul_changed_at_stripe_reaches_the_mirror_by_webhook(org, stripe_env, monkeypatch):
    buy(org, sandbox=stripe_env)
    customer = customer_of_org(org.id)
    with served_backend(stripe_env, monkeypatch, poll_seconds=0.2):
        stripe_env.client.v1.customers.update(customer, params={"name": "Acme\x00 Inc"})

        def mirrored():
            with session_scope() as s:
                return s.get(BillingProfile, org.id).name == "Acme Inc"

        wait_for(mirrored, "the new name, without its NUL")
        with session_scope() as s:
            updated = s.exec(select(WebhookEvent).where(WebhookEvent.type == "customer.updated",
                                                        WebhookEvent.payload.contains("\\u0000"))).one()
        assert updated.customer_id == customer
        wait_for(lambda: row(updated.stripe_event_id).state == "processed", "the event processed")
        assert row(updated.stripe_event_id).last_error is None
