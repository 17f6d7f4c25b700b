"""A second purchase that got past Checkout (made behind the app's back) is undone by the next sync."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlmodel import select

from billing_app.billing import duplicates, gateway
from billing_app.billing.checkout import start_checkout
from billing_app.billing.customers import customer_id_for
from billing_app.billing.portal import portal_url
from billing_app.billing.subscriptions import cancel
from billing_app.billing.sync import (
    DUPLICATE_EVENT_TYPE,
    DUPLICATE_REFUND_FAILED_EVENT_TYPE,
    SESSION_EXPAND,
    sync_customer,
)
from billing_app.billing.views import billing_view
from billing_app.db import session_scope
from billing_app.models import OrgSubscription, Payment, RetentionOffer, WebhookEvent
from billing_app.ops import orgs
from tests.api.helpers import bearer, token_for
from tests.billing.helpers import (
    access,
    buy,
    free_lifetime_behind_the_apps_back,
    period_id,
    refunds_of_customer,
    wait_for_the_refund_to_fail,
)


def buy_behind_the_apps_back(stripe_env, customer_id, price_id, mode="subscription", card="pm_card_visa"):
    """What a dashboard user or another app could do: a session for the same customer, paid."""
    session = stripe_env.client.v1.checkout.sessions.create(params={
        "mode": mode, "customer": customer_id, "line_items": [{"price": price_id, "quantity": 1}],
        "success_url": "http://127.0.0.1:3999/ok",
    })
    stripe_env.complete_checkout(session.id, card)
    return stripe_env.client.v1.checkout.sessions.retrieve(session.id)


def price_of(db, plan, period):
    from billing_app.models import PlanPeriod

    return db.get(PlanPeriod, period_id(plan, period)).stripe_price_id


def paid_invoice_of_subscription(stripe_env, customer_id, sub_id):
    """The subscription's first paid invoice (found by the invoice's parent)."""
    invoices = stripe_env.client.v1.invoices.list(params={"customer": customer_id, "limit": 100}).data
    return next(i for i in invoices if i.parent.subscription_details.subscription == sub_id and i.status == "paid")


def paid_intent_of_subscription(stripe_env, customer_id, sub_id):
    """The payment intent that paid the subscription's first invoice."""
    invoice = paid_invoice_of_subscription(stripe_env, customer_id, sub_id)
    payments = stripe_env.client.v1.invoice_payments.list(params={"invoice": invoice.id}).data
    return payments[0].payment.payment_intent


def test_a_second_subscription_is_canceled_and_refunded_and_the_first_kept(org, stripe_env, db):
    _, status = buy(org, "starter", "MONTHLY", sandbox=stripe_env)
    customer = customer_id_for(org.id)
    extra = buy_behind_the_apps_back(stripe_env, customer, price_of(db, "business", "MONTHLY"))

    report = sync_customer(customer)

    assert stripe_env.client.v1.subscriptions.retrieve(extra.subscription).status == "canceled"
    assert stripe_env.client.v1.subscriptions.retrieve(status.subscription_id).status == "active"
    intent = paid_intent_of_subscription(stripe_env, customer, extra.subscription)
    refunds = refunds_of_customer(stripe_env, customer)
    # Exactly one refund, of the extra subscription's payment (the kept one is untouched).
    assert [(r.payment_intent, r.reason) for r in refunds] == [(intent, "duplicate")] and refunds[0].amount > 0
    rows = {r.stripe_id: r.status for r in db.exec(select(OrgSubscription).where(OrgSubscription.org_id == org.id))}
    assert rows == {status.subscription_id: "active", extra.subscription: "canceled"}
    logged = db.exec(select(WebhookEvent).where(WebhookEvent.type == DUPLICATE_EVENT_TYPE)).one()
    assert extra.subscription in logged.payload and logged.state == "processed"
    assert any("canceled and refunded" in change for change in report.changes)


