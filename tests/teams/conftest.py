"""Fixtures for the teams tests (members, invitations, seats, entitlements). Factories: helpers.py."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def fast_password_hashing(fast_password_hashing):
    """tests/conftest.py's cheap hashing, for every test here: they test no password rule."""


@pytest.fixture
def tokens(org):
    """Acme (admin, member, a super admin: 3 members) and Globex (admin, member), with a token each."""
    from tests.api.helpers import role_tokens

    return role_tokens(org)


@pytest.fixture
def backend(stripe_env, monkeypatch):
    """The backend's API routes under uvicorn with the webhook worker, receiving the sandbox's webhooks."""
    from tests.webhooks.helpers import served_backend

    with served_backend(stripe_env, monkeypatch) as url:
        yield url
