"""Cancel, reactivate, plan changes, the portal, and test-clock lifecycles, against the sandbox."""

from datetime import UTC, datetime, timezone

import httpx
import pytest
from sqlmodel import select

from billing_app.billing.checkout import checkout_status, start_checkout
from billing_app.billing.dashboard import dashboard_view
from billing_app.billing.portal import portal_url
from billing_app.billing.subscriptions import cancel, change_plan, reactivate
from billing_app.billing.sync import sync_customer
from billing_app.billing.views import billing_view
from billing_app.db import session_scope
from billing_app.errors import ErrorCode
from billing_app.formatting import format_date
from billing_app.models import Payment
from tests.billing.helpers import (
    access,
    advance,
    buy,
    buy_on_clock,
    expect,
    make_org,
    period_id,
    subscription,
)

DAY = 86_400


def test_cancel_at_period_end_then_reactivate(org, stripe_env, db):
    buy(org, sandbox=stripe_env)
    cancel(org.admin, reason="too expensive")
    sub = subscription(db, org)
    assert sub.cancel_at_period_end and sub.status == "active" and not sub.auto_renew
    stripe_sub = stripe_env.client.v1.subscriptions.retrieve(sub.stripe_id)
    assert stripe_sub.cancel_at_period_end and stripe_sub.cancellation_details.comment == "too expensive"
    assert access(org).reason == "cancels_at_period_end" and access(org).access
    expect(ErrorCode.SUBSCRIPTION_ALREADY_CANCELED, cancel, org.admin)

    reactivate(org.admin)
    sub = subscription(db, org)
    assert not sub.cancel_at_period_end and sub.auto_renew
    expect(ErrorCode.SUBSCRIPTION_NOT_CANCELING, reactivate, org.admin)


def test_cancel_on_a_chosen_date_is_shown_reactivated_and_ends_then(org, stripe_env, db):
    """Stripe's Dashboard 'cancel on a custom date' (cancel_at=<time>, cancel_at_period_end false)."""
    clock, customer = buy_on_clock(org, stripe_env)
    sub = subscription(db, org)
    at = int(sub.current_period_end.timestamp()) - 10 * DAY
    stripe_env.client.v1.subscriptions.update(sub.stripe_id, params={"cancel_at": at})
    sync_customer(customer.id)  # customer.subscription.updated
    with session_scope() as s:
        view, extra = billing_view(s, org.id), dashboard_view(s, org.id, admin=True)
    ends = format_date(datetime.fromtimestamp(at, tz=UTC))
    assert (view.auto_renew, view.can_reactivate, view.can_cancel) == ("No", True, False)
    assert (view.status, view.renewal_label, view.renewal_date) == (f"Cancels on {ends}", "Access until", ends)
    assert not extra.can_pause and not extra.offer_name  # no pause or retention offer for a canceling one

    reactivate(org.admin)
    assert stripe_env.client.v1.subscriptions.retrieve(sub.stripe_id).cancel_at is None
    with session_scope() as s:
        assert billing_view(s, org.id).auto_renew == "Yes"

    stripe_env.client.v1.subscriptions.update(sub.stripe_id, params={"cancel_at": at})
    advance(stripe_env, clock, at + 3600, customer)
    sub = subscription(db, org)
    assert sub.status == "canceled" and sub.ended_at == datetime.fromtimestamp(at, tz=UTC)


def test_a_subscription_canceling_on_a_chosen_date_announces_no_next_invoice(org, stripe_env, db):
    """It ends before its period does, so the dashboard has no next invoice to show (as for a cancel at the period end)."""
    buy(org, sandbox=stripe_env)
    sub = subscription(db, org)
    with session_scope() as s:
        assert dashboard_view(s, org.id, admin=True).next_amount  # renewing: the next invoice is shown
    at = int(sub.current_period_end.timestamp()) - 10 * DAY
    stripe_env.client.v1.subscriptions.update(sub.stripe_id, params={"cancel_at": at})
    sync_customer(stripe_env.client.v1.subscriptions.retrieve(sub.stripe_id).customer)
    with session_scope() as s:
        view = dashboard_view(s, org.id, admin=True)
    assert (view.next_amount, view.next_date) == ("", "")


def test_cancel_now_ends_it_and_it_cannot_be_canceled_again(org, stripe_env, db):
    buy(org, sandbox=stripe_env)
    cancel(org.admin, at_period_end=False)
    assert subscription(db, org).status == "canceled"
    error = expect(ErrorCode.SUBSCRIPTION_ALREADY_CANCELED, cancel, org.admin)
    assert "already ended" in error.message
    expect(ErrorCode.SUBSCRIPTION_ALREADY_CANCELED, reactivate, org.admin)


