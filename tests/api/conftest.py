"""REST API tests: the real FastAPI app, mounted at /api as the backend mounts it, in-process,
on the real database, with the real SDK against the offline sandbox. Factories: helpers.py."""

from __future__ import annotations

import pytest

from billing_app.auth import accounts
from billing_app.db import session_scope
from billing_app.models import Role
from tests.api.helpers import Tokens, add_membership, bearer, token_for
from tests.billing.helpers import PASSWORD, make_org


@pytest.fixture(autouse=True)
def fast_password_hashing(fast_password_hashing):
    """tests/conftest.py's cheap hashing, for every test here: they test no password rule."""


@pytest.fixture
def tokens(org) -> Tokens:
    other = make_org("Globex", "admin@globex.example", "member@globex.example")
    with session_scope() as s:
        accounts.register(s, email="boss@acme.example", password=PASSWORD, name="Boss", org_name="Boss's own")
    with session_scope() as s:
        boss = accounts.actor_for_session(s, accounts.login(s, email="boss@acme.example", password=PASSWORD))
    # A third member, past the free tier's seats: set up directly (tests/teams tests the seat rules).
    add_membership(org.id, boss.user_id, Role.SUPER_ADMIN)
    with session_scope() as s:
        token = accounts.login(s, email="boss@acme.example", password=PASSWORD)
        super_admin = accounts.switch_org(s, token, org.id)
    assert super_admin.role == Role.SUPER_ADMIN
    return Tokens(
        org, other,
        admin=bearer(token_for(org.admin)),
        member=bearer(token_for(org.member)),
        super_admin=bearer(token_for(super_admin)),
        other_admin=bearer(token_for(other.admin)),
    )
