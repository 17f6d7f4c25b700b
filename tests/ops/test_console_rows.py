"""The console shows an org's payments as the org's own payment history reads them, without the
invoice and receipt links (those open for anyone holding them; they stay with the org's admins)."""

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
