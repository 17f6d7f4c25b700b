"""REST API tests: the real FastAPI app, mounted at /api as the backend mounts it, in-process,
on the real database, with the real SDK against the offline sandbox."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select
from starlette.applications import Starlette

from billing_app.auth import accounts, api_tokens
from billing_app.db import session_scope
from billing_app.models import Membership, Role
from tests.billing.helpers import Org, make_org, period_id  # noqa: F401 - re-exported until tests/api/helpers.py


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch):
    """Cheap argon2 parameters: these tests make many accounts and test no password rule."""
    from argon2 import PasswordHasher

    from billing_app.auth import passwords

    monkeypatch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def backend_app() -> Starlette:
    """The REST app as the backend serves it: a fresh app mounted at /api."""
    from billing_app.api.rest import create_app, mount

    return Starlette(routes=[mount(create_app())])


@pytest.fixture
def client(database_url):
    with TestClient(backend_app(), raise_server_exceptions=True) as c:
        yield c


def token_for(actor) -> str:
    with session_scope() as s:
        return api_tokens.create_token(s, actor, name="test").token


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def set_role(org_id: int, user_id: int, role: Role) -> None:
    with session_scope() as s:
        row = s.exec(select(Membership).where(Membership.org_id == org_id, Membership.user_id == user_id)).one()
        row.role = role.value


@dataclass
class Tokens:
    """Bearer headers for each role in `org`, plus an admin of another org."""

    org: Org
    other: Org
    admin: dict
    member: dict
    super_admin: dict
    other_admin: dict


@pytest.fixture
def tokens(org) -> Tokens:  # noqa: F811
    other = make_org("Globex", "admin@globex.example", "member@globex.example")
    password = "a-long-password-1"
    with session_scope() as s:
        accounts.register(s, email="boss@acme.example", password=password, name="Boss", org_name="Boss's own")
    with session_scope() as s:
        boss = accounts.actor_for_session(s, accounts.login(s, email="boss@acme.example", password=password))
        accounts.add_member(s, org.admin, email="boss@acme.example")
    set_role(org.id, boss.user_id, Role.SUPER_ADMIN)
    with session_scope() as s:
        token = accounts.login(s, email="boss@acme.example", password=password)
        super_admin = accounts.switch_org(s, token, org.id)
    assert super_admin.role == Role.SUPER_ADMIN
    return Tokens(
        org, other,
        admin=bearer(token_for(org.admin)),
        member=bearer(token_for(org.member)),
        super_admin=bearer(token_for(super_admin)),
        other_admin=bearer(token_for(other.admin)),
    )
