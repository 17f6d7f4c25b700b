"""Every endpoint, and every error code it can return, through HTTP against the sandbox."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlmodel import select

from billing_app.billing import gateway
from billing_app.billing.sync import sync_customer
from billing_app.db import session_scope
from billing_app.models import BillingCustomer, OrgSubscription, Payment, Plan, PlanPeriod
from billing_app.settings import get_settings
from tests.api.helpers import buy, err, ok
from tests.billing.helpers import period_id, still_clearing
from tests.sandbox_fixture import free_port


@pytest.fixture
def stripe_down(stripe_env, monkeypatch):
    """Stripe stops answering (a closed port), for the 502 paths."""
    def down():
        monkeypatch.setenv("STRIPE_API_BASE", f"http://127.0.0.1:{free_port()}")
        get_settings.cache_clear()
        gateway.reset_client()
    return down


def mirror(org_id) -> OrgSubscription:
    with session_scope() as s:
        return s.exec(select(OrgSubscription).where(OrgSubscription.org_id == org_id)).one()


def edit_mirror(org_id, **values):
    with session_scope() as s:
        row = s.exec(select(OrgSubscription).where(OrgSubscription.org_id == org_id)).one()
        for key, value in values.items():
            setattr(row, key, value)


def break_customer(org_id):
    """The org's Stripe customer id now names no customer: Stripe refuses calls made for it."""
    with session_scope() as s:
        row = s.exec(select(BillingCustomer).where(BillingCustomer.org_id == org_id)).first()
        if row is None:
            s.add(BillingCustomer(org_id=org_id, stripe_customer_id="cus_doesnotexist"))
        else:
            row.stripe_customer_id = "cus_doesnotexist"


# --- GET /api/subscriptions ---------------------------------------------------------------------------


def test_plans_are_public_and_list_active_non_legacy_plans(client, stripe_env):
    body = ok(client.get("/api/subscriptions"))
    plans = {p["key"]: p for p in body["plans"]}
    assert list(plans) == ["starter", "pro", "team", "business"]
    starter = plans["starter"]
    assert starter["name"] == "Starter" and starter["limits"] == {"seats": 3, "projects": 5}
    assert [(p["periodType"], p["price"], p["currency"], p["interval"]) for p in starter["periods"]] == [
        ("MONTHLY", 900, "usd", "month"), ("YEARLY", 9000, "usd", "year"),
    ]
    assert [p["id"] for p in starter["periods"]] == [period_id("starter", "MONTHLY"), period_id("starter", "YEARLY")]
    lifetime = plans["business"]["periods"][-1]
    assert (lifetime["periodType"], lifetime["interval"], lifetime["price"]) == ("ALL_TIME", None, 249900)
    assert plans["pro"]["mostPopular"] and plans["pro"]["periods"][0]["trialDays"] == 14

    with session_scope() as s:
        s.exec(select(Plan).where(Plan.key == "pro")).one().legacy = True
        s.get(PlanPeriod, period_id("starter", "YEARLY")).active = False
    plans = {p["key"]: p for p in ok(client.get("/api/subscriptions", headers={"Authorization": "Bearer junk"}))["plans"]}
    assert list(plans) == ["starter", "team", "business"]
    assert [p["periodType"] for p in plans["starter"]["periods"]] == ["MONTHLY"]


# --- GET /api/subscriptions/my and GET /api/billing/summary ------------------------------------------


def test_my_subscription_and_summary_before_and_after_buying(client, tokens, stripe_env):
    assert ok(client.get("/api/subscriptions/my", headers=tokens.member))["subscription"] is None
    summary = ok(client.get("/api/billing/summary", headers=tokens.member))
    assert summary == {"success": True, "status": None, "trial_ends_at": None, "activated_at": None, "plan": None,
                       "current_period_end": None, "access": False, "reason": "no_subscription"}

    buy(client, tokens, stripe_env)
    sub = ok(client.get("/api/subscriptions/my", headers=tokens.member))["subscription"]
    row = mirror(tokens.org.id)
    assert sub["id"] == row.stripe_id and sub["id"].startswith("sub_")
    assert (sub["planKey"], sub["periodType"], sub["price"], sub["currency"], sub["status"]) == ("starter", "MONTHLY", 900, "usd", "active")
    assert (sub["autoRenew"], sub["cancelAtPeriodEnd"], sub["trialEndsAt"], sub["access"]) == (True, False, None, True)
    date_from, date_to = datetime.fromisoformat(sub["dateFrom"]), datetime.fromisoformat(sub["dateTo"])
    assert 28 <= (date_to - date_from).days <= 31 and date_from.tzinfo is not None

    summary = ok(client.get("/api/billing/summary", headers=tokens.member))
    assert (summary["status"], summary["access"], summary["reason"], summary["trial_ends_at"]) == ("active", True, "active", None)
    assert summary["plan"] == {"key": "starter", "name": "Starter", "periodType": "MONTHLY", "limits": {"seats": 3, "projects": 5}}
    assert summary["current_period_end"] == sub["dateTo"] and summary["activated_at"]


