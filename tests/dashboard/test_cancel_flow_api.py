"""The cancellation flow's three outcomes through the REST API (paused, offer accepted, canceled), and
the payment history's CANCELLED entries as the seed's client reads them."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient

from billing_app.billing.checkout import checkout_status, start_checkout
from billing_app.db import session_scope
from billing_app.models import RetentionOffer
from tests.api.helpers import backend_app, bearer, err, ok, token_for
from tests.billing.helpers import period_id
from tests.dashboard.helpers import billing, dashboard


@pytest.fixture
def api(acme, stripe_env):
    """An org on Starter (monthly), bought through Checkout, and its admin's and member's tokens."""
    started = start_checkout(acme.admin, period_id("starter", "MONTHLY"))
    stripe_env.complete_checkout(started.session_id)
    checkout_status(acme.admin, started.session_id)
    with TestClient(backend_app()) as client:
        client.admin = bearer(token_for(acme.admin))
        client.member = bearer(token_for(acme.member))
        client.stripe_sub = stripe_env.client.v1.checkout.sessions.retrieve(started.session_id).subscription
        yield client


def _months_from_now(months: int) -> datetime:
    from billing_app.billing.retention import add_months

    return add_months(datetime.now(timezone.utc), months)


def test_paused_instead_of_canceled_then_resumed_early(api, stripe_env):
    err(api.post("/api/subscriptions/pause", headers=api.member, json={"months": 1}), 403, "FORBIDDEN")
    err(api.post("/api/subscriptions/pause", headers=api.admin, json={"months": 4}), 422, "VALIDATION_ERROR")
    err(api.post("/api/subscriptions/pause", headers=api.admin, json={"months": "2"}), 422, "VALIDATION_ERROR")
    body = ok(api.post("/api/subscriptions/pause", headers=api.admin, json={"months": 2}))
    sub = body["subscription"]
    resumes = datetime.fromisoformat(sub["pauseResumesAt"])
    assert sub["paused"] is True and sub["access"] is False and sub["status"] == "active"
    assert abs((resumes - _months_from_now(2)).total_seconds()) < 120
    at_stripe = stripe_env.client.v1.subscriptions.retrieve(api.stripe_sub)
    assert at_stripe.pause_collection.behavior == "void" and at_stripe.pause_collection.resumes_at == int(resumes.timestamp())
    assert at_stripe.cancel_at_period_end is False  # nothing canceled
    assert dashboard_paused_until(api) == resumes.strftime("%b %-d, %Y")
    body = err(api.post("/api/subscriptions/pause", headers=api.admin, json={"months": 1}), 409, "SUBSCRIPTION_PAUSED")
    assert resumes.strftime("%b %-d, %Y") in body["message"]
    body = ok(api.post("/api/subscriptions/resume", headers=api.admin))
    assert body["subscription"]["paused"] is False and body["subscription"]["access"] is True
    assert stripe_env.client.v1.subscriptions.retrieve(api.stripe_sub).pause_collection is None
    err(api.post("/api/subscriptions/resume", headers=api.admin), 409, "SUBSCRIPTION_NOT_PAUSED")


def dashboard_paused_until(api) -> str:
    from sqlmodel import select

    from billing_app.models import OrgSubscription
    from billing_app.billing.dashboard import dashboard_view

    with session_scope() as s:
        org_id = s.exec(select(OrgSubscription.org_id).where(OrgSubscription.stripe_id == api.stripe_sub)).one()
        return dashboard_view(s, org_id, admin=True).paused_until


def test_retention_offer_accepted_once_and_nothing_canceled(api, acme, stripe_env):
    err(api.get("/api/subscriptions/retention", headers=api.member), 403, "FORBIDDEN")
    offer = ok(api.get("/api/subscriptions/retention", headers=api.admin))["offer"]
    assert offer == {"couponId": "stay20_3m", "name": "20% off for 3 months", "description": "20% off for 3 months"}
    assert dashboard(acme).offer_description == "20% off for 3 months"
    body = ok(api.post("/api/subscriptions/retention/accept", headers=api.admin))
    assert body["offer"]["couponId"] == "stay20_3m" and body["subscription"]["cancelAtPeriodEnd"] is False
    at_stripe = stripe_env.client.v1.subscriptions.retrieve(api.stripe_sub, params={"expand": ["discounts"]})
    assert [d.source.coupon for d in at_stripe.discounts] == ["stay20_3m"] and at_stripe.status == "active"
    assert at_stripe.cancel_at_period_end is False
    view = dashboard(acme)
    assert view.discounts[0].startswith("20% off until ") and view.offer_description == ""
    assert "Discount −$1.80" in view.next_details
    assert ok(api.get("/api/subscriptions/retention", headers=api.admin))["offer"] is None
    err(api.post("/api/subscriptions/retention/accept", headers=api.admin), 409, "RETENTION_OFFER_USED")
    # Once per organization: after the discount's months are over it is not offered again.
    with session_scope() as s:
        assert s.get(RetentionOffer, acme.id).accepted_at is not None


def test_canceled_after_the_offer_declines_it_and_leaves_a_cancelled_entry(api, acme, stripe_env):
    body = ok(api.post("/api/subscriptions/cancel", headers=api.admin,
                       json={"atPeriodEnd": True, "feedback": "too_expensive", "reason": "Budget cuts"}))
    assert body["subscription"]["cancelAtPeriodEnd"] is True
    details = stripe_env.client.v1.subscriptions.retrieve(api.stripe_sub).cancellation_details
    assert (details.feedback, details.comment) == ("too_expensive", "Budget cuts")
    assert ok(api.get("/api/subscriptions/retention", headers=api.admin))["offer"] is None  # declined by confirming
    err(api.post("/api/subscriptions/retention/accept", headers=api.admin), 409, "RETENTION_OFFER_USED")
    err(api.post("/api/subscriptions/pause", headers=api.admin, json={"months": 1}), 409, "SUBSCRIPTION_CANCELING")
    end = datetime.fromisoformat(body["subscription"]["dateTo"])
    payments = ok(api.get("/api/subscriptions/payments", headers=api.admin, params={"status": "CANCELLED"}))["payments"]
    assert [(p["id"], p["status"], p["amount"]) for p in payments] == [(api.stripe_sub, "CANCELLED", 0)]
    assert payments[0]["description"] == f"Starter (monthly) — canceled at period end on {end.strftime('%b %-d, %Y')}"
    assert datetime.fromisoformat(payments[0]["created"]) <= datetime.now(timezone.utc)
    err(api.post("/api/subscriptions/cancel", headers=api.admin, json={"feedback": "bored"}), 422, "VALIDATION_ERROR")

    # Reactivated: Stripe no longer says canceled, nor does the history.
    ok(api.post("/api/subscriptions/reactivate", headers=api.admin))
    assert ok(api.get("/api/subscriptions/payments", headers=api.admin, params={"status": "CANCELLED"}))["payments"] == []

    # Canceled now.
    ok(api.post("/api/subscriptions/cancel", headers=api.admin, json={"atPeriodEnd": False}))
    payments = ok(api.get("/api/subscriptions/payments", headers=api.admin))["payments"]
    cancelled = [p for p in payments if p["status"] == "CANCELLED"]
    assert [p["description"] for p in cancelled] == ["Starter (monthly) — canceled now"]
    paid = [p for p in payments if p["status"] == "COMPLETED"]
    assert paid and paid[0]["subtotal"] == 900 and paid[0]["discount"] == 0 and paid[0]["tax"] == 0


def test_amounts_show_discounts_and_taxes(acme, stripe_env, monkeypatch):
    from billing_app.settings import get_settings

    monkeypatch.setenv("STRIPE_AUTOMATIC_TAX", "true")
    get_settings.cache_clear()
    started = start_checkout(acme.admin, period_id("starter", "MONTHLY"))
    stripe_env.complete_checkout(started.session_id, promotion_code="LAUNCH10",
                                 billing_address={"line1": "Unter den Linden 1", "city": "Berlin", "country": "DE"})
    checkout_status(acme.admin, started.session_id)
    with TestClient(backend_app()) as client:
        payments = ok(client.get("/api/subscriptions/payments", headers=bearer(token_for(acme.admin))))["payments"]
    assert [(p["amount"], p["subtotal"], p["discount"], p["tax"]) for p in payments] == [(964, 900, 90, 154)]
    view = dashboard(acme)
    assert view.next_amount == "$9.64" and "Tax $1.54" in view.next_details and "Discount −$0.90" in view.next_details


def test_an_offer_accepted_while_a_downgrade_waits_runs_on_after_the_switch(acme, stripe_env):
    """The cancellation flow reaches the offer while a downgrade waits (the schedule is released only
    when a cancellation is confirmed). Accepting adds the discount to the waiting phase too: Stripe
    keeps no discount a phase does not name, so the renewal on the new plan still has 20% off, the
    same discount running on (its months not restarted)."""
    from billing_app.billing.subscriptions import change_plan
    from tests.billing.helpers import advance, buy_on_clock, subscription

    clock, customer = buy_on_clock(acme, stripe_env, plan="business")
    change_plan(acme.admin, period_id("starter", "MONTHLY"), preview=False)
    client = stripe_env.client
    with session_scope() as s:
        sub = subscription(s, acme)
    assert sub.stripe_schedule_id and billing(acme).scheduled_change.startswith("Changes to Starter (monthly) on ")
    assert dashboard(acme).offer_description == "20% off for 3 months"  # the flow's offer step shows
    with TestClient(backend_app()) as api:
        admin = bearer(token_for(acme.admin))
        assert ok(api.get("/api/subscriptions/retention", headers=admin))["offer"]["couponId"] == "stay20_3m"
        body = ok(api.post("/api/subscriptions/retention/accept", headers=admin))
    assert body["subscription"]["cancelAtPeriodEnd"] is False
    [discount_id] = client.v1.subscriptions.retrieve(sub.stripe_id).discounts
    schedule = client.v1.subscription_schedules.retrieve(sub.stripe_schedule_id)
    # Both phases name it: the running one (as the subscription has it) and the downgrade's.
    assert [[d.discount for d in p.discounts] for p in schedule.phases] == [[discount_id], [discount_id]]
    assert billing(acme).scheduled_change.startswith("Changes to Starter (monthly) on ")  # still waiting

    advance(stripe_env, clock, int(sub.current_period_end.timestamp()) + 3600, customer)
    assert client.v1.subscriptions.retrieve(sub.stripe_id).discounts == [discount_id]  # the same discount
    renewal = client.v1.invoices.list(params={"subscription": sub.stripe_id, "limit": 1}).data[0]
    assert (renewal.subtotal, renewal.total) == (900, 720)  # Starter, 20% off


def test_a_second_click_finishes_naming_the_offer_on_the_waiting_phase(acme, stripe_env, monkeypatch):
    """The first click applies the coupon, then naming it on the waiting phase fails (Stripe down): 502.
    The re-sync now sees the coupon running (offer had), yet the waiting phase does not name it, so it
    would end at the switch: the second click finishes that step, and a third is refused as had."""
    from billing_app.billing import gateway, retention, schedules
    from billing_app.billing.subscriptions import change_plan
    from billing_app.errors import AppError, ErrorCode
    from tests.billing.helpers import advance, buy_on_clock, subscription

    clock, customer = buy_on_clock(acme, stripe_env, plan="business")
    change_plan(acme.admin, period_id("starter", "MONTHLY"), preview=False)
    client = stripe_env.client
    with session_scope() as s:
        sub = subscription(s, acme)
    real_add = schedules.add_discount

    def stripe_down_once(*args):
        monkeypatch.setattr(schedules, "add_discount", real_add)
        raise gateway.StripeFailure("An error occurred with our connection to Stripe.", status=500)

    monkeypatch.setattr(schedules, "add_discount", stripe_down_once)
    with pytest.raises(AppError) as first:
        retention.accept(acme.admin)
    assert first.value.code == ErrorCode.STRIPE_OFFER_FAILED
    [discount_id] = client.v1.subscriptions.retrieve(sub.stripe_id).discounts

    retention.accept(acme.admin)  # the second click
    schedule = client.v1.subscription_schedules.retrieve(sub.stripe_schedule_id)
    assert [[d.discount for d in p.discounts] for p in schedule.phases] == [[discount_id], [discount_id]]
    with pytest.raises(AppError) as third:
        retention.accept(acme.admin)
    assert third.value.code == ErrorCode.RETENTION_OFFER_USED

    advance(stripe_env, clock, int(sub.current_period_end.timestamp()) + 3600, customer)
    assert client.v1.subscriptions.retrieve(sub.stripe_id).discounts == [discount_id]
