"""The event types that re-sync a customer are ones Stripe sends, at the API version the SDK pins.

The list is the installed Stripe SDK's own: the `type` field of its Event resource, a
Literal of every event type at the SDK's pinned API version. A misspelt or retired type
in RESYNC_EVENT_TYPES would never arrive, and the change it stands for would go unseen.
"""

from __future__ import annotations

import time
import typing

from sqlmodel import select
from stripe._api_version import _ApiVersion
from stripe._event import Event

from billing_app.billing.subscriptions import change_plan
from billing_app.db import session_scope
from billing_app.models import OrgSubscription, Payment, PlanPeriod, WebhookEvent
from billing_app.sandbox import API_VERSION
from billing_app.webhooks import eventlog
from billing_app.webhooks.handlers import RESYNC_EVENT_TYPES
from billing_app.webhooks.worker import Worker
from tests.billing.helpers import buy, period_id, subscription
from tests.dashboard.helpers import dashboard
from tests.ops.helpers import customer_of_org
from tests.webhooks.helpers import CountingSync, event, rows, served_backend


def stripe_event_types() -> frozenset[str]:
    return frozenset(typing.get_args(Event.__annotations__["type"]))


def test_the_sdk_list_is_the_one_of_the_api_version_we_speak():
    assert _ApiVersion.CURRENT == API_VERSION == "2026-10-28.endive"
    types = stripe_event_types()
    assert len(types) > 100 and {"invoice.paid", "customer.subscription.updated"} <= types


def test_every_resync_type_is_a_stripe_event_type():
    unknown = sorted(RESYNC_EVENT_TYPES - stripe_event_types())
    assert not unknown, f"not Stripe event types at API version {_ApiVersion.CURRENT}: {unknown}"


def _eventually(predicate, timeout: float = 20.0) -> bool:
    """Whether `predicate()` becomes true within `timeout` (deliveries and the worker run on their own)."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.1)
    return predicate()


def test_a_scheduled_change_edited_at_stripe_reaches_the_mirror(org, stripe_env, db, monkeypatch):
    """An edit of the schedule alone (Dashboard or API) sends only subscription_schedule.updated."""
    buy(org, plan="business", sandbox=stripe_env)
    with served_backend(stripe_env, monkeypatch):
        change_plan(org.admin, period_id("starter", "MONTHLY"), preview=False)
        sub = subscription(db, org)
        assert sub.scheduled_period_id == period_id("starter", "MONTHLY")
        # The change's own events delivered and synced first: only the edit's events can tell the mirror.
        assert _eventually(lambda: not stripe_env.deliveries()["pending"] and not eventlog.counts().get("pending"))

        schedule = stripe_env.client.v1.subscription_schedules.retrieve(sub.stripe_schedule_id)
        current = schedule.phases[0]
        with session_scope() as session:
            pro_price = session.get(PlanPeriod, period_id("pro", "MONTHLY")).stripe_price_id
        stripe_env.client.v1.subscription_schedules.update(schedule.id, params={"end_behavior": "release", "phases": [
            {"items": [{"price": current["items"][0]["price"], "quantity": 1}],
             "start_date": current["start_date"], "end_date": current["end_date"]},
            {"items": [{"price": pro_price, "quantity": 1}], "proration_behavior": "none"},
        ]})

        def mirror_shows_pro() -> bool:
            return subscription(db, org).scheduled_period_id == period_id("pro", "MONTHLY")

        assert _eventually(mirror_shows_pro), "the billing page would still show the change to Starter"
    assert "subscription_schedule.updated" in {r.type for r in rows()}


def _invoice_payment(org_id: int) -> Payment:
    with session_scope() as session:
        return session.exec(select(Payment).where(Payment.org_id == org_id, Payment.stripe_id.startswith("in_"))).one()


def test_a_refund_that_failed_at_stripe_is_no_refund_in_the_mirror(org, stripe_env, monkeypatch):
    """The refund starts `succeeded` (charge.refunded) and fails later: only refund.failed / refund.updated
    say so, and the payment history must show the payment paid again, not refunded."""
    stripe_env.configure(refund_failure_seconds=3)  # long enough for charge.refunded's sync to land first
    buy(org, sandbox=stripe_env, card="pm_card_refundFail")
    invoice_id = _invoice_payment(org.id).stripe_id
    intent = stripe_env.client.v1.invoice_payments.list(params={"invoice": invoice_id}).data[0].payment.payment_intent
    with served_backend(stripe_env, monkeypatch, poll_seconds=0.2):
        stripe_env.client.v1.refunds.create(params={"payment_intent": intent})
        assert _eventually(lambda: _invoice_payment(org.id).status == "REFUNDED"), "charge.refunded did not reach the mirror"
        paid_again = _eventually(lambda: (p := _invoice_payment(org.id)).status == "COMPLETED" and p.amount_refunded == 0)
        assert paid_again, "the payment history still shows a refund that failed"
    with session_scope() as session:
        failed = session.exec(select(WebhookEvent).where(WebhookEvent.type == "refund.failed")).one()
    assert (failed.customer_id, failed.state) == (customer_of_org(org.id), "processed")


def test_dispute_events_resync_the_customer_of_the_disputed_charge(org, stripe_env, monkeypatch):
    """A dispute names no customer (it has `charge` and `payment_intent`): the worker must find the
    charge's customer and re-read it, or a chargeback would never reach the mirror."""
    buy(org, plan="business", period="ALL_TIME", sandbox=stripe_env, card="pm_card_createDispute")
    dispute = stripe_env.client.v1.disputes.list().data[0]
    sync = CountingSync()
    with served_backend(stripe_env, monkeypatch, sync=sync, poll_seconds=0.2):
        stripe_env.client.v1.disputes.close(dispute.id)
        assert _eventually(lambda: [r.state for r in rows() if r.type == "charge.dispute.closed"] == ["processed"])
    assert customer_of_org(org.id) in sync.calls, "the dispute's customer was never re-read"
    # Filed under the customer once known, so the operator console lists them with the org's events.
    assert {r.customer_id for r in rows() if r.type.startswith("charge.dispute.")} == {customer_of_org(org.id)}