def test_trial_shows_its_end(client, tokens, stripe_env):
    buy(client, tokens, stripe_env, plan="pro")
    sub = ok(client.get("/api/subscriptions/my", headers=tokens.admin))["subscription"]
    assert sub["status"] == "trialing" and sub["trialEndsAt"]
    trial_end = datetime.fromisoformat(sub["trialEndsAt"])
    assert timedelta(days=13) < trial_end - datetime.now(timezone.utc) <= timedelta(days=14, minutes=1)
    summary = ok(client.get("/api/billing/summary", headers=tokens.admin))
    assert (summary["status"], summary["reason"], summary["trial_ends_at"]) == ("trialing", "trialing", sub["trialEndsAt"])


def test_lifetime_has_no_end_date(client, tokens, stripe_env):
    buy(client, tokens, stripe_env, plan="business", period="ALL_TIME")
    sub = ok(client.get("/api/subscriptions/my", headers=tokens.admin))["subscription"]
    assert (sub["periodType"], sub["dateTo"], sub["autoRenew"], sub["status"], sub["price"]) == ("ALL_TIME", None, False, "active", 249900)
    assert sub["dateFrom"]
    summary = ok(client.get("/api/billing/summary", headers=tokens.admin))
    assert (summary["reason"], summary["current_period_end"], summary["plan"]["periodType"]) == ("lifetime", None, "ALL_TIME")


# --- POST /api/subscriptions/buy -----------------------------------------------------------------------


def test_buy_starts_a_checkout_for_the_org(client, tokens, stripe_env):
    body = ok(client.post("/api/subscriptions/buy", headers=tokens.admin, json={"subscriptionPeriodId": period_id("starter", "YEARLY")}))
    assert set(body) == {"success", "sessionId", "checkoutUrl"}
    checkout = stripe_env.client.v1.checkout.sessions.retrieve(body["sessionId"])
    assert checkout.url == body["checkoutUrl"] and checkout.client_reference_id == str(tokens.org.id)
    assert checkout.mode == "subscription" and checkout.metadata["plan_key"] == "starter"


def test_buy_errors(client, tokens, stripe_env):
    def post(json, headers=tokens.admin):
        return client.post("/api/subscriptions/buy", headers=headers, json=json)

    err(post({}), 422, "VALIDATION_ERROR")
    err(post({"subscriptionPeriodId": "1"}), 422, "VALIDATION_ERROR")  # strict: no guessing
    err(post({"subscriptionPeriodId": 1, "extra": 1}), 422, "VALIDATION_ERROR")
    err(post({"subscriptionPeriodId": 2**40}), 422, "VALIDATION_ERROR")
    err(client.post("/api/subscriptions/buy", headers={**tokens.admin, "content-type": "application/json"}, content=b"{nope"),
        422, "VALIDATION_ERROR")
    err(post({"subscriptionPeriodId": 999999}), 404, "SUBSCRIPTION_PERIOD_NOT_FOUND")
    with session_scope() as s:
        s.get(PlanPeriod, period_id("pro", "YEARLY")).active = False
        # The mirror says 1900 but Stripe's price says 900: the price is out of date.
        s.get(PlanPeriod, period_id("starter", "YEARLY")).amount = 1900
    err(post({"subscriptionPeriodId": period_id("pro", "YEARLY")}), 404, "SUBSCRIPTION_PERIOD_NOT_FOUND")
    err(post({"subscriptionPeriodId": period_id("starter", "YEARLY")}), 409, "STRIPE_PRICE_MISMATCH")

    buy(client, tokens, stripe_env)
    body = err(post({"subscriptionPeriodId": period_id("pro", "MONTHLY")}), 409, "SUBSCRIPTION_ALREADY_ACTIVE")
    assert "already has a subscription" in body["message"]


