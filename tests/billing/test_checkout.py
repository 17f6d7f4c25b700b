"""start_checkout and checkout_status through the SDK against the sandbox."""

import threading

import httpx
import pytest
from sqlmodel import select

from billing_app.billing import idempotency
from billing_app.billing.checkout import checkout_status, start_checkout
from billing_app.billing.entitlements import entitlement
from billing_app.db import session_scope
from billing_app.errors import ErrorCode
from billing_app.models import BillingCustomer, Organization, OrgSubscription, Payment, PlanPeriod
from billing_app.ops import orgs
from billing_app.pages.ops_orgs import org_line
from tests.billing.helpers import buy, expect, make_org, period_id


def test_subscription_checkout_end_to_end(org, stripe_env, db):
    started = start_checkout(org.admin, period_id("starter", "MONTHLY"))
    checkout = stripe_env.client.v1.checkout.sessions.retrieve(started.session_id)
    assert started.url == checkout.url and httpx.get(started.url).status_code == 200
    assert checkout.mode == "subscription" and checkout.client_reference_id == str(org.id)
    assert checkout.metadata["plan_key"] == "starter"
    assert checkout.success_url == "http://127.0.0.1:3999/billing/confirm?session_id={CHECKOUT_SESSION_ID}"
    assert checkout.cancel_url == "http://127.0.0.1:3999/pricing"
    assert checkout_status(org.admin, started.session_id).status == "open"

    stripe_env.complete_checkout(started.session_id)
    status = checkout_status(org.member, started.session_id)  # any member may read it
    assert (status.status, status.payment_status) == ("complete", "paid")
    # The mirror is already up to date, without waiting for a webhook.
    sub = db.exec(select(OrgSubscription).where(OrgSubscription.org_id == org.id)).one()
    assert (sub.stripe_id, sub.status, sub.auto_renew) == (status.subscription_id, "active", True)
    assert sub.current_period_end > sub.current_period_start
    payment = db.exec(select(Payment).where(Payment.org_id == org.id)).one()
    assert (payment.status, payment.amount, payment.currency) == ("COMPLETED", 900, "usd")
    assert payment.pdf_url and httpx.get(payment.pdf_url).content.startswith(b"%PDF")
    with session_scope() as s:
        ent = entitlement(s, org.id)
    assert (ent.access, ent.reason, ent.plan_key, ent.limits["seats"]) == (True, "active", "starter", 3)


@pytest.mark.parametrize("failing", ["POST /v1/customers", "POST /v1/customers after"])
def test_a_500_making_the_customer_does_not_lock_the_org_out_for_a_day(org, stripe_env, db, failing):
    """Stripe keeps a 500 under its idempotency key for 24 h: the next click goes under the key's next
    number. When the 500 came after Stripe made a customer, that one stays unused."""
    stripe_env.configure(fail_next=[failing])
    expect(ErrorCode.STRIPE_UNAVAILABLE, start_checkout, org.admin, period_id("starter", "MONTHLY"))

    started, status = buy(org, sandbox=stripe_env)

    assert status.payment_status == "paid"
    customer = db.exec(select(BillingCustomer).where(BillingCustomer.org_id == org.id)).one().stripe_customer_id
    assert stripe_env.client.v1.checkout.sessions.retrieve(started.session_id).customer == customer


