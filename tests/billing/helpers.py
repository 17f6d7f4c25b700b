"""Factories for billing tests (and the API and webhook tests that build on them).

Billing tests run the real services through the official SDK against the offline sandbox;
the `stripe_env` and `org` fixtures (tests/conftest.py) set that up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from sqlmodel import select

from billing_app.auth import accounts, invitations
from billing_app.auth.accounts import Actor
from billing_app.billing import gateway
from billing_app.billing.checkout import checkout_status, start_checkout
from billing_app.billing.entitlements import entitlement
from billing_app.billing.sync import sync_customer
from billing_app.db import session_scope
from billing_app.errors import AppError
from billing_app.models import BillingCustomer, OrgSubscription, Plan, PlanPeriod

PASSWORD = "a-long-password-1"


@dataclass
class Org:
    id: int
    admin: Actor
    member: Actor


def token_of(invite_url: str) -> str:
    """The invitation token at the end of an invite link (/invite/<token>)."""
    return invite_url.rsplit("/", 1)[1]


def make_org(name: str, admin_email: str, member_email: str) -> Org:
    """An organization with an admin and a member (invited and accepted), both logged in."""
    with session_scope() as s:
        accounts.register(s, email=admin_email, password=PASSWORD, name="Admin", org_name=name)
        accounts.register(s, email=member_email, password=PASSWORD, name="Member", org_name=f"{name} (member's own)")
    with session_scope() as s:
        admin = accounts.actor_for_session(s, accounts.login(s, email=admin_email, password=PASSWORD))
        member_token = accounts.login(s, email=member_email, password=PASSWORD)
    invited = invitations.invite(admin, email=member_email)
    with session_scope() as s:
        invitee = accounts.actor_for_session(s, member_token)
    invitations.accept(invitee, token_of(invited.url))
    with session_scope() as s:
        accounts.switch_org(s, member_token, admin.org_id)
    with session_scope() as s:
        member = accounts.actor_for_session(s, member_token)
    return Org(admin.org_id, admin, member)


def period_id(plan_key: str, period_type: str) -> int:
    with session_scope() as s:
        return s.exec(
            select(PlanPeriod.id).join(Plan, Plan.id == PlanPeriod.plan_id).where(Plan.key == plan_key, PlanPeriod.period_type == period_type)
        ).one()


def expect(code, fn, *args, **kwargs) -> AppError:
    """Call fn and assert it refuses with this error code."""
    with pytest.raises(AppError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value.message
    return info.value


def buy(org: Org, plan="starter", period="MONTHLY", sandbox=None, card="pm_card_visa"):
    """Checkout as the org's admin, pay on the sandbox, and confirm (which syncs the mirror)."""
    started = start_checkout(org.admin, period_id(plan, period))
    sandbox.complete_checkout(started.session_id, payment_method=card)
    return started, checkout_status(org.admin, started.session_id)


def subscription(db, org: Org) -> OrgSubscription:
    """The org's one subscription row, fresh from the database."""
    db.expire_all()
    return db.exec(select(OrgSubscription).where(OrgSubscription.org_id == org.id)).one()


def access(org: Org, now=None):
    with session_scope() as s:
        return entitlement(s, org.id, now=now)


def buy_on_clock(org: Org, stripe_env, plan="starter", **checkout):
    """Put the org's Stripe customer on a test clock, then subscribe through Checkout (`checkout`: what
    the test helper is given, e.g. payment_method and authentication)."""
    client = stripe_env.client
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": int(time.time())})
    customer = client.v1.customers.create(params={"email": "admin@acme.example", "test_clock": clock.id, "metadata": {"org_id": str(org.id)}})
    with session_scope() as s:
        s.add(BillingCustomer(org_id=org.id, stripe_customer_id=customer.id))
    started = start_checkout(org.admin, period_id(plan, "MONTHLY"))
    stripe_env.complete_checkout(started.session_id, **checkout)
    checkout_status(org.admin, started.session_id)
    return clock, customer


def advance(stripe_env, clock, to: int, customer) -> None:
    """Move the test clock, then sync the customer as the webhook would."""
    stripe_env.client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": to})
    sync_customer(customer.id)


def free_lifetime_behind_the_apps_back(stripe_env, customer_id: str, price_id: str):
    """A lifetime price checked out with a 100%-off code in a session the app did not make (no payment)."""
    client = stripe_env.client
    coupon = client.v1.coupons.create(params={"percent_off": 100, "duration": "once"})
    client.v1.promotion_codes.create(params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "BEHIND100"})
    session = client.v1.checkout.sessions.create(params={
        "mode": "payment", "customer": customer_id, "allow_promotion_codes": True,
        "line_items": [{"price": price_id, "quantity": 1}], "success_url": "http://127.0.0.1:3999/ok"})
    done = stripe_env.complete_checkout(session.id, promotion_code="BEHIND100")
    assert (done.payment_status, done.payment_intent) == ("no_payment_required", None)
    return done


def still_clearing(monkeypatch, session_id: str) -> None:
    """Stripe between checkout.session.completed and .async_payment_succeeded (SEPA, ACH: days): the
    session is complete and unpaid, its payment intent processing. (The sandbox settles a delayed
    payment at once: its session is shown unpaid here.)"""
    real_call, real_list = gateway.call, gateway.list_all

    def unpaid(obj):
        if isinstance(obj, dict) and obj.get("id") == session_id:
            obj["payment_status"] = "unpaid"
        return obj

    monkeypatch.setattr(gateway, "call", lambda fn, *a, **k: unpaid(real_call(fn, *a, **k)))
    monkeypatch.setattr(gateway, "list_all", lambda fn, p: [unpaid(o) for o in real_list(fn, p)])


def refunds_of_customer(stripe_env, customer_id):
    """Refunds of this customer's payments (the sandbox is shared by the whole run)."""
    charges = stripe_env.client.v1.charges.list(params={"customer": customer_id, "limit": 100}).data
    intents = {c.payment_intent for c in charges}
    return [r for r in stripe_env.client.v1.refunds.list(params={"limit": 100}).data if r.payment_intent in intents]


def wait_for_the_refund_to_fail(stripe_env, customer_id):
    """The sandbox fails a refund to the refund-failing card a moment after it was made (refund_failure_seconds)."""
    deadline = time.monotonic() + 10
    while [r.status for r in refunds_of_customer(stripe_env, customer_id)] != ["failed"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r.status for r in refunds_of_customer(stripe_env, customer_id)] == ["failed"]