def test_buy_when_stripe_refuses_or_is_down(client, tokens, stripe_env, stripe_down):
    break_customer(tokens.org.id)
    err(client.post("/api/subscriptions/buy", headers=tokens.admin, json={"subscriptionPeriodId": period_id("starter", "MONTHLY")}),
        502, "STRIPE_CHECKOUT_FAILED")
    stripe_down()
    err(client.post("/api/subscriptions/buy", headers=tokens.admin, json={"subscriptionPeriodId": period_id("starter", "MONTHLY")}),
        502, "STRIPE_UNAVAILABLE")


def test_billing_not_configured(client, tokens, stripe_env, monkeypatch):
    monkeypatch.delenv("STRIPE_SECRET_KEY")
    monkeypatch.setenv("STRIPE_SECRET_KEY", "")
    get_settings.cache_clear()
    gateway.reset_client()
    err(client.post("/api/subscriptions/buy", headers=tokens.admin, json={"subscriptionPeriodId": period_id("starter", "MONTHLY")}),
        503, "BILLING_NOT_CONFIGURED")
    # Reading the mirror needs no Stripe.
    ok(client.get("/api/subscriptions"))
    ok(client.get("/api/billing/summary", headers=tokens.member))


# --- GET /api/subscriptions/checkout-session/{id} --------------------------------------------------


def test_checkout_session_status(client, tokens, stripe_env):
    started = ok(client.post("/api/subscriptions/buy", headers=tokens.admin, json={"subscriptionPeriodId": period_id("starter", "MONTHLY")}))
    sid = started["sessionId"]
    body = ok(client.get(f"/api/subscriptions/checkout-session/{sid}", headers=tokens.member))
    assert body == {"success": True, "status": "open", "payment_status": "unpaid", "subscriptionId": None, "mode": "subscription",
                    "outcome": "open"}
    stripe_env.complete_checkout(sid)
    body = ok(client.get(f"/api/subscriptions/checkout-session/{sid}", headers=tokens.member))
    assert (body["status"], body["payment_status"], body["outcome"]) == ("complete", "paid", "paid")
    # The mirror is synced by the call itself, without waiting for a webhook.
    assert body["subscriptionId"] == mirror(tokens.org.id).stripe_id

    # Another org's session, a session Stripe does not know, and something that is no session id: all 404.
    for headers, session_id in ((tokens.other_admin, sid), (tokens.admin, "cs_test_doesnotexist"), (tokens.admin, "nope"),
                                (tokens.admin, "cs_" + "x" * 300)):
        err(client.get(f"/api/subscriptions/checkout-session/{session_id}", headers=headers), 404, "INVALID_SESSION")


@pytest.mark.parametrize("bank", ["clearing", "failed"])
def test_checkout_session_tells_a_clearing_bank_debit_from_a_bounced_one(client, tokens, stripe_env, monkeypatch, bank):
    # Both are complete and unpaid at Stripe: the page said which, the API did not.
    started = ok(client.post("/api/subscriptions/buy", headers=tokens.admin, json={"subscriptionPeriodId": period_id("business", "ALL_TIME")}))
    stripe_env.complete_checkout(started["sessionId"], async_payment="succeeded" if bank == "clearing" else "failed")
    if bank == "clearing":
        still_clearing(monkeypatch, started["sessionId"])
    body = ok(client.get(f"/api/subscriptions/checkout-session/{started['sessionId']}", headers=tokens.member))
    assert (body["status"], body["payment_status"], body["outcome"]) == ("complete", "unpaid", bank)


def test_checkout_session_when_stripe_is_down(client, tokens, stripe_env, stripe_down):
    stripe_down()
    err(client.get("/api/subscriptions/checkout-session/cs_test_abc", headers=tokens.member), 502, "STRIPE_UNAVAILABLE")


# --- POST /api/subscriptions/portal and /api/billing/portal --------------------------------------------


