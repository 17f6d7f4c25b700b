"""Factories for the teams tests: people invited into an org, a per-seat subscription, Stripe's quantity.

Built on tests/billing/helpers.py (make_org, buy, period_id, expect); the fixtures are in conftest.py.
"""

from __future__ import annotations

from sqlmodel import select

from billing_app.auth import accounts, invitations
from billing_app.auth.accounts import Actor
from billing_app.billing.checkout import checkout_status, start_checkout
from billing_app.billing.customers import customer_id_for
from billing_app.db import session_scope
from billing_app.models import Invitation, Membership, OrgSubscription
from tests.billing.helpers import PASSWORD, Org, period_id, token_of

__all__ = ["PASSWORD", "Org", "buy_team", "invitee", "join", "quantity_at_stripe", "stripe_subscription", "token_of"]


def invitee(email: str, name: str = "Invitee") -> Actor:
    """A registered, logged-in user (in an org of their own), as who opens an invitation."""
    with session_scope() as s:
        accounts.register(s, email=email, password=PASSWORD, name=name, org_name=f"{name}'s own")
    with session_scope() as s:
        return accounts.actor_for_session(s, accounts.login(s, email=email, password=PASSWORD))


def join(org: Org, email: str, role: str = "member") -> Actor:
    """Invite `email` into the org as its admin, register it and accept: the new member."""
    invited = invitations.invite(org.admin, email=email, role=role)
    person = invitee(email)
    invitations.accept(person, token_of(invited.url))
    return person


def buy_team(org: Org, sandbox, seats: int | None = None, period: str = "MONTHLY", card: str = "pm_card_visa", **complete):
    """Buy the per-seat Team plan through Checkout (optionally adjusting the seats there), and confirm."""
    started = start_checkout(org.admin, period_id("team", period), seats)
    sandbox.complete_checkout(started.session_id, payment_method=card, **complete)
    checkout_status(org.admin, started.session_id)
    return started


def stripe_subscription(org: Org, sandbox):
    with session_scope() as s:
        row = s.exec(select(OrgSubscription).where(OrgSubscription.org_id == org.id, OrgSubscription.one_off == False)).one()  # noqa: E712
    return sandbox.client.v1.subscriptions.retrieve(row.stripe_id)


def quantity_at_stripe(org: Org, sandbox) -> int:
    return stripe_subscription(org, sandbox).items.data[0].quantity


def mirror_quantity(org: Org) -> int:
    with session_scope() as s:
        return s.exec(select(OrgSubscription.quantity).where(OrgSubscription.org_id == org.id)).one()


def member_ids(org_id: int) -> list[int]:
    with session_scope() as s:
        return sorted(s.exec(select(Membership.user_id).where(Membership.org_id == org_id)).all())


def invitation_row(invitation_id: int) -> Invitation:
    with session_scope() as s:
        return s.get(Invitation, invitation_id)


def customer(org: Org) -> str:
    return customer_id_for(org.id)
