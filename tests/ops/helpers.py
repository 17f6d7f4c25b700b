"""Factories for the operator console tests."""

from __future__ import annotations

from sqlmodel import select

from billing_app.auth import accounts
from billing_app.db import session_scope
from billing_app.models import BillingCustomer, Membership, OrgSubscription, Payment, Role, User
from billing_app.ops import access
from tests.billing.helpers import PASSWORD


def make_operator(email: str = "ops@saas.example", org_name: str = "Operators' own") -> accounts.Actor:
    """A registered user (admin of their own org), granted operator the way the command line does."""
    with session_scope() as s:
        accounts.register(s, email=email, password=PASSWORD, name="Ops", org_name=org_name)
    access.set_operator(email, True)
    return actor_of(email)


def actor_of(email: str) -> accounts.Actor:
    with session_scope() as s:
        return accounts.actor_for_session(s, accounts.login(s, email=email, password=PASSWORD))


def session_token(email: str) -> str:
    with session_scope() as s:
        return accounts.login(s, email=email, password=PASSWORD)


def mirror_of(org_id: int) -> dict:
    """The org's mirror rows as comparable values (no ids or write times)."""
    skip = {"id", "updated_at"}
    with session_scope() as s:
        subs = s.exec(select(OrgSubscription).where(OrgSubscription.org_id == org_id).order_by(OrgSubscription.stripe_id)).all()
        pays = s.exec(select(Payment).where(Payment.org_id == org_id).order_by(Payment.stripe_id)).all()
        return {
            "subscriptions": [{k: v for k, v in r.model_dump().items() if k not in skip} for r in subs],
            "payments": [{k: v for k, v in r.model_dump().items() if k not in skip} for r in pays],
        }


def customer_of_org(org_id: int) -> str:
    with session_scope() as s:
        return s.exec(select(BillingCustomer.stripe_customer_id).where(BillingCustomer.org_id == org_id)).one()


def user_id(email: str) -> int:
    with session_scope() as s:
        return s.exec(select(User.id).where(User.email == email)).one()


def role_in(org_id: int, email: str) -> Role:
    with session_scope() as s:
        return Role(s.exec(select(Membership.role).join(User, User.id == Membership.user_id)
                           .where(Membership.org_id == org_id, User.email == email)).one())