@pytest.mark.parametrize("path", ["/api/subscriptions/portal", "/api/billing/portal"])
def test_portal(client, tokens, stripe_env, path):
    err(client.post(path, headers=tokens.admin), 404, "NO_BILLING_ACCOUNT")
    buy(client, tokens, stripe_env)
    url = ok(client.post(path, headers=tokens.admin))["url"]
    assert url.startswith(stripe_env.base_url + "/portal/")
    flow = ok(client.post(path, headers=tokens.super_admin, json={"flow": "payment_method_update"}))
    assert flow["url"].startswith(stripe_env.base_url + "/portal/")
    err(client.post(path, headers=tokens.admin, json={"flow": "make_it_free"}), 422, "VALIDATION_ERROR")
    err(client.post(path, headers=tokens.member), 403, "FORBIDDEN")


def test_portal_flow_needs_a_subscription(client, tokens, stripe_env):
    buy(client, tokens, stripe_env, plan="business", period="ALL_TIME")
    ok(client.post("/api/billing/portal", headers=tokens.admin))
    err(client.post("/api/billing/portal", headers=tokens.admin, json={"flow": "subscription_cancel"}), 404, "SUBSCRIPTION_NOT_FOUND")


def test_portal_when_stripe_refuses_or_is_down(client, tokens, stripe_env, stripe_down):
    break_customer(tokens.org.id)
    err(client.post("/api/subscriptions/portal", headers=tokens.admin), 502, "STRIPE_PORTAL_FAILED")
    stripe_down()
    err(client.post("/api/subscriptions/portal", headers=tokens.admin), 502, "STRIPE_PORTAL_FAILED")


# --- GET /api/subscriptions/payments --------------------------------------------------------------------


def add_payments(org_id, count, start=datetime(2026, 1, 1, tzinfo=timezone.utc), status="COMPLETED"):
    with session_scope() as s:
        for i in range(count):
            s.add(Payment(org_id=org_id, stripe_id=f"in_{org_id}_{status}_{i}", status=status, amount=100 + i, currency="usd",
                          created=start + timedelta(days=i), description=f"payment {i}"))


def test_payments_newest_first_paginated_and_filtered(client, tokens, stripe_env):
    add_payments(tokens.org.id, 5)
    add_payments(tokens.org.id, 2, start=datetime(2026, 3, 1, tzinfo=timezone.utc), status="FAILED")
    add_payments(tokens.other.id, 3)

    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = ok(client.get("/api/subscriptions/payments", headers=tokens.admin, params=params))
        seen += body["payments"]
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert len(seen) == 7 and len({p["id"] for p in seen}) == 7
    created = [p["created"] for p in seen]
    assert created == sorted(created, reverse=True)
    assert all(p["id"].startswith(f"in_{tokens.org.id}_") for p in seen)  # never another org's
    first = seen[-1]
    assert (first["amount"], first["currency"], first["status"], first["description"]) == (100, "usd", "COMPLETED", "payment 0")
    assert set(first) == {"id", "status", "amount", "currency", "created", "description", "invoiceUrl", "receiptUrl", "pdfUrl",
                          "subtotal", "discount", "tax", "amountRefunded"}

    failed = ok(client.get("/api/subscriptions/payments", headers=tokens.super_admin, params={"status": "FAILED"}))["payments"]
    assert [p["description"] for p in failed] == ["payment 1", "payment 0"]
    january = ok(client.get("/api/subscriptions/payments", headers=tokens.admin,
                            params={"startDate": "2026-01-02", "endDate": "2026-01-04"}))["payments"]
    assert [p["description"] for p in january] == ["payment 3", "payment 2", "payment 1"]


def test_payments_from_a_real_purchase(client, tokens, stripe_env):
    buy(client, tokens, stripe_env)
    (payment,) = ok(client.get("/api/subscriptions/payments", headers=tokens.admin))["payments"]
    assert (payment["status"], payment["amount"]) == ("COMPLETED", 900) and payment["id"].startswith("in_") and payment["pdfUrl"]


