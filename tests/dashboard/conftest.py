"""Dashboard tests: the real services and views against the sandbox; some with the webhook route and
worker serving on 127.0.0.1 so that only webhooks change the mirror. Factories: helpers.py."""

from __future__ import annotations

import pytest

from tests.dashboard.helpers import new_org
from tests.webhooks.helpers import served_backend


@pytest.fixture(autouse=True)
def fast_password_hashing(fast_password_hashing):
    """tests/conftest.py's cheap hashing, for every test here: they test no password rule."""


@pytest.fixture
def acme(stripe_env):
    return new_org()


@pytest.fixture
def webhooks(stripe_env, monkeypatch):
    """The backend's API routes under uvicorn, with the webhook worker as a lifespan task (as served)."""
    with served_backend(stripe_env, monkeypatch, poll_seconds=0.2) as url:
        yield url