def test_an_unpaid_second_subscription_leaves_the_paid_one_deciding_access(org, stripe_env, db, client):
    """Made beside the paid one at Stripe (its Dashboard, its API) with its first payment not through, it
    is `incomplete`: not a plan held, so the guard leaves it to Stripe to expire (in 23 h), and until then
    the paid subscription decides access, the page and the API (the newest live row did, so the org lost
    access and was shown the unpaid plan)."""
    buy(org, "starter", "MONTHLY", sandbox=stripe_env)
    customer = customer_id_for(org.id)
    time.sleep(1.1)  # Stripe's times are whole seconds: the unpaid one is the newer
    unpaid = stripe_env.client.v1.subscriptions.create(params={
        "customer": customer, "items": [{"price": price_of(db, "pro", "MONTHLY")}], "payment_behavior": "default_incomplete"})
    assert unpaid.status == "incomplete"

    sync_customer(customer)

    assert stripe_env.client.v1.subscriptions.retrieve(unpaid.id).status == "incomplete"  # left to Stripe
    ent = access(org)
    assert (ent.access, ent.plan_key, ent.status) == (True, "starter", "active")
    with session_scope() as s:
        assert billing_view(s, org.id).plan_name.startswith("Starter")
    mine = client.get("/api/subscriptions/my", headers=bearer(token_for(org.admin))).json()["subscription"]
    assert (mine["planKey"], mine["status"]) == ("starter", "active")
    with session_scope() as s:  # the operator's list of organizations decides it the same way
        listed = orgs.list_orgs(s, orgs.OrgFilter.parse("", "", "-created")).rows
    assert [(r.plan, r.status) for r in listed if r.id == org.id] == [("Starter", "active")]


def test_undoing_a_second_subscription_does_not_decline_the_retention_offer(org, stripe_env, db):
    """Our cancel of the extra purchase is no customer's decision (Stripe still says 'cancellation_requested')."""
    buy(org, "starter", "MONTHLY", sandbox=stripe_env)
    portal_url(org.admin, "subscription_cancel")  # the retention offer shown in the portal's cancel flow
    customer = customer_id_for(org.id)
    extra = buy_behind_the_apps_back(stripe_env, customer, price_of(db, "business", "MONTHLY"))
    sync_customer(customer)
    assert stripe_env.client.v1.subscriptions.retrieve(extra.subscription).cancellation_details.reason == "cancellation_requested"
    db.expire_all()
    assert db.get(RetentionOffer, org.id).declined_at is None


def test_a_subscription_next_to_a_lifetime_purchase_is_undone(org, stripe_env, db):
    buy(org, "business", "ALL_TIME", sandbox=stripe_env)
    customer = customer_id_for(org.id)
    extra = buy_behind_the_apps_back(stripe_env, customer, price_of(db, "pro", "YEARLY"))
    sync_customer(customer)
    assert stripe_env.client.v1.subscriptions.retrieve(extra.subscription).status == "canceled"


def test_a_subscription_next_to_a_free_lifetime_purchase_is_undone(org, stripe_env, db):
    """A lifetime plan bought with a 100%-off code (no payment intent) is a plan held like a paid one."""
    coupon = stripe_env.client.v1.coupons.create(params={"percent_off": 100, "duration": "once"})
    stripe_env.client.v1.promotion_codes.create(params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "GIFT100"})
    started = start_checkout(org.admin, period_id("business", "ALL_TIME"))
    customer = stripe_env.complete_checkout(started.session_id, promotion_code="GIFT100").customer
    sync_customer(customer)
    extra = buy_behind_the_apps_back(stripe_env, customer, price_of(db, "pro", "YEARLY"))
    sync_customer(customer)
    assert stripe_env.client.v1.subscriptions.retrieve(extra.subscription).status == "canceled"
    rows = {r.stripe_id: r.status for r in db.exec(select(OrgSubscription).where(OrgSubscription.org_id == org.id))}
    assert rows == {started.session_id: "active", extra.subscription: "canceled"}


