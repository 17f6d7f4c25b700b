"""Fixtures for the teams tests (members, invitations, seats, entitlements). Factories: helpers.py."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def fast_password_hashing(fast_password_hashing):
    """tests/conftest.py's cheap hashing, for every test here: they test no password rule."""


@pytest.fixture
def tokens(org):
    """Acme (admin, member, a super admin: 3 members) and Globex (admin, member), with a token each."""
    from billing_app.auth import accounts
    from billing_app.db import session_scope
    from billing_app.models import Role
    from tests.api.helpers import Tokens, add_membership, bearer, token_for
    from tests.billing.helpers import PASSWORD, make_org

    other = make_org("Globex", "admin@globex.example", "member@globex.example")
    with session_scope() as s:
        accounts.register(s, email="boss@acme.example", password=PASSWORD, name="Boss", org_name="Boss's own")
    with session_scope() as s:
        boss = accounts.actor_for_session(s, accounts.login(s, email="boss@acme.example", password=PASSWORD))
    add_membership(org.id, boss.user_id, Role.SUPER_ADMIN)
    with session_scope() as s:
        super_admin = accounts.switch_org(s, accounts.login(s, email="boss@acme.example", password=PASSWORD), org.id)
    return Tokens(org, other, admin=bearer(token_for(org.admin)), member=bearer(token_for(org.member)),
                  super_admin=bearer(token_for(super_admin)), other_admin=bearer(token_for(other.admin)))


@pytest.fixture
def backend(stripe_env, monkeypatch):
    """The backend's API routes under uvicorn with the webhook worker, receiving the sandbox's webhooks."""
    from tests.webhooks.helpers import served_backend

    with served_backend(stripe_env, monkeypatch) as url:
        yield url