def test_members_cannot_change_anything(org, stripe_env):
    buy(org, sandbox=stripe_env)
    for action in (lambda: cancel(org.member), lambda: reactivate(org.member), lambda: portal_url(org.member),
                   lambda: change_plan(org.member, period_id("pro", "MONTHLY"), preview=True)):
        expect(ErrorCode.FORBIDDEN, action)


def test_nothing_to_cancel_without_a_subscription(org, stripe_env):
    expect(ErrorCode.SUBSCRIPTION_NOT_FOUND, cancel, org.admin)
    error = expect(ErrorCode.NO_BILLING_ACCOUNT, portal_url, org.admin)
    assert error.message == "No active subscription found. Please subscribe to a plan first."


def test_lifetime_cannot_be_canceled_or_changed(org, stripe_env):
    buy(org, plan="business", period="ALL_TIME", sandbox=stripe_env)
    expect(ErrorCode.LIFETIME_NOT_CHANGEABLE, cancel, org.admin)
    expect(ErrorCode.LIFETIME_NOT_CHANGEABLE, change_plan, org.admin, period_id("pro", "MONTHLY"), preview=True)


def test_upgrade_previews_the_prorated_amount_then_applies_now(org, stripe_env, db):
    buy(org, sandbox=stripe_env)
    preview = change_plan(org.admin, period_id("business", "MONTHLY"), preview=True)
    assert preview.upgrade and not preview.applied
    assert 0 < preview.amount_due_now <= 9900 - 900
    change_plan(org.admin, period_id("business", "MONTHLY"), preview=False)
    assert access(org).plan_key == "business"
    paid = db.exec(select(Payment).where(Payment.org_id == org.id, Payment.status == "COMPLETED")).all()
    assert sorted(p.amount for p in paid) == sorted([900, preview.amount_due_now])
    expect(ErrorCode.SAME_PLAN, change_plan, org.admin, period_id("business", "MONTHLY"), preview=True)


def test_plan_change_refuses_lifetime_and_legacy_targets(org, stripe_env):
    buy(org, sandbox=stripe_env)
    expect(ErrorCode.VALIDATION_ERROR, change_plan, org.admin, period_id("business", "ALL_TIME"), preview=True)
    expect(ErrorCode.SUBSCRIPTION_PERIOD_NOT_FOUND, change_plan, org.admin, period_id("classic", "MONTHLY"), preview=True)


def test_portal_session_and_its_configuration_is_made_once(org, stripe_env):
    buy(org, sandbox=stripe_env)
    url = portal_url(org.admin)
    assert httpx.get(url).status_code == 200
    for flow in ("payment_method_update", "subscription_cancel", "subscription_update"):
        assert portal_url(org.admin, flow=flow).startswith(stripe_env.base_url)
    configs = stripe_env.client.v1.billing_portal.configurations.list().data
    assert len(configs) == 1
    config = configs[0]
    assert config.metadata["audience"] == "current"
    offered = {price for product in config.features.subscription_update.products for price in product.prices}
    with session_scope() as s:
        from billing_app.models import PlanPeriod

        legacy_price = s.get(PlanPeriod, period_id("classic", "MONTHLY")).stripe_price_id
        pro_price = s.get(PlanPeriod, period_id("pro", "MONTHLY")).stripe_price_id
    assert pro_price in offered and legacy_price not in offered
    expect(ErrorCode.VALIDATION_ERROR, portal_url, org.admin, flow="delete_everything")


# --- test clocks: time passes at Stripe ---------------------------------------------------------


def test_renewal_bills_the_next_period(org, stripe_env, db):
    clock, customer = buy_on_clock(org, stripe_env)
    first_end = subscription(db, org).current_period_end
    advance(stripe_env, clock, int(first_end.timestamp()) + DAY, customer)
    sub = subscription(db, org)
    assert sub.status == "active" and sub.current_period_start.timestamp() == pytest.approx(first_end.timestamp(), abs=1)
    assert [p.status for p in db.exec(select(Payment).where(Payment.org_id == org.id))] == ["COMPLETED", "COMPLETED"]


def test_failed_renewal_goes_past_due_then_unpaid(org, stripe_env, db):
    stripe_env.configure(after_final_failure="unpaid")
    clock, customer = buy_on_clock(org, stripe_env)
    failing = stripe_env.client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": customer.id})
    sub = subscription(db, org)
    stripe_env.client.v1.subscriptions.update(sub.stripe_id, params={"default_payment_method": failing.id})
    renew_at = int(sub.current_period_end.timestamp())

    advance(stripe_env, clock, renew_at + 3600, customer)
    assert subscription(db, org).status == "past_due"
    failed = db.exec(select(Payment).where(Payment.org_id == org.id, Payment.status == "FAILED")).all()
    assert len(failed) == 1
    ent = access(org)
    assert ent.past_due and ent.access and ent.reason == "past_due_grace"

    advance(stripe_env, clock, renew_at + 20 * DAY, customer)
    assert subscription(db, org).status == "unpaid"
    assert not access(org).access