def test_a_dispute_of_a_bank_debit_resyncs_the_charges_customer(monkeypatch):
    """A SEPA or ACH debit's charge is `py_...`, not `ch_...`, and is disputed too (a SEPA refund
    request is one): its customer is read from Stripe like a card charge's, never taken for a customer id."""
    from types import SimpleNamespace

    from billing_app.webhooks import eventlog, handlers, worker

    read = []
    monkeypatch.setattr(worker.gateway, "call", lambda method, charge_id: read.append(charge_id) or {"id": charge_id, "customer": "cus_REAL"})
    monkeypatch.setattr(worker.gateway, "stripe_client",
                        lambda: SimpleNamespace(v1=SimpleNamespace(charges=SimpleNamespace(retrieve=None))))
    monkeypatch.setattr(eventlog, "file_under", lambda key, customer: 0)
    key = handlers.customer_of({"id": "dp_1", "object": "dispute", "charge": "py_3QxSepaDebit", "payment_intent": "pi_1"})
    assert worker.customer_to_sync(key) == "cus_REAL" and read == ["py_3QxSepaDebit"]
    assert worker.customer_to_sync("cus_REAL") == "cus_REAL" and read == ["py_3QxSepaDebit"]  # a customer: no lookup


def _subscriptions_card(org, stripe_env) -> str:
    """The org's subscription's default payment method (Checkout made it so)."""
    with session_scope() as session:
        sub_id = session.exec(select(OrgSubscription.stripe_id).where(OrgSubscription.org_id == org.id)).one()
    return stripe_env.client.v1.subscriptions.retrieve(sub_id).default_payment_method


def test_a_card_detached_at_stripe_leaves_the_dashboard(org, stripe_env, monkeypatch):
    """The subscription's card (Checkout made it its default), removed at Stripe: only payment_method.detached
    tells, and its object no longer names the customer (previous_attributes does)."""
    buy(org, sandbox=stripe_env)
    assert dashboard(org).card == "Visa •••• 4242"
    card = _subscriptions_card(org, stripe_env)
    with served_backend(stripe_env, monkeypatch, poll_seconds=0.2):
        stripe_env.client.v1.payment_methods.detach(card)
        assert _eventually(lambda: dashboard(org).card == ""), "the dashboard still shows the detached card"
    with session_scope() as session:
        detached = session.exec(select(WebhookEvent).where(WebhookEvent.type == "payment_method.detached")).one()
    assert (detached.customer_id, detached.state) == (customer_of_org(org.id), "processed")


def test_a_card_updated_at_stripe_shows_its_new_expiry(org, stripe_env, monkeypatch):
    """A new expiry (the card network's account updater, or the API) or billing details edited at Stripe:
    only payment_method.updated tells, and the dashboard must not keep warning about the old date."""
    buy(org, sandbox=stripe_env)
    assert dashboard(org).card_expiry == "Expires 12/2034"
    card = _subscriptions_card(org, stripe_env)
    with served_backend(stripe_env, monkeypatch, poll_seconds=0.2):
        stripe_env.client.v1.payment_methods.update(card, params={"card": {"exp_month": 3, "exp_year": 2037}})
        assert _eventually(lambda: dashboard(org).card_expiry == "Expires 03/2037"), "the dashboard still shows the old expiry"
    with session_scope() as session:
        updated = session.exec(select(WebhookEvent).where(WebhookEvent.type == "payment_method.updated")).one()
    assert (updated.customer_id, updated.state) == (customer_of_org(org.id), "processed")


def test_a_pending_upgrade_applied_or_lapsed_resyncs_the_customer(post):
    """Stripe's own events for a pending update (an upgrade awaiting 3-D Secure) name its customer."""
    for type_, customer in (("customer.subscription.pending_update_applied", "cus_applied"),
                            ("customer.subscription.pending_update_expired", "cus_lapsed")):
        assert post(event(type_, customer)).status_code == 200
    sync = CountingSync()
    Worker(sync).drain()
    assert sorted(sync.calls) == ["cus_applied", "cus_lapsed"]