@pytest.mark.parametrize("renamed", [False, True])
def test_a_customer_made_just_before_a_crash(org, stripe_env, db, monkeypatch, renamed):
    """The process died between Stripe making the customer and our row. The retry's same key finds
    that customer (no second one); but once the org was renamed meanwhile, Stripe refuses the key
    with other parameters (idempotency_error, kept for 24 h): that click fails, the next goes under
    the key's next number, and that customer is the org's."""
    real_call_once = idempotency.call_once

    def dies_after_stripe_answered(fn, *args, **kwargs):
        made.append(real_call_once(fn, *args, **kwargs)["id"])
        raise SystemExit(9)

    made = []
    monkeypatch.setattr(idempotency, "call_once", dies_after_stripe_answered)
    with pytest.raises(SystemExit):
        start_checkout(org.admin, period_id("starter", "MONTHLY"))
    monkeypatch.setattr(idempotency, "call_once", real_call_once)
    if renamed:
        db.get(Organization, org.id).name = "Renamed Inc"
        db.commit()
        expect(ErrorCode.STRIPE_UNAVAILABLE, start_checkout, org.admin, period_id("starter", "MONTHLY"))

    started = start_checkout(org.admin, period_id("starter", "MONTHLY"))

    customer = stripe_env.client.v1.checkout.sessions.retrieve(started.session_id).customer
    assert customer == db.exec(select(BillingCustomer).where(BillingCustomer.org_id == org.id)).one().stripe_customer_id
    assert (customer == made[0]) is not renamed
    assert stripe_env.client.v1.customers.retrieve(customer).name == db.get(Organization, org.id).name


def test_a_second_purchase_is_refused_while_subscribed(org, stripe_env):
    buy(org, sandbox=stripe_env)
    error = expect(ErrorCode.SUBSCRIPTION_ALREADY_ACTIVE, start_checkout, org.admin, period_id("pro", "MONTHLY"))
    assert "already has a subscription" in error.message


def test_trial_once_per_org(org, stripe_env, db):
    _, status = buy(org, plan="pro", sandbox=stripe_env)
    assert status.payment_status == "no_payment_required"
    sub = db.exec(select(OrgSubscription).where(OrgSubscription.org_id == org.id)).one()
    assert sub.status == "trialing" and sub.trial_end is not None
    with session_scope() as s:
        assert entitlement(s, org.id).on_trial


def test_lifetime_purchase(org, stripe_env, db):
    started, status = buy(org, plan="business", period="ALL_TIME", sandbox=stripe_env)
    assert (status.mode, status.status, status.payment_status) == ("payment", "complete", "paid")
    sub = db.exec(select(OrgSubscription).where(OrgSubscription.org_id == org.id)).one()
    assert sub.one_off and sub.status == "active" and not sub.auto_renew
    payment = db.exec(select(Payment).where(Payment.org_id == org.id)).one()
    assert (payment.status, payment.amount, payment.description) == ("COMPLETED", 249900, "Business (lifetime)")
    assert payment.receipt_url
    with session_scope() as s:
        assert entitlement(s, org.id).lifetime
        # The operator console names the plan as the payment does.
        assert org_line(orgs.org_detail(s, org.id).summary).plan == "Business (lifetime)"
    expect(ErrorCode.SUBSCRIPTION_ALREADY_ACTIVE, start_checkout, org.admin, period_id("starter", "MONTHLY"))


def test_refunded_lifetime_loses_access_and_the_payment_reads_refunded(org, stripe_env, db):
    started, _ = buy(org, plan="business", period="ALL_TIME", sandbox=stripe_env)
    intent = stripe_env.client.v1.checkout.sessions.retrieve(started.session_id).payment_intent
    stripe_env.client.v1.refunds.create(params={"payment_intent": intent})
    customer = db.exec(select(BillingCustomer.stripe_customer_id).where(BillingCustomer.org_id == org.id)).one()
    from billing_app.billing.sync import sync_customer

    report = sync_customer(customer)
    assert any("REFUNDED" in line for line in report.changes)
    db.expire_all()
    assert db.exec(select(Payment.status).where(Payment.org_id == org.id)).one() == "REFUNDED"
    with session_scope() as s:
        assert not entitlement(s, org.id).access


@pytest.mark.parametrize("forged", ["99999999999999999999", "\u0667"])  # too large to bind; an Arabic-Indic 7
def test_a_lifetime_purchase_with_a_forged_period_id_still_syncs(org, stripe_env, db, forged):
    # Only the secret key writes a checkout's metadata; even so, the sync must not fail (it would
    # retry that customer forever) nor read "٧" as period 7: the price paid decides the plan.
    started, _ = buy(org, plan="business", period="ALL_TIME", sandbox=stripe_env)
    stripe_env.client.v1.checkout.sessions.update(started.session_id, params={"metadata": {"period_id": forged}})
    customer = db.exec(select(BillingCustomer.stripe_customer_id).where(BillingCustomer.org_id == org.id)).one()
    from billing_app.billing.sync import sync_customer

    sync_customer(customer)
    db.expire_all()
    sub = db.exec(select(OrgSubscription).where(OrgSubscription.org_id == org.id)).one()
    assert (sub.one_off, sub.status, sub.plan_period_id) == (True, "active", period_id("business", "ALL_TIME"))