@pytest.mark.parametrize("params", [
    {"startDate": "yesterday"}, {"endDate": "2026-02-30"}, {"startDate": "2026-02-01", "endDate": "2026-01-01"},
    {"status": "LOST"}, {"limit": 0}, {"limit": 101}, {"limit": "ten"}, {"cursor": "not-a-cursor"},
    {"cursor": "MjAyNi0wMS0wMVQwMDowMDowMCswMDowMHw5OTk5OTk5OTk5OTk5OTk5OTk5OQ=="},  # an id beyond any integer column
    {"cursor": "MDAwMS0wMS0wMVQwMDowMDowMCsxNDowMHwx"},  # 0001-01-01T00:00:00+14:00|1: before the calendar in UTC
    {"cursor": "OTk5OS0xMi0zMVQyMzo1OTo1OS0xNDowMHwx"},  # 9999-12-31T23:59:59-14:00|1: after it
    {"endDate": "9999-12-31"}, {"start_date": "2026-01-01"},  # a misspelt filter is refused, not ignored
])
def test_payments_validation(client, tokens, stripe_env, params):
    err(client.get("/api/subscriptions/payments", headers=tokens.admin, params=params), 422, "VALIDATION_ERROR")


def test_payments_are_for_admins(client, tokens, stripe_env):
    err(client.get("/api/subscriptions/payments", headers=tokens.member), 403, "FORBIDDEN")
    # The role check comes first: a member learns nothing from validation.
    err(client.get("/api/subscriptions/payments", headers=tokens.member, params={"limit": 0}), 403, "FORBIDDEN")


# --- POST /api/subscriptions/cancel and /reactivate ----------------------------------------------------


def test_cancel_at_period_end_then_reactivate(client, tokens, stripe_env):
    buy(client, tokens, stripe_env)
    sub = ok(client.post("/api/subscriptions/cancel", headers=tokens.admin, json={"atPeriodEnd": True, "reason": "too pricey"}))["subscription"]
    assert (sub["status"], sub["cancelAtPeriodEnd"], sub["autoRenew"], sub["access"]) == ("active", True, False, True)
    stripe_sub = stripe_env.client.v1.subscriptions.retrieve(sub["id"])
    assert stripe_sub.cancel_at_period_end and stripe_sub.cancellation_details.comment == "too pricey"
    err(client.post("/api/subscriptions/cancel", headers=tokens.admin, json={"atPeriodEnd": True}), 409, "SUBSCRIPTION_ALREADY_CANCELED")

    sub = ok(client.post("/api/subscriptions/reactivate", headers=tokens.admin))["subscription"]
    assert (sub["cancelAtPeriodEnd"], sub["autoRenew"]) == (False, True)
    assert not stripe_env.client.v1.subscriptions.retrieve(sub["id"]).cancel_at_period_end
    err(client.post("/api/subscriptions/reactivate", headers=tokens.admin), 409, "SUBSCRIPTION_NOT_CANCELING")


def test_a_cancellation_on_a_chosen_date_shows_as_cancel_at_and_is_reactivated(client, tokens, stripe_env):
    """Stripe's Dashboard 'cancel on a custom date': cancel_at set, cancel_at_period_end false."""
    buy(client, tokens, stripe_env)
    row = mirror(tokens.org.id)
    at = int(row.current_period_end.timestamp()) - 86_400
    updated = stripe_env.client.v1.subscriptions.update(row.stripe_id, params={"cancel_at": at})
    sync_customer(updated.customer)
    sub = ok(client.get("/api/subscriptions/my", headers=tokens.member))["subscription"]
    assert (sub["cancelAtPeriodEnd"], sub["autoRenew"]) == (False, False)
    assert datetime.fromisoformat(sub["cancelAt"]) == datetime.fromtimestamp(at, tz=UTC)

    sub = ok(client.post("/api/subscriptions/reactivate", headers=tokens.admin))["subscription"]
    assert (sub["cancelAt"], sub["autoRenew"]) == (None, True)
    assert stripe_env.client.v1.subscriptions.retrieve(sub["id"]).cancel_at is None


