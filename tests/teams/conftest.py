"""Fixtures for the teams tests (members, invitations, seats, entitlements). Factories: helpers.py."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import backend_app


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch):
    """Cheap argon2 parameters: these tests make many accounts and test no password rule."""
    from argon2 import PasswordHasher

    from billing_app.auth import passwords

    monkeypatch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def client(database_url):
    with TestClient(backend_app(), raise_server_exceptions=True) as c:
        yield c


@pytest.fixture
def roomy_free_tier(monkeypatch):
    """The free tier with room for 10 members, for tests about invitations rather than caps."""
    from billing_app.billing import entitlements
    from billing_app.billing.catalog import free_tier

    roomy = free_tier().model_copy(update={"limits": {**free_tier().limits, "seats": 10}})
    monkeypatch.setattr(entitlements, "free_tier", lambda: roomy)
    return roomy
