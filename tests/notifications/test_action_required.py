"""A renewal that needs 3-D Secure: the email (once, after repeated deliveries), the dashboard's
link to the hosted invoice page, and recovery once the customer approves there."""

from __future__ import annotations

import httpx

from billing_app.billing.sync import sync_customer
from billing_app.billing.views import billing_view
from billing_app.db import session_scope
from billing_app.notifications.worker import MailWorker
from billing_app.webhooks.worker import Worker
from tests.billing.helpers import access, buy_on_clock, subscription
from tests.notifications.conftest import WEBHOOK_SECRET
from tests.notifications.helpers import redeliver_all


def test_renewal_needing_authentication(org, webhook_client, stripe_env, smtp, db):
    clock, customer = buy_on_clock(org, stripe_env)
    card = stripe_env.client.v1.payment_methods.attach("pm_card_authenticationRequired", params={"customer": customer.id})
    sub = subscription(db, org)
    stripe_env.client.v1.subscriptions.update(sub.stripe_id, params={"default_payment_method": card.id})
    stripe_env.client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": int(sub.current_period_end.timestamp()) + 3600})
    for _ in range(2):
        redeliver_all(webhook_client, stripe_env, WEBHOOK_SECRET, times=5)
        Worker(ingest_busy=None).drain()
    MailWorker(smtp_url=smtp.url).drain()

    assert smtp.kinds() == ["payment_action_required", "receipt"]  # not "payment failed" as well
    mail = smtp.of_kind("payment_action_required")[0]
    with session_scope() as s:
        url = billing_view(s, org.id).confirm_payment_url
    assert url.startswith(stripe_env.base_url + "/invoices/in_")
    assert url in mail.part("plain") and "confirm a payment" in mail.subject

    assert httpx.post(f"{url}/authenticate", data={"authentication": "approve"}).status_code == 303
    sync_customer(customer.id)
    with session_scope() as s:
        assert billing_view(s, org.id).confirm_payment_url == ""
    assert subscription(db, org).status == "active" and access(org).access