def test_cancel_defaults_to_the_period_end_and_can_end_now(client, tokens, stripe_env):
    buy(client, tokens, stripe_env)
    assert ok(client.post("/api/subscriptions/cancel", headers=tokens.admin))["subscription"]["cancelAtPeriodEnd"] is True
    ok(client.post("/api/subscriptions/reactivate", headers=tokens.admin))
    sub = ok(client.post("/api/subscriptions/cancel", headers=tokens.admin, json={"atPeriodEnd": False}))["subscription"]
    assert sub["status"] == "canceled" and stripe_env.client.v1.subscriptions.retrieve(sub["id"]).status == "canceled"
    err(client.post("/api/subscriptions/cancel", headers=tokens.admin, json={"atPeriodEnd": False}), 409, "SUBSCRIPTION_ALREADY_CANCELED")
    err(client.post("/api/subscriptions/reactivate", headers=tokens.admin), 409, "SUBSCRIPTION_ALREADY_CANCELED")


def test_cancel_and_reactivate_errors(client, tokens, stripe_env):
    err(client.post("/api/subscriptions/cancel", headers=tokens.admin), 404, "SUBSCRIPTION_NOT_FOUND")
    err(client.post("/api/subscriptions/reactivate", headers=tokens.admin), 404, "SUBSCRIPTION_NOT_FOUND")
    err(client.post("/api/subscriptions/cancel", headers=tokens.admin, json={"atPeriodEnd": "yes"}), 422, "VALIDATION_ERROR")
    err(client.post("/api/subscriptions/cancel", headers=tokens.admin, json={"reason": "x" * 501}), 422, "VALIDATION_ERROR")
    err(client.post("/api/subscriptions/cancel", headers=tokens.admin, json=[1]), 422, "VALIDATION_ERROR")
    buy(client, tokens, stripe_env, plan="business", period="ALL_TIME")
    err(client.post("/api/subscriptions/cancel", headers=tokens.admin), 409, "LIFETIME_NOT_CHANGEABLE")
    err(client.post("/api/subscriptions/reactivate", headers=tokens.admin), 409, "LIFETIME_NOT_CHANGEABLE")


def test_cancel_and_reactivate_when_stripe_refuses(client, tokens, stripe_env, stripe_down):
    buy(client, tokens, stripe_env)
    edit_mirror(tokens.org.id, stripe_id="sub_doesnotexist")
    err(client.post("/api/subscriptions/cancel", headers=tokens.admin), 502, "STRIPE_CANCELLATION_FAILED")
    edit_mirror(tokens.org.id, cancel_at_period_end=True)
    err(client.post("/api/subscriptions/reactivate", headers=tokens.admin), 502, "STRIPE_REACTIVATION_FAILED")
    stripe_down()
    err(client.post("/api/subscriptions/reactivate", headers=tokens.admin), 502, "STRIPE_REACTIVATION_FAILED")


# --- POST /api/subscriptions/change ---------------------------------------------------------------------


def test_change_previews_then_applies_an_upgrade(client, tokens, stripe_env):
    buy(client, tokens, stripe_env)
    target = period_id("pro", "MONTHLY")
    preview = ok(client.post("/api/subscriptions/change", headers=tokens.admin, json={"subscriptionPeriodId": target, "preview": True}))
    assert (preview["fromPlan"], preview["toPlan"], preview["upgrade"], preview["applied"], preview["currency"]) == ("Starter", "Pro", True, False, "usd")
    assert 0 < preview["amountDueNow"] <= 2000
    assert preview["subscription"]["planKey"] == "starter"  # nothing changed yet

    applied = ok(client.post("/api/subscriptions/change", headers=tokens.admin, json={"subscriptionPeriodId": target}))
    assert applied["applied"] is True and applied["subscription"]["planKey"] == "pro" and applied["confirmPaymentUrl"] is None
    assert applied["subscription"]["subscriptionPeriodId"] == target
    err(client.post("/api/subscriptions/change", headers=tokens.admin, json={"subscriptionPeriodId": target}), 409, "SAME_PLAN")


