"""A partial refund is mirrored: the payment stays Completed and says how much came back, on the
payments page, in the CSV and over the REST API, by sync_customer and the bulk reconcile alike."""

from __future__ import annotations

import csv
import io

from sqlmodel import select

from billing_app.billing import payments
from billing_app.billing.sync import sync_customer
from billing_app.db import session_scope
from billing_app.models import Payment
from billing_app.ops import reconcile
from billing_app.pages.payments import payment_row
from tests.api.helpers import bearer, token_for
from tests.billing.helpers import access, buy
from tests.ops.helpers import customer_of_org, mirror_of


def _refund_invoice(org, stripe_env, amount: int | None) -> str:
    """Refund the org's paid invoice at Stripe (all of it when `amount` is None); its id."""
    client = stripe_env.client
    with session_scope() as s:
        paid = s.exec(select(Payment).where(Payment.org_id == org.id, Payment.status == "COMPLETED")).one()
    intent = client.v1.invoice_payments.list(params={"invoice": paid.stripe_id}).data[0].payment.payment_intent
    client.v1.refunds.create(params={"payment_intent": intent, **({"amount": amount} if amount else {})})
    return paid.stripe_id


def _row(stripe_id: str) -> Payment:
    with session_scope() as s:
        return s.exec(select(Payment).where(Payment.stripe_id == stripe_id)).one()


def test_a_partial_refund_is_mirrored_and_shown(org, stripe_env):
    buy(org, "starter", "MONTHLY", sandbox=stripe_env)  # $9.00
    invoice_id = _refund_invoice(org, stripe_env, 450)
    sync_customer(customer_of_org(org.id))  # the charge.refunded webhook
    row = _row(invoice_id)
    assert (row.status, row.amount, row.amount_refunded) == ("COMPLETED", 900, 450)
    assert payment_row(row).refunded == "$4.50 refunded"

    with session_scope() as s:
        text = "".join(payments.export_csv(s, org.admin, payments.PaymentFilter.parse(None, None, None)))
    exported = next(r for r in csv.DictReader(io.StringIO(text)) if r["stripe_id"] == invoice_id)
    assert exported["amount_refunded"] == "4.50" and exported["status"] == "COMPLETED"


def test_the_rest_api_says_how_much_was_refunded(org, stripe_env, client):
    buy(org, "starter", "MONTHLY", sandbox=stripe_env)
    invoice_id = _refund_invoice(org, stripe_env, 450)
    sync_customer(customer_of_org(org.id))
    answer = client.get("/api/subscriptions/payments", headers=bearer(token_for(org.admin))).json()
    paid = next(p for p in answer["payments"] if p["id"] == invoice_id)
    assert (paid["status"], paid["amount"], paid["amountRefunded"]) == ("COMPLETED", 900, 450)


def test_a_full_refund_is_the_status_and_no_extra_line(org, stripe_env):
    buy(org, "starter", "MONTHLY", sandbox=stripe_env)
    invoice_id = _refund_invoice(org, stripe_env, None)
    sync_customer(customer_of_org(org.id))
    row = _row(invoice_id)
    assert (row.status, row.amount_refunded) == ("REFUNDED", 900)
    assert payment_row(row).refunded == ""


def test_the_bulk_reconcile_mirrors_a_partial_refund_as_sync_customer_does(org, stripe_env):
    buy(org, "starter", "MONTHLY", sandbox=stripe_env)
    invoice_id = _refund_invoice(org, stripe_env, 300)
    reconcile.bulk_reconcile()
    healed = mirror_of(org.id)
    assert _row(invoice_id).amount_refunded == 300
    sync_customer(customer_of_org(org.id))
    assert mirror_of(org.id) == healed


def test_a_lost_chargeback_on_a_subscription_payment_reads_disputed_and_cancels_nothing(org, stripe_env, client):
    """Paid with the dispute test card, the invoice's charge is disputed; once lost the payment is shown
    Disputed on the page, in the CSV and over the REST API. The subscription is left to the admin."""
    buy(org, "starter", "MONTHLY", sandbox=stripe_env, card="pm_card_createDispute")
    dispute = stripe_env.client.v1.disputes.list().data[0]
    stripe_env.client.v1.disputes.update(dispute.id, params={"evidence": {"uncategorized_text": "losing_evidence"}})
    sync_customer(customer_of_org(org.id))  # charge.dispute.closed
    row = _paid_invoice(org.id)
    assert (row.status, payment_row(row).status, payment_row(row).color) == ("DISPUTED", "Disputed", "red")
    with session_scope() as s:
        text = "".join(payments.export_csv(s, org.admin, payments.PaymentFilter.parse(None, None, "DISPUTED")))
    assert [r["stripe_id"] for r in csv.DictReader(io.StringIO(text))] == [row.stripe_id]
    answer = client.get("/api/subscriptions/payments?status=DISPUTED", headers=bearer(token_for(org.admin))).json()
    assert [(p["id"], p["status"]) for p in answer["payments"]] == [(row.stripe_id, "DISPUTED")]
    assert access(org).access, "a lost chargeback cancels no subscription by itself"


def _paid_invoice(org_id: int) -> Payment:
    with session_scope() as s:
        return s.exec(select(Payment).where(Payment.org_id == org_id, Payment.stripe_id.startswith("in_"))).one()