def test_a_free_lifetime_beside_a_subscription_is_undone_and_the_subscription_stays_manageable(org, stripe_env, db):
    """The org never keeps paying for a plan it cannot see: the free extra is granted nothing, once."""
    _, status = buy(org, "starter", "MONTHLY", sandbox=stripe_env)  # ours: kept
    customer = customer_id_for(org.id)
    free = free_lifetime_behind_the_apps_back(stripe_env, customer, price_of(db, "business", "ALL_TIME"))

    sync_customer(customer)  # checkout.session.completed

    rows = {r.stripe_id: r.status for r in db.exec(select(OrgSubscription).where(OrgSubscription.org_id == org.id))}
    assert rows == {status.subscription_id: "active", free.id: "canceled"}
    assert db.exec(select(Payment.status).where(Payment.stripe_id == free.id)).one() == "CANCELLED"
    logged = db.exec(select(WebhookEvent).where(WebhookEvent.type == DUPLICATE_EVENT_TYPE)).one()
    assert free.id in logged.payload and status.subscription_id in logged.payload
    assert refunds_of_customer(stripe_env, customer) == []  # the kept subscription's payment stands
    with session_scope() as s:
        assert billing_view(s, org.id).plan_name == "Starter"
    assert sync_customer(customer).changes == []  # undone once: nothing found again
    cancel(org.admin)  # the admin can stop the subscription they pay for
    assert stripe_env.client.v1.subscriptions.retrieve(status.subscription_id).cancel_at_period_end


def test_the_undo_of_a_free_extra_lifetime_claims_no_refund(org, stripe_env, db):
    """What the sync says it did to a free extra is true: nothing was charged, so nothing was refunded."""
    buy(org, "starter", "MONTHLY", sandbox=stripe_env)
    customer = customer_id_for(org.id)
    free = free_lifetime_behind_the_apps_back(stripe_env, customer, price_of(db, "business", "ALL_TIME"))

    said = [c for c in sync_customer(customer).changes if free.id in c and "duplicate" in c]

    assert said and not any("refunded" in c for c in said), said
    assert any("undone (free: nothing to refund)" in c for c in said), said


def test_two_syncs_racing_refund_once(org, stripe_env, db):
    buy(org, "starter", "MONTHLY", sandbox=stripe_env)
    customer = customer_id_for(org.id)
    extra = buy_behind_the_apps_back(stripe_env, customer, price_of(db, "business", "MONTHLY"))
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: sync_customer(customer), range(2)))
    intent = paid_intent_of_subscription(stripe_env, customer, extra.subscription)
    assert [r.payment_intent for r in refunds_of_customer(stripe_env, customer)] == [intent]


def test_one_purchase_is_left_alone(org, stripe_env, db):
    _, status = buy(org, "pro", "MONTHLY", sandbox=stripe_env)
    sync_customer(customer_id_for(org.id))
    assert stripe_env.client.v1.subscriptions.retrieve(status.subscription_id).status == "trialing"
    assert db.exec(select(WebhookEvent).where(WebhookEvent.type == DUPLICATE_EVENT_TYPE)).first() is None


def fail_once(monkeypatch, service: str, method: str, failure: Exception):
    """Stripe fails the first `service.method` call (e.g. RefundService.create) with `failure`; the rest go through."""
    real_call = gateway.call
    failed = []

    def flaky(fn, *args, **kwargs):
        if not failed and fn.__name__ == method and type(getattr(fn, "__self__", None)).__name__ == service:
            failed.append(fn)
            raise failure
        return real_call(fn, *args, **kwargs)

    monkeypatch.setattr(gateway, "call", flaky)
    return failed


def test_a_refund_that_fails_is_finished_by_the_retried_sync(org, stripe_env, db, monkeypatch):
    """Stripe answers 500 to the refund of the extra subscription: the event's retry refunds it (and cancels it)."""
    buy(org, "starter", "MONTHLY", sandbox=stripe_env)
    customer = customer_id_for(org.id)
    extra = buy_behind_the_apps_back(stripe_env, customer, price_of(db, "business", "MONTHLY"))
    failed = fail_once(monkeypatch, "RefundService", "create", gateway.StripeFailure("internal error", status=500))
    with pytest.raises(gateway.StripeFailure):
        sync_customer(customer)  # the webhook worker's sync fails: the event is retried
    assert failed

    sync_customer(customer)  # the retry

    intent = paid_intent_of_subscription(stripe_env, customer, extra.subscription)
    assert [r.payment_intent for r in refunds_of_customer(stripe_env, customer)] == [intent]
    assert stripe_env.client.v1.subscriptions.retrieve(extra.subscription).status == "canceled"


