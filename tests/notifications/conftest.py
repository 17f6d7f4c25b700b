"""Fixtures for the notification tests: a real SMTP server and SMTP_URL pointing at it."""

from __future__ import annotations

import pytest

from tests.notifications.helpers import WEBHOOK_SECRET, SmtpServer


@pytest.fixture
def smtp():
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mail_settings(database_url, monkeypatch):
    """Product name and sender set; no SMTP_URL (tests pass the server's URL to the worker)."""
    from billing_app.settings import get_settings

    monkeypatch.setenv("PRODUCT_NAME", "Acme Billing")
    monkeypatch.setenv("MAIL_FROM", "Acme Billing <billing@acme.example>")
    monkeypatch.delenv("SMTP_URL", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def webhook_client(stripe_env, mail_settings, monkeypatch):
    """The backend's real API app (webhook route included), with a known webhook secret."""
    from starlette.testclient import TestClient

    from billing_app.api import build_api
    from billing_app.settings import get_settings

    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
    get_settings.cache_clear()
    with TestClient(build_api(), client=("127.0.0.1", 50001)) as client:
        yield client