def test_an_upgrade_needing_3d_secure_answers_the_hosted_invoice_link(client, tokens, stripe_env):
    import httpx

    from billing_app.billing.customers import customer_id_for
    from billing_app.billing.sync import sync_customer
    from billing_app.billing.views import billing_view

    # Bought with the card that needs the bank for every payment: approved at Checkout (on-session).
    started = ok(client.post("/api/subscriptions/buy", headers=tokens.admin, json={"subscriptionPeriodId": period_id("starter", "MONTHLY")}))
    stripe_env.complete_checkout(started["sessionId"], payment_method="pm_card_authenticationRequired", authentication="approve")
    ok(client.get(f"/api/subscriptions/checkout-session/{started['sessionId']}", headers=tokens.admin))
    target = period_id("pro", "MONTHLY")
    assert ok(client.post("/api/subscriptions/change", headers=tokens.admin, json={"subscriptionPeriodId": target, "preview": True}))["confirmPaymentUrl"] is None

    # The upgrade is charged off-session: the bank wants the customer, so nothing applies yet.
    answer = ok(client.post("/api/subscriptions/change", headers=tokens.admin, json={"subscriptionPeriodId": target}))
    assert answer["applied"] is False and answer["subscription"]["planKey"] == "starter"
    url = answer["confirmPaymentUrl"]
    assert url.startswith(stripe_env.base_url + "/invoices/in_")
    with session_scope() as s:
        assert billing_view(s, tokens.org.id).confirm_payment_url == url  # the link the billing page shows

    # Confirmed there, the upgrade applies (synced here as the webhook would: no webhook runs in these tests).
    assert httpx.post(f"{url}/authenticate", data={"authentication": "approve"}).status_code == 303
    sync_customer(customer_id_for(tokens.org.id))
    assert ok(client.get("/api/subscriptions/my", headers=tokens.admin))["subscription"]["planKey"] == "pro"
    documented = client.get("/api/openapi.json").json()["components"]["schemas"]["PlanChangeResponse"]["properties"]
    assert "3-D Secure" in documented["confirmPaymentUrl"]["description"]


def test_change_errors(client, tokens, stripe_env):
    def change(json):
        return client.post("/api/subscriptions/change", headers=tokens.admin, json=json)

    err(change({"subscriptionPeriodId": period_id("pro", "MONTHLY")}), 404, "SUBSCRIPTION_NOT_FOUND")
    err(change({"preview": True}), 422, "VALIDATION_ERROR")
    err(change({"subscriptionPeriodId": period_id("pro", "MONTHLY"), "preview": "yes"}), 422, "VALIDATION_ERROR")
    buy(client, tokens, stripe_env, plan="pro", period="YEARLY")
    err(change({"subscriptionPeriodId": 999999}), 404, "SUBSCRIPTION_PERIOD_NOT_FOUND")
    err(change({"subscriptionPeriodId": period_id("business", "ALL_TIME")}), 422, "VALIDATION_ERROR")
    downgrade = ok(change({"subscriptionPeriodId": period_id("starter", "MONTHLY"), "preview": True}))
    assert (downgrade["upgrade"], downgrade["applied"], downgrade["amountDueNow"]) == (False, False, 0)
    assert downgrade["effectiveAt"] == downgrade["subscription"]["dateTo"]  # at the period end
    err(change({"subscriptionPeriodId": period_id("pro", "YEARLY")}), 409, "SAME_PLAN")
    ok(client.post("/api/subscriptions/cancel", headers=tokens.admin, json={"atPeriodEnd": False}))
    err(change({"subscriptionPeriodId": period_id("business", "YEARLY")}), 409, "SUBSCRIPTION_ALREADY_CANCELED")


def test_change_for_a_lifetime_plan(client, tokens, stripe_env):
    buy(client, tokens, stripe_env, plan="business", period="ALL_TIME")
    err(client.post("/api/subscriptions/change", headers=tokens.admin, json={"subscriptionPeriodId": period_id("pro", "MONTHLY")}),
        409, "LIFETIME_NOT_CHANGEABLE")


def test_change_when_stripe_refuses_or_is_down(client, tokens, stripe_env, stripe_down):
    buy(client, tokens, stripe_env)
    with session_scope() as s:
        s.get(PlanPeriod, period_id("pro", "MONTHLY")).stripe_price_id = "price_doesnotexist"
    err(client.post("/api/subscriptions/change", headers=tokens.admin, json={"subscriptionPeriodId": period_id("pro", "MONTHLY")}),
        502, "STRIPE_PLAN_CHANGE_FAILED")
    stripe_down()
    err(client.post("/api/subscriptions/change", headers=tokens.admin, json={"subscriptionPeriodId": period_id("business", "MONTHLY")}),
        502, "STRIPE_UNAVAILABLE")
