"""Who hears about an org's billing: the billing email is the buying admin's, and stays theirs."""

from __future__ import annotations

import json

from sqlmodel import select

from billing_app.auth import accounts, members
from billing_app.billing.subscriptions import change_plan
from billing_app.db import session_scope
from billing_app.models import Notification, Role
from billing_app.notifications import outbox
from billing_app.notifications.kinds import Kind
from tests.billing.helpers import PASSWORD, buy, period_id


def _addressed(org_id: int, kind: Kind) -> list[str]:
    with session_scope() as s:
        rows = s.exec(select(Notification).where(Notification.org_id == org_id, Notification.kind == kind.value)).all()
        return [a for r in rows for a in json.loads(r.recipients)]


def test_an_admin_who_turned_plan_changes_off_does_not_get_them_as_the_buyer(org, stripe_env, mail_settings):
    buy(org, "starter", sandbox=stripe_env)  # the Stripe customer is created with the admin's email
    with session_scope() as s:
        outbox.set_preference(s, org.admin.user_id, org.id, Kind.PLAN_CHANGED, False)
    change_plan(org.admin, period_id("pro", "MONTHLY"), preview=False)
    with session_scope() as s:  # an always-sent kind still reaches them
        assert outbox.org_recipients(s, org.id, Kind.PAYMENT_FAILED, "Admin@Acme.example") == ["admin@acme.example"]
    assert "admin@acme.example" not in _addressed(org.id, Kind.PLAN_CHANGED)


def test_a_removed_buyer_gets_no_more_billing_mail_but_the_admins_do(org, stripe_env, mail_settings):
    buy(org, "starter", sandbox=stripe_env)  # bought by admin@acme.example
    members.change_role(org.admin, user_id=org.member.user_id, role=Role.ADMIN)
    with session_scope() as s:
        token = accounts.login(s, email=org.member.email, password=PASSWORD)
        accounts.switch_org(s, token, org.id)
    with session_scope() as s:
        new_admin = accounts.actor_for_session(s, token)
    members.remove_member(new_admin, org.admin.user_id)
    change_plan(new_admin, period_id("pro", "MONTHLY"), preview=False)
    sent = _addressed(org.id, Kind.PLAN_CHANGED)
    assert "member@acme.example" in sent
    assert "admin@acme.example" not in sent


def test_a_billing_email_that_is_nobodys_account_is_still_sent_to_once(org, mail_settings):
    with session_scope() as s:
        members_only = outbox.org_recipients(s, org.id, Kind.RECEIPT, "Accounting@Acme.example")
        twice = outbox.org_recipients(s, org.id, Kind.RECEIPT, "ADMIN@acme.example")
    assert members_only == ["accounting@acme.example", "admin@acme.example"]
    assert twice == ["admin@acme.example"]