@pytest.mark.parametrize("failing", ["POST /v1/refunds", "POST /v1/refunds after", "DELETE /v1/subscriptions/*"])
def test_a_500_kept_under_the_key_does_not_hold_the_undo_back_for_a_day(org, stripe_env, db, failing):
    """Stripe keeps a 500 under its idempotency key for 24 h and replays it to the same key: the
    event's retry goes under the key's next number and finishes, refunding once even when the 500
    came after the refund was made (" after")."""
    buy(org, "starter", "MONTHLY", sandbox=stripe_env)
    customer = customer_id_for(org.id)
    extra = buy_behind_the_apps_back(stripe_env, customer, price_of(db, "business", "MONTHLY"))
    stripe_env.configure(fail_next=[failing])
    with pytest.raises(gateway.StripeFailure):
        sync_customer(customer)

    sync_customer(customer)  # the retry

    intent = paid_intent_of_subscription(stripe_env, customer, extra.subscription)
    assert [r.payment_intent for r in refunds_of_customer(stripe_env, customer)] == [intent]
    assert stripe_env.client.v1.subscriptions.retrieve(extra.subscription).status == "canceled"


def test_a_sync_that_dies_between_refund_and_cancel_is_finished_by_the_retry(org, stripe_env, db, monkeypatch):
    """Refunded, then the process dies before the cancel: the retry cancels it, refunding nothing twice."""
    _, status = buy(org, "starter", "MONTHLY", sandbox=stripe_env)
    customer = customer_id_for(org.id)
    extra = buy_behind_the_apps_back(stripe_env, customer, price_of(db, "business", "MONTHLY"))
    failed = fail_once(monkeypatch, "SubscriptionService", "cancel", SystemExit(17))
    with pytest.raises(SystemExit):
        sync_customer(customer)
    assert failed and refunds_of_customer(stripe_env, customer)

    sync_customer(customer)  # the retry

    intent = paid_intent_of_subscription(stripe_env, customer, extra.subscription)
    assert [r.payment_intent for r in refunds_of_customer(stripe_env, customer)] == [intent]
    assert stripe_env.client.v1.subscriptions.retrieve(extra.subscription).status == "canceled"
    assert stripe_env.client.v1.subscriptions.retrieve(status.subscription_id).status == "active"
    db.expire_all()
    rows = {r.stripe_id: r.status for r in db.exec(select(OrgSubscription).where(OrgSubscription.org_id == org.id))}
    assert rows == {status.subscription_id: "active", extra.subscription: "canceled"}


def during_the_sessions_read(monkeypatch, act):
    """Run `act()` once while a sync reads Stripe: after it listed subscriptions, invoices and charges,
    before it lists the checkout sessions (a slow read of a long history). Returns what `act` returned."""
    real_list_all = gateway.list_all
    done = []

    def slow_reads(list_method, params):
        if not done and tuple(params.get("expand") or ()) == SESSION_EXPAND:
            monkeypatch.setattr(gateway, "list_all", real_list_all)  # once: `act` may sync too
            done.append(act())
        return real_list_all(list_method, params)

    monkeypatch.setattr(gateway, "list_all", slow_reads)
    return done