def test_declined_card_leaves_the_checkout_open_and_nothing_bought(org, stripe_env, db):
    started = start_checkout(org.admin, period_id("starter", "MONTHLY"))
    with pytest.raises(Exception):
        stripe_env.complete_checkout(started.session_id, payment_method="pm_card_chargeDeclined")
    assert checkout_status(org.admin, started.session_id).status == "open"
    assert db.exec(select(OrgSubscription).where(OrgSubscription.org_id == org.id)).all() == []


def test_expired_checkout_is_recorded_as_expired(org, stripe_env, db):
    started = start_checkout(org.admin, period_id("starter", "YEARLY"))
    stripe_env.client.v1.checkout.sessions.expire(started.session_id)
    assert checkout_status(org.admin, started.session_id).status == "expired"
    payment = db.exec(select(Payment).where(Payment.org_id == org.id)).one()
    assert (payment.status, payment.amount, payment.stripe_id) == ("EXPIRED", 9000, started.session_id)


def test_another_orgs_or_a_malformed_session_reveals_nothing(org, stripe_env):
    other = make_org("Globex", "admin@globex.example", "member@globex.example")
    started = start_checkout(other.admin, period_id("starter", "MONTHLY"))
    for session_id in (started.session_id, "cs_test_doesnotexist", "not-a-session", "cs_" + "x" * 300, ""):
        error = expect(ErrorCode.INVALID_SESSION, checkout_status, org.admin, session_id)
        assert error.message == "We could not find this checkout."


def test_members_cannot_start_a_checkout(org, stripe_env):
    expect(ErrorCode.FORBIDDEN, start_checkout, org.member, period_id("starter", "MONTHLY"))


@pytest.mark.parametrize("plan", ["classic", "nope"])
def test_unknown_or_legacy_period_is_not_for_sale(org, stripe_env, plan):
    pid = period_id("classic", "MONTHLY") if plan == "classic" else 999_999
    expect(ErrorCode.SUBSCRIPTION_PERIOD_NOT_FOUND, start_checkout, org.admin, pid)


def test_price_that_drifted_from_the_catalog_is_refused(org, stripe_env, db):
    period = db.get(PlanPeriod, period_id("starter", "MONTHLY"))
    period.amount = 1234
    db.add(period)
    db.commit()
    expect(ErrorCode.STRIPE_PRICE_MISMATCH, start_checkout, org.admin, period.id)


def test_two_racing_first_purchases_make_one_stripe_customer(org, stripe_env, db):
    results, errors = [], []

    def first_purchase():
        try:
            started = start_checkout(org.admin, period_id("starter", "MONTHLY"))
            results.append(stripe_env.client.v1.checkout.sessions.retrieve(started.session_id).customer)
        except Exception as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=first_purchase) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(results)) == 1
    customers = stripe_env.client.v1.customers.list(params={"limit": 100}).data
    assert [c.id for c in customers if c.metadata.to_dict().get("org_id") == str(org.id)] == results[:1]
    assert len(db.exec(select(BillingCustomer).where(BillingCustomer.org_id == org.id)).all()) == 1


def test_a_new_checkout_expires_the_orgs_older_open_one(org, stripe_env):
    first = start_checkout(org.admin, period_id("starter", "MONTHLY"))
    second = start_checkout(org.admin, period_id("pro", "MONTHLY"))
    assert stripe_env.client.v1.checkout.sessions.retrieve(first.session_id).status == "expired"
    assert stripe_env.client.v1.checkout.sessions.retrieve(second.session_id).status == "open"
    with pytest.raises(Exception):
        stripe_env.complete_checkout(first.session_id)  # the stale tab cannot buy a second subscription
