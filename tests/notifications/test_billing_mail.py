"""Billing emails end to end: the sandbox's real events, each delivered five times to the real
webhook route, the real worker and sync, the outbox, and a real SMTP server receiving the mail."""

from __future__ import annotations

from sqlmodel import select

from billing_app.billing.customers import customer_id_for
from billing_app.billing.subscriptions import cancel, change_plan, reactivate
from billing_app.billing.sync import sync_customer
from billing_app.db import session_scope
from billing_app.models import Notification
from billing_app.notifications import outbox
from billing_app.notifications.kinds import Kind
from tests.billing.helpers import buy, buy_on_clock, make_org, period_id, subscription
from tests.notifications.helpers import deliver

DAY = 86400


def test_receipt_failed_payment_and_cancellation_each_arrive_once(org, webhook_client, stripe_env, smtp, db):
    clock, customer = buy_on_clock(org, stripe_env)
    deliver(webhook_client, stripe_env, smtp)
    assert smtp.kinds() == ["receipt"]
    receipt = smtp.of_kind("receipt")[0]
    assert sorted(receipt.to) == ["admin@acme.example"]  # billing email and admin are one address here
    assert "$" in receipt.subject and "/pdf" in receipt.part("plain")

    failing = stripe_env.client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": customer.id})
    sub = subscription(db, org)
    stripe_env.client.v1.subscriptions.update(sub.stripe_id, params={"default_payment_method": failing.id})
    stripe_env.client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": int(sub.current_period_end.timestamp()) + 3600})
    deliver(webhook_client, stripe_env, smtp)
    assert smtp.kinds() == ["payment_failed", "receipt"]
    failed = smtp.of_kind("payment_failed")[0]
    assert "try again on" in failed.part("plain") and "Update payment method" in failed.part("html")

    cancel(org.admin, at_period_end=False)
    deliver(webhook_client, stripe_env, smtp)
    assert smtp.kinds() == ["payment_failed", "receipt", "subscription_canceled"]
    with session_scope() as s:
        states = set(s.exec(select(Notification.state)).all())
    assert states == {"sent"}


def test_trial_ending_and_scheduled_cancel_arrive_once(org, webhook_client, stripe_env, smtp, db):
    clock, customer = buy_on_clock(org, stripe_env, plan="pro")
    sub = subscription(db, org)
    assert sub.status == "trialing"
    stripe_env.client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": int(sub.trial_end.timestamp()) - 2 * DAY})
    deliver(webhook_client, stripe_env, smtp)
    assert smtp.kinds() == ["trial_ending"]
    assert "ends on" in smtp.of_kind("trial_ending")[0].subject

    cancel(org.admin)
    deliver(webhook_client, stripe_env, smtp)
    assert smtp.kinds() == ["cancel_scheduled", "trial_ending"]


def test_a_cancellation_made_again_in_the_same_period_is_confirmed_again(org, stripe_env, db):
    """Cancel, Reactivate, cancel: two cancellations, two emails; syncing the second again adds none."""
    buy(org, "starter", sandbox=stripe_env)
    cancel(org.admin)
    reactivate(org.admin)
    cancel(org.admin)
    sync_customer(customer_id_for(org.id))  # the cancellation's webhook, after the action's own sync
    db.expire_all()
    keys = db.exec(select(Notification.key).where(Notification.org_id == org.id, Notification.kind == Kind.CANCEL_SCHEDULED.value)).all()
    assert len(set(keys)) == len(keys) == 2, keys


def test_plan_change_confirmed_unless_the_admin_opted_out(org, webhook_client, stripe_env, smtp, db):
    clock, customer = buy_on_clock(org, stripe_env)
    stripe_env.client.v1.customers.update(customer.id, params={"email": "billing@acme.example"})
    with session_scope() as s:
        outbox.set_preference(s, org.admin.user_id, org.id, Kind.PLAN_CHANGED, False)
    change_plan(org.admin, period_id("pro", "MONTHLY"), preview=False)
    deliver(webhook_client, stripe_env, smtp)
    changed = smtp.of_kind("plan_changed")
    assert len(changed) == 1 and "Pro" in changed[0].subject
    assert changed[0].to == ["billing@acme.example"]  # the admin turned plan changes off
    # The upgrade's prorated invoice is paid now: its receipt goes to both (receipts are still on).
    receipts = [r for r in smtp.of_kind("receipt") if "billing@acme.example" in r.to]
    assert receipts
    cause = receipts[-1].key.rsplit(":", 1)[0]  # one message per recipient: the key ends with its digest
    assert sorted(a for r in smtp.of_kind("receipt") if r.key.rsplit(":", 1)[0] == cause for a in r.to) == [
        "admin@acme.example", "billing@acme.example"]


def test_members_never_get_billing_mail(stripe_env, webhook_client, smtp):
    org = make_org("Globex", "admin@globex.example", "member@globex.example")
    buy_on_clock(org, stripe_env)
    deliver(webhook_client, stripe_env, smtp, rounds=1)
    billing = [r for r in smtp.received if r.kind != "invitation"]
    assert billing and all("member@globex.example" not in r.to for r in billing)


def test_history_is_not_news(org, stripe_env, smtp, mail_settings):
    """A customer's old paid invoices, seen for the first time, send no receipts."""
    from billing_app.billing.sync import write
    from billing_app.billing.sync import _read
    from billing_app.billing import gateway

    clock, customer = buy_on_clock(org, stripe_env)
    snap = _read(gateway.stripe_client(), customer.id)
    for invoice in snap.invoices:
        invoice["id"] = "in_history_" + invoice["id"]
        invoice["status_transitions"]["paid_at"] -= 40 * DAY
    with session_scope() as s:
        write(s, org.id, snap, [])
    with session_scope() as s:
        keys = s.exec(select(Notification.key)).all()
    assert not [k for k in keys if "in_history_" in k]
