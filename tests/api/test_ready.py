"""/api/ready, the load balancer's check: public, so it says what is down but not why (that is logged)."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient

import billing_app.api as backend_api
from billing_app.settings import get_settings
from tests.sandbox_fixture import free_port


@pytest.fixture
def ready_client(database_url):
    with TestClient(backend_api.build_api()) as client:
        yield client


def test_ready_when_the_database_answers(ready_client, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    get_settings.cache_clear()
    response = ready_client.get("/api/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok"}}


def test_a_database_down_is_named_but_its_error_is_only_logged(ready_client, monkeypatch, caplog):
    def refuse():
        raise OperationalError("SELECT 1", {}, Exception('password authentication failed for user "billing" at 10.0.0.7'))

    monkeypatch.setattr(backend_api, "_check_database", refuse)
    monkeypatch.delenv("REDIS_URL", raising=False)
    get_settings.cache_clear()
    with caplog.at_level(logging.WARNING, logger="billing_app.api"):
        response = ready_client.get("/api/ready")
    body = response.json()
    assert response.status_code == 503
    assert (body["success"], body["error_code"]) == (False, "NOT_READY")
    assert body["message"] == "Not ready: the database does not answer."
    assert "OperationalError" in caplog.text and "10.0.0.7" in caplog.text


def test_redis_down_is_named_without_its_error(ready_client, monkeypatch, caplog):
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    get_settings.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="billing_app.api"):
            response = ready_client.get("/api/ready")
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    body = response.json()
    assert response.status_code == 503
    assert body["message"].startswith("Not ready: Redis does not answer: live updates")
    assert "Error" not in body["message"] and "ConnectionError" in caplog.text
