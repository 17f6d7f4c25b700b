"""Fixtures for the webhook tests: the real route on a real database, with two secrets configured.

The factories (signed events, rows, the sync double) are in tests/webhooks/helpers.py.
"""

from __future__ import annotations

import pytest

from tests.webhooks.helpers import OLD_SECRET, SECRET, Poster


@pytest.fixture
def webhook_secrets(database_url, monkeypatch):
    """Two webhook secrets configured (a rotation in progress) on a fresh database."""
    from billing_app.settings import get_settings

    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", f"{OLD_SECRET},{SECRET}")
    get_settings.cache_clear()
    yield [OLD_SECRET, SECRET]
    get_settings.cache_clear()


@pytest.fixture
def client(webhook_secrets):
    """The backend's real Starlette API app (the one Reflex mounts), driven in-process."""
    from starlette.testclient import TestClient

    from billing_app.api import build_api

    with TestClient(build_api(), client=("127.0.0.1", 50000)) as test_client:
        yield test_client


@pytest.fixture
def post(client) -> Poster:
    """post(event, secret=..., timestamp=..., signature=...) -> the route's response."""
    return Poster(client)