def test_cancel_at_period_end_ends_at_the_period_end(org, stripe_env, db):
    clock, customer = buy_on_clock(org, stripe_env)
    cancel(org.admin)
    end = int(subscription(db, org).current_period_end.timestamp())
    advance(stripe_env, clock, end - 3600, customer)
    assert subscription(db, org).status == "active"
    advance(stripe_env, clock, end + 3600, customer)
    sub = subscription(db, org)
    assert sub.status == "canceled" and sub.ended_at is not None
    # Judged at the clock's time, which is past the period end.
    at_clock = datetime.fromtimestamp(end + 3600, tz=timezone.utc)
    assert not access(org, at_clock).access and access(org, at_clock).reason == "canceled"


def test_trial_ends_and_the_first_payment_is_taken(org, stripe_env, db):
    clock, customer = buy_on_clock(org, stripe_env, plan="pro")
    sub = subscription(db, org)
    assert sub.status == "trialing"
    advance(stripe_env, clock, int(sub.trial_end.timestamp()) + 3600, customer)
    assert subscription(db, org).status == "active"
    assert 2900 in [p.amount for p in db.exec(select(Payment).where(Payment.status == "COMPLETED"))]


def test_stripe_unreachable_gives_readable_errors_and_changes_nothing(org, stripe_env, db, monkeypatch):
    from billing_app.billing import gateway
    from billing_app.settings import get_settings

    started, _ = buy(org, sandbox=stripe_env)
    newcomer = make_org("Newcomer", "admin@new.example", "member@new.example")
    monkeypatch.setenv("STRIPE_API_BASE", "http://127.0.0.1:9")  # nothing listens there
    get_settings.cache_clear()
    gateway.reset_client()
    before = subscription(db, org).cancel_at_period_end
    expect(ErrorCode.STRIPE_CANCELLATION_FAILED, cancel, org.admin)
    expect(ErrorCode.STRIPE_UNAVAILABLE, change_plan, org.admin, period_id("pro", "MONTHLY"), preview=True)
    expect(ErrorCode.STRIPE_PORTAL_FAILED, portal_url, org.admin)
    expect(ErrorCode.STRIPE_UNAVAILABLE, checkout_status, org.admin, started.session_id)
    expect(ErrorCode.STRIPE_UNAVAILABLE, start_checkout, newcomer.admin, period_id("starter", "MONTHLY"))
    assert subscription(db, org).cancel_at_period_end == before


def test_an_org_on_a_legacy_plan_switches_only_among_legacy_prices_in_the_portal(org, stripe_env, db):
    from billing_app.billing.customers import ensure_customer
    from billing_app.models import PlanPeriod

    customer = ensure_customer(org.id, "admin@acme.example")
    with session_scope() as s:
        classic = s.get(PlanPeriod, period_id("classic", "MONTHLY")).stripe_price_id
        starter = s.get(PlanPeriod, period_id("starter", "MONTHLY")).stripe_price_id
    # An org that bought Classic before it became legacy.
    stripe_env.client.v1.subscriptions.create(params={"customer": customer, "items": [{"price": classic}], "default_payment_method": "pm_card_visa"})
    sync_customer(customer)
    portal_url(org.admin)
    configs = {c.metadata["audience"]: c for c in stripe_env.client.v1.billing_portal.configurations.list().data}
    offered = {p for product in configs["legacy"].features.subscription_update.products for p in product.prices}
    assert classic in offered and starter not in offered


def test_an_upgrade_with_a_declined_card_changes_nothing(org, stripe_env, db):
    buy(org, sandbox=stripe_env)
    sub = subscription(db, org)
    customer = stripe_env.client.v1.subscriptions.retrieve(sub.stripe_id).customer
    failing = stripe_env.client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": customer})
    stripe_env.client.v1.subscriptions.update(sub.stripe_id, params={"default_payment_method": failing.id})
    error = expect(ErrorCode.STRIPE_PLAN_CHANGE_FAILED, change_plan, org.admin, period_id("business", "MONTHLY"), preview=False)
    assert "declined" in error.message
    at_stripe = stripe_env.client.v1.subscriptions.retrieve(sub.stripe_id)
    assert at_stripe.status == "active" and at_stripe["items"].data[0].price.id == sub.stripe_price_id
    assert access(org).plan_key == "starter" and subscription(db, org).status == "active"


def test_an_upgrade_drops_a_pending_downgrade(org, stripe_env, db):
    buy_on_clock(org, stripe_env, plan="pro")
    change_plan(org.admin, period_id("starter", "MONTHLY"), preview=False)
    assert subscription(db, org).stripe_schedule_id
    change_plan(org.admin, period_id("business", "MONTHLY"), preview=False)
    sub = subscription(db, org)
    assert sub.stripe_schedule_id is None and sub.scheduled_period_id is None
    assert access(org).plan_key == "business"
