"""PostgreSQL down: the REST API answers 503 in its error envelope, the webhook route 503 so Stripe
retries, a transaction cut in the middle leaves nothing behind, and all is well once it is back.

The app reaches PostgreSQL through a TCP proxy the test cuts (the shared server is never stopped).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, func, select
from starlette.testclient import TestClient

from billing_app.api import build_api
from billing_app.auth import accounts, api_tokens
from billing_app.db import session_scope
from billing_app.models import Invitation, Notification, WebhookEvent
from billing_app.settings import get_settings
from tests.scale.worker_helpers import (
    TcpProxy,
    postgres_schema,
    use_database,
    with_port,
)
from tests.webhooks.helpers import SECRET, event, sign

PASSWORD = "correct horse battery staple"


@pytest.fixture
def pg(monkeypatch):
    with postgres_schema(monkeypatch) as url:
        yield url


def envelope_503(response) -> bool:
    body = response.json()
    return (response.status_code == 503 and body["success"] is False and body["error_code"] == "SERVICE_UNAVAILABLE"
            and body["message"])


def test_with_postgresql_down_the_api_answers_503_in_its_envelope_and_nothing_is_half_written(
    pg, monkeypatch, fast_password_hashing,
):
    with session_scope() as s:
        accounts.register(s, email="admin@down.example", password=PASSWORD, name="Admin", org_name="Down Inc")
    with session_scope() as s:
        admin = accounts.actor_for_session(s, accounts.login(s, email="admin@down.example", password=PASSWORD))
    with session_scope() as s:
        auth = {"Authorization": f"Bearer {api_tokens.create_token(s, admin, name='down').token}"}
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", SECRET)
    direct = create_engine(pg)  # the test's own look at the database, around the proxy

    proxy = TcpProxy(5432)
    # From here the app reaches PostgreSQL only through the proxy (plain text, so it can spot a statement).
    use_database(monkeypatch, with_port(pg, proxy.port) + "&sslmode=disable")
    assert get_settings().database_url != pg
    try:
        with TestClient(build_api()) as client:
            assert client.get("/api/subscriptions/my", headers=auth).status_code == 200

            proxy.cut()
            answer = client.get("/api/subscriptions/my", headers=auth)
            assert envelope_503(answer) and answer.headers["Retry-After"].isdigit(), answer.text
            assert envelope_503(client.post("/api/org/invitations", headers=auth, json={"email": "new@down.example"}))
            stripe_event = event("invoice.paid", "cus_down")
            body = json.dumps(stripe_event)
            webhook = dict(content=body, headers={"Stripe-Signature": sign(body), "Content-Type": "application/json"})
            answer = client.post("/api/stripe/webhook", **webhook)
            assert answer.status_code == 503 and answer.json()["success"] is False  # Stripe retries a non-2xx

            proxy.restore()
            assert client.get("/api/subscriptions/my", headers=auth).status_code == 200
            assert client.post("/api/stripe/webhook", **webhook).json() == {"received": True, "duplicate": False}  # the retry

            # Down in the middle of a transaction: the invitation is written, then its email (the outbox
            # row, same transaction) is held at the proxy while the connections are cut.
            proxy.hold_from(b"INSERT INTO notification", 1)
            with ThreadPoolExecutor(1) as pool:
                pending = pool.submit(client.post, "/api/org/invitations", headers=auth, json={"email": "mid@down.example"})
                assert proxy.held.wait(30), "the invitation's email was never written"
                proxy.cut()
                proxy.release()
                answer = pending.result(30)
            assert envelope_503(answer), answer.text
            proxy.restore()
    finally:
        proxy.close()

    with direct.connect() as connection:
        assert connection.execute(select(func.count()).select_from(Invitation)).scalar() == 0
        assert connection.execute(select(func.count()).select_from(Notification)).scalar() == 0
        stored = connection.execute(select(WebhookEvent.stripe_event_id)).scalars().all()
    direct.dispose()
    assert stored == [stripe_event["id"]]
