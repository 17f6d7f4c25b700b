"""The console shows an org's payments as the org's own payment history reads them, without the
invoice and receipt links (those open for anyone holding them; they stay with the org's admins);
and none of the org's rows once its operator was revoked."""

from __future__ import annotations

from billing_app.db import session_scope
from billing_app.models import Payment, utcnow
from tests.aio import run_async
from tests.billing.helpers import make_org
from tests.ops.helpers import make_operator
from tests.pages import signed_in_page


def test_an_orgs_payments_read_as_its_history_does_without_their_links(db):
    from billing_app.pages.ops_org import OpsOrgState, OpsReadOnlyState

    org = make_org("Acme", "admin@acme.example", "member@acme.example")
    with session_scope() as s:
        s.add(Payment(org_id=org.id, stripe_id="in_console_1", status="COMPLETED", amount=900, currency="usd",
                      created=utcnow(), description="Starter (monthly)", invoice_url="https://invoice.stripe.com/i/secret",
                      receipt_url="https://pay.stripe.com/receipts/secret", pdf_url="https://pay.stripe.com/invoice/secret/pdf"))
    make_operator("ops@saas.example")
    for state_cls, path in ((OpsOrgState, f"/ops/orgs/{org.id}"), (OpsReadOnlyState, f"/ops/orgs/{org.id}/view")):
        page = signed_in_page(state_cls, "ops@saas.example", path)
        run_async(state_cls.load.fn(page))
        assert page.error == "", (state_cls, page.error)
        [row] = page.payments
        assert (row.date != "", row.description, row.amount, row.status) == (True, "Starter (monthly)", "$9.00", "Completed")
        assert (row.invoice_url, row.pdf_url, row.receipt_url) == ("", "", ""), state_cls


def test_an_undone_extra_lifetime_purchase_reads_refunded_only_when_money_came_back(org, stripe_env, db):
    # A free one (a 100%-off code) read "Refunded" too, though nothing was charged; its payment reads Canceled.
    from billing_app.billing.customers import customer_id_for
    from billing_app.billing.sync import sync_customer
    from billing_app.models import PlanPeriod
    from billing_app.pages.ops_org import OpsOrgState
    from tests.billing.helpers import buy, free_lifetime_behind_the_apps_back, period_id

    buy(org, "starter", "MONTHLY", sandbox=stripe_env)  # ours: kept
    customer = customer_id_for(org.id)
    lifetime_price = db.get(PlanPeriod, period_id("business", "ALL_TIME")).stripe_price_id
    free = free_lifetime_behind_the_apps_back(stripe_env, customer, lifetime_price)
    paid = stripe_env.client.v1.checkout.sessions.create(params={
        "mode": "payment", "customer": customer, "line_items": [{"price": lifetime_price, "quantity": 1}],
        "success_url": "http://127.0.0.1:3999/ok"})
    paid = stripe_env.complete_checkout(paid.id, "pm_card_visa")
    sync_customer(customer)  # both extras undone: the paid one refunded, the free one granted nothing

    make_operator("ops@saas.example")
    page = signed_in_page(OpsOrgState, "ops@saas.example", f"/ops/orgs/{org.id}")
    run_async(OpsOrgState.load.fn(page))
    assert page.error == ""
    status_of = {line.stripe_id: line.status for line in page.subscriptions}
    assert (status_of[free.id], status_of[paid.payment_intent]) == ("Canceled", "Refunded")
    # As the org's payment history reads them: its plan paid, the paid extra refunded, the free one void.
    assert sorted(row.status for row in page.payments) == ["Canceled", "Completed", "Refunded"]


def test_an_undone_extra_lifetime_purchase_whose_refund_failed_reads_refund_failed(org, stripe_env, db):
    # It read "Refunded" while its payment read Completed: the customer's money is kept, for no plan.
    from billing_app.billing.customers import customer_id_for
    from billing_app.billing.sync import sync_customer
    from billing_app.models import PlanPeriod
    from billing_app.pages.ops_org import OpsOrgState
    from tests.billing.helpers import buy, period_id, wait_for_the_refund_to_fail

    stripe_env.configure(refund_failure_seconds=0.3)
    buy(org, "starter", "MONTHLY", sandbox=stripe_env)  # ours: kept
    customer = customer_id_for(org.id)
    paid = stripe_env.client.v1.checkout.sessions.create(params={
        "mode": "payment", "customer": customer, "success_url": "http://127.0.0.1:3999/ok",
        "line_items": [{"price": db.get(PlanPeriod, period_id("business", "ALL_TIME")).stripe_price_id, "quantity": 1}]})
    paid = stripe_env.complete_checkout(paid.id, "pm_card_refundFail")
    sync_customer(customer)  # undone: refunded, a refund that fails a moment later
    wait_for_the_refund_to_fail(stripe_env, customer)
    sync_customer(customer)  # what refund.failed's re-sync runs

    make_operator("ops@saas.example")
    page = signed_in_page(OpsOrgState, "ops@saas.example", f"/ops/orgs/{org.id}")
    run_async(OpsOrgState.load.fn(page))
    assert page.error == ""
    line = next(line for line in page.subscriptions if line.stripe_id == paid.payment_intent)
    assert (line.status, line.color) == ("Refund failed", "red")
    assert sorted(row.status for row in page.payments) == ["Completed", "Completed"]  # both paid, neither returned


def test_a_reconcile_whose_operator_was_revoked_meanwhile_leaves_no_org_data(org, stripe_env, monkeypatch):
    # The reconcile re-read the org's rows after Stripe answered, without asking who is signed in now.
    from billing_app.ops import orgs
    from billing_app.ops.access import set_operator
    from billing_app.pages.ops_org import OpsOrgState
    from tests.billing.helpers import buy
    from tests.pages import run_event

    buy(org, "starter", "MONTHLY", sandbox=stripe_env)
    make_operator("ops@saas.example")
    tab = signed_in_page(OpsOrgState, "ops@saas.example", f"/ops/orgs/{org.id}")
    run_async(run_event(OpsOrgState.load.fn(tab)))
    assert tab.gate == "ok" and tab.found and tab.members and tab.payments
    real = orgs.reconcile_org

    def revoked_meanwhile(operator, org_id):
        changes = real(operator, org_id)  # Stripe answers...
        set_operator("ops@saas.example", False)  # ...after the operator was revoked
        return changes

    monkeypatch.setattr(orgs, "reconcile_org", revoked_meanwhile)
    run_async(run_event(OpsOrgState.reconcile_now.fn(tab)))
    assert tab.gate == "404" and not tab.found and (tab.members, tab.payments, tab.subscriptions, tab.message) == ([], [], [], "")
