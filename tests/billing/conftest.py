"""Billing tests run the real services through the official SDK against the offline sandbox."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from billing_app.auth import accounts
from billing_app.auth.accounts import Actor
from billing_app.db import session_scope


@dataclass
class Org:
    id: int
    admin: Actor
    member: Actor


def make_org(name: str, admin_email: str, member_email: str) -> Org:
    password = "a-long-password-1"
    with session_scope() as s:
        accounts.register(s, email=admin_email, password=password, name="Admin", org_name=name)
        accounts.register(s, email=member_email, password=password, name="Member", org_name=f"{name} (member's own)")
    with session_scope() as s:
        admin = accounts.actor_for_session(s, accounts.login(s, email=admin_email, password=password))
        accounts.add_member(s, admin, email=member_email)
        member_token = accounts.login(s, email=member_email, password=password)
        accounts.switch_org(s, member_token, admin.org_id)
    with session_scope() as s:
        member = accounts.actor_for_session(s, member_token)
    return Org(admin.org_id, admin, member)


@pytest.fixture
def stripe_env(sandbox, database_url, monkeypatch):
    """Settings pointing the app's gateway at the sandbox; the catalog synced into Stripe and the mirror."""
    from billing_app.billing import gateway, portal
    from billing_app.billing.catalog import sync_catalog
    from billing_app.settings import get_settings

    monkeypatch.setenv("STRIPE_SECRET_KEY", sandbox.api_key)
    monkeypatch.setenv("STRIPE_API_BASE", sandbox.base_url)
    monkeypatch.setenv("APP_URL", "http://127.0.0.1:3999")
    get_settings.cache_clear()
    gateway.reset_client()
    portal._config_cache.clear()
    with session_scope() as s:
        sync_catalog(s)
    yield sandbox
    gateway.reset_client()
    portal._config_cache.clear()
    get_settings.cache_clear()


@pytest.fixture
def org(stripe_env) -> Org:
    return make_org("Acme", "admin@acme.example", "member@acme.example")


def period_id(plan_key: str, period_type: str) -> int:
    from sqlmodel import select

    from billing_app.models import Plan, PlanPeriod

    with session_scope() as s:
        return s.exec(
            select(PlanPeriod.id).join(Plan, Plan.id == PlanPeriod.plan_id).where(Plan.key == plan_key, PlanPeriod.period_type == period_type)
        ).one()