def test_a_stale_snapshot_never_refunds_the_purchase_made_meanwhile(org, stripe_env, monkeypatch):
    """The admin cancels the monthly plan and buys a lifetime one while a webhook's sync reads: its
    snapshot holds both, but it is stale (the app's own syncs wrote since) and undoes nothing."""
    buy(org, "starter", "MONTHLY", sandbox=stripe_env)
    time.sleep(1.1)  # Stripe's `created` is in seconds: the subscription is the older purchase
    customer = customer_id_for(org.id)

    def admin_switches_to_lifetime():
        cancel(org.admin, at_period_end=False)
        started = start_checkout(org.admin, period_id("business", "ALL_TIME"))
        stripe_env.complete_checkout(started.session_id)
        return started.session_id

    done = during_the_sessions_read(monkeypatch, admin_switches_to_lifetime)
    report = sync_customer(customer)  # the webhook worker's sync, begun before the admin's actions

    assert done
    intent = stripe_env.client.v1.checkout.sessions.retrieve(done[0]).payment_intent
    assert [r for r in refunds_of_customer(stripe_env, customer) if r.payment_intent == intent] == []
    assert report.stale  # the case this test is about: the app's own syncs wrote since this one's reads began
    sync_customer(customer)
    with session_scope() as s:
        lifetime = s.exec(select(OrgSubscription).where(OrgSubscription.org_id == org.id, OrgSubscription.one_off)).one()
    assert lifetime.status == "active"


def test_a_kept_plan_ended_during_the_reads_leaves_the_new_purchase_alone(org, stripe_env, db, monkeypatch):
    """No other sync wrote (the snapshot is not stale), but the kept subscription was canceled at Stripe
    during the reads: the lifetime plan bought then is the org's one plan, not an extra to refund."""
    _, status = buy(org, "starter", "MONTHLY", sandbox=stripe_env)
    time.sleep(1.1)
    customer = customer_id_for(org.id)

    def dashboard_user_switches_to_lifetime():
        stripe_env.client.v1.subscriptions.cancel(status.subscription_id)
        return buy_behind_the_apps_back(stripe_env, customer, price_of(db, "business", "ALL_TIME"), mode="payment")

    done = during_the_sessions_read(monkeypatch, dashboard_user_switches_to_lifetime)
    report = sync_customer(customer)

    assert done and not report.stale
    assert refunds_of_customer(stripe_env, customer) == []
    sync_customer(customer)
    db.expire_all()
    rows = {r.stripe_id: r.status for r in db.exec(select(OrgSubscription).where(OrgSubscription.org_id == org.id))}
    assert rows == {status.subscription_id: "canceled", done[0].payment_intent: "active"}


def test_an_extra_subscription_canceled_during_the_reads_does_not_fail_the_sync(org, stripe_env, db, monkeypatch):
    """The extra subscription is canceled at Stripe while the sync reads: undoing it would be refused
    (400: already canceled) and fail the sync each retry; it is no plan held any more, so nothing is done."""
    _, status = buy(org, "starter", "MONTHLY", sandbox=stripe_env)
    customer = customer_id_for(org.id)
    extra = buy_behind_the_apps_back(stripe_env, customer, price_of(db, "business", "MONTHLY"))

    done = during_the_sessions_read(monkeypatch, lambda: stripe_env.client.v1.subscriptions.cancel(extra.subscription))
    report = sync_customer(customer)

    assert done and not report.stale
    assert not any(duplicates.REASON in change for change in report.changes)
    assert stripe_env.client.v1.subscriptions.retrieve(status.subscription_id).status == "active"


def test_an_extra_lifetime_whose_refund_failed_later_stays_undone_and_is_left_to_an_operator(org, stripe_env, db, caplog):
    # refund.failed re-syncs the customer: the purchase, paid and no longer refunded, was held again
    # (the org had two plans), and its "undo" replayed the first refund's answer under the same key,
    # refunding nothing while the sync said "canceled and refunded".
    stripe_env.configure(refund_failure_seconds=0.3)
    buy(org, "starter", "MONTHLY", sandbox=stripe_env)  # the plan the org keeps
    customer = customer_id_for(org.id)
    intent = buy_behind_the_apps_back(stripe_env, customer, price_of(db, "business", "ALL_TIME"), "payment",
                                      card="pm_card_refundFail").payment_intent
    sync_customer(customer)  # undoes it: a refund, which fails a moment later
    wait_for_the_refund_to_fail(stripe_env, customer)

    report = sync_customer(customer)  # what refund.failed's re-sync runs
    assert not [c for c in report.changes if duplicates.REASON in c], report.changes  # nothing claimed undone again
    assert [r.status for r in refunds_of_customer(stripe_env, customer)] == ["failed"]  # and no refund replayed
    with session_scope() as s:
        lifetime = s.exec(select(OrgSubscription).where(OrgSubscription.stripe_id == intent)).one()
        payment = s.exec(select(Payment).where(Payment.stripe_id == intent)).one()
    assert lifetime.status == "canceled"  # no second plan
    assert (payment.status, payment.amount_refunded) == ("COMPLETED", 0)  # the truth about the money
    assert_left_to_an_operator_once(customer, intent, caplog)


def assert_left_to_an_operator_once(customer_id, payment_id, caplog):
    """The failed refund of `payment_id` is logged for an operator and kept in the event log, once:
    the syncs after it (every later event of the customer) say it again nowhere."""
    assert "refund it by hand" in caplog.text
    with session_scope() as s:
        rows = s.exec(select(WebhookEvent).where(WebhookEvent.type == DUPLICATE_REFUND_FAILED_EVENT_TYPE)).all()
    assert [(r.customer_id, json.loads(r.payload)["payment"]) for r in rows] == [(customer_id, payment_id)]
    caplog.clear()
    sync_customer(customer_id)
    assert "refund it by hand" not in caplog.text


def test_an_extra_subscription_whose_refund_failed_later_is_left_to_an_operator(org, stripe_env, db, caplog):
    # Undone, it is canceled (no plan held), so refund.failed's re-sync saw nothing to do: the
    # customer kept paying twice for one plan, and the history said nothing of it.
    stripe_env.configure(refund_failure_seconds=0.3)
    buy(org, "starter", "MONTHLY", sandbox=stripe_env)  # the plan the org keeps
    customer = customer_id_for(org.id)
    extra = buy_behind_the_apps_back(stripe_env, customer, price_of(db, "business", "MONTHLY"), card="pm_card_refundFail")
    sync_customer(customer)  # undoes it: refund (fails a moment later), then cancel
    assert stripe_env.client.v1.subscriptions.retrieve(extra.subscription).status == "canceled"
    invoice = paid_invoice_of_subscription(stripe_env, customer, extra.subscription).id
    with session_scope() as s:
        assert s.exec(select(Payment.status).where(Payment.stripe_id == invoice)).one() == "REFUNDED"
    wait_for_the_refund_to_fail(stripe_env, customer)
    caplog.clear()

    report = sync_customer(customer)  # what refund.failed's re-sync runs

    assert not [c for c in report.changes if duplicates.REASON in c], report.changes  # not undone again
    assert [r.status for r in refunds_of_customer(stripe_env, customer)] == ["failed"]  # no refund replayed
    with session_scope() as s:
        payment = s.exec(select(Payment).where(Payment.stripe_id == invoice)).one()
    assert (payment.status, payment.amount_refunded) == ("COMPLETED", 0)  # paid, and kept
    assert_left_to_an_operator_once(customer, invoice, caplog)


def test_a_second_subscription_already_charged_back_is_canceled_without_a_refund(org, stripe_env, db):
    """Its payment's dispute was lost: the money is back with the buyer, and Stripe refuses a refund
    (`charge_disputed`). The undo takes that as done and cancels it, rather than failing every sync."""
    _, status = buy(org, "starter", "MONTHLY", sandbox=stripe_env)
    customer = customer_id_for(org.id)
    extra = buy_behind_the_apps_back(stripe_env, customer, price_of(db, "business", "MONTHLY"), card="pm_card_createDispute")
    stripe_env.client.v1.disputes.close(stripe_env.client.v1.disputes.list().data[0].id)  # lost

    sync_customer(customer)

    assert stripe_env.client.v1.subscriptions.retrieve(extra.subscription).status == "canceled"
    assert stripe_env.client.v1.subscriptions.retrieve(status.subscription_id).status == "active"
    assert refunds_of_customer(stripe_env, customer) == []
