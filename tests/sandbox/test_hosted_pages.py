"""The hosted Checkout, portal and invoice pages, driven in Chromium; PDFs downloaded and parsed."""

from __future__ import annotations

import httpx
import pytest

from .helpers import CANCEL, SUCCESS, catalog, event_types

pytestmark = pytest.mark.browser


@pytest.fixture
def app_pages(page):
    """The app's own URLs (success/cancel/return) answered in-browser, so redirects can be observed."""
    page.route("http://app.test/**", lambda route: route.fulfill(status=200, content_type="text/html", body="<h1>app</h1>"))
    return page


def new_session(c, price, mode="subscription", customer=None):
    params = {"mode": mode, "line_items": [{"price": price.id, "quantity": 1}], "success_url": SUCCESS, "cancel_url": CANCEL}
    if customer:
        params["customer"] = customer.id
    return c.v1.checkout.sessions.create(params=params)


def pay(page, card, email="browser@x.test"):
    if page.locator("#email").count():
        page.fill("#email", email)
    page.fill("#card_number", card)
    page.click("#submit")


def test_checkout_form_pays_and_redirects_to_success(sandbox, app_pages):
    page = app_pages
    c = sandbox.client
    _, monthly, _, _ = catalog(c)
    cs = new_session(c, monthly)
    page.goto(cs.url)
    assert "Pro plan" in page.inner_text("main") and "$10.00" in page.inner_text("#total")
    pay(page, "4242 4242 4242 4242")
    page.wait_for_url("http://app.test/success**")
    assert page.url == f"http://app.test/success?session_id={cs.id}"
    cs = c.v1.checkout.sessions.retrieve(cs.id, params={"expand": ["subscription", "customer"]})
    assert cs.status == "complete" and cs.payment_status == "paid" and cs.subscription.status == "active"
    assert cs.customer.email == "browser@x.test"


def test_declined_card_shows_error_and_session_stays_open(sandbox, app_pages):
    page = app_pages
    c = sandbox.client
    _, monthly, _, _ = catalog(c)
    cs = new_session(c, monthly)
    page.goto(cs.url)
    pay(page, "4000 0000 0000 0002")
    assert page.inner_text("#error") == "Your card was declined."
    assert page.url.startswith(sandbox.base_url + "/checkout/")
    assert c.v1.checkout.sessions.retrieve(cs.id).status == "open"
    pay(page, "pm_card_visa")  # the test tokens work in the card field too
    page.wait_for_url("http://app.test/success**")
    assert c.v1.checkout.sessions.retrieve(cs.id).status == "complete"


def test_invalid_card_number_and_cancel_link(sandbox, app_pages):
    page = app_pages
    c = sandbox.client
    _, _, _, one = catalog(c)
    cs = new_session(c, one, mode="payment")
    page.goto(cs.url)
    pay(page, "1234 5678")
    assert "invalid" in page.inner_text("#error")
    page.click("#cancel")
    page.wait_for_url(CANCEL)
    assert c.v1.checkout.sessions.retrieve(cs.id).status == "open"


def test_payment_mode_in_browser(sandbox, app_pages):
    page = app_pages
    c = sandbox.client
    _, _, _, one = catalog(c)
    cs = new_session(c, one, mode="payment")
    page.goto(cs.url)
    pay(page, "5555 5555 5555 4444")
    page.wait_for_url("http://app.test/success**")
    cs = c.v1.checkout.sessions.retrieve(cs.id, params={"expand": ["payment_intent.latest_charge"]})
    assert cs.payment_intent.status == "succeeded"
    assert cs.payment_intent.latest_charge.payment_method_details.card.last4 == "4444"


def test_completed_and_unknown_sessions(sandbox, page):
    c = sandbox.client
    _, monthly, _, _ = catalog(c)
    cs = new_session(c, monthly)
    sandbox.complete_checkout(cs.id)
    page.goto(f"{sandbox.base_url}/checkout/{cs.id}")
    assert "complete" in page.inner_text("#status")
    resp = page.goto(f"{sandbox.base_url}/checkout/cs_test_nope")
    assert resp.status == 404


def test_hosted_invoice_and_pdf(sandbox, page):
    c = sandbox.client
    _, monthly, _, _ = catalog(c)
    cust = c.v1.customers.create(params={"email": "inv@x.test", "name": "Inv Oice"})
    cs = new_session(c, monthly, customer=cust)
    sandbox.complete_checkout(cs.id)
    inv = c.v1.invoices.retrieve(c.v1.checkout.sessions.retrieve(cs.id).invoice)
    assert inv.hosted_invoice_url == f"{sandbox.base_url}/invoices/{inv.id}"
    assert inv.invoice_pdf == f"{sandbox.base_url}/invoices/{inv.id}/pdf"
    page.goto(inv.hosted_invoice_url)
    assert page.inner_text("#invoice-status") == "paid"
    with page.expect_download() as dl:
        page.evaluate("url => { const a = document.createElement('a'); a.href = url; a.download = 'x.pdf'; document.body.appendChild(a); a.click(); }",
                      inv.invoice_pdf)
    data = open(dl.value.path(), "rb").read()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    r = httpx.get(inv.invoice_pdf)
    assert r.headers["content-type"] == "application/pdf" and r.content.startswith(b"%PDF-")
    assert 1000 < len(r.content) < 100_000
    assert inv.number.encode() in _pdf_text(r.content)


def _pdf_text(data: bytes) -> bytes:
    """The uncompressed text streams of an fpdf2 PDF (enough to find the invoice number)."""
    import zlib
    out = b""
    for chunk in data.split(b"stream")[1:]:
        body = chunk.split(b"endstream")[0].strip(b"\r\n")
        try:
            out += zlib.decompress(body)
        except zlib.error:
            out += body
    return out


def test_pay_open_invoice_on_hosted_page(sandbox, page):
    c = sandbox.client
    _, monthly, _, _ = catalog(c)
    clock = c.v1.test_helpers.test_clocks.create(params={"frozen_time": 1_767_225_600})
    cust = c.v1.customers.create(params={"email": "late@x.test", "test_clock": clock.id})
    cs = new_session(c, monthly, customer=cust)
    sandbox.complete_checkout(cs.id)
    sub = c.v1.subscriptions.retrieve(c.v1.checkout.sessions.retrieve(cs.id).subscription)
    bad = c.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": cust.id})
    c.v1.subscriptions.update(sub.id, params={"default_payment_method": bad.id})
    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": 1_767_225_600 + 32 * 86400})
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "past_due"
    inv = c.v1.invoices.retrieve(sub.latest_invoice)
    page.goto(inv.hosted_invoice_url)
    page.fill("#card_number", "4000 0000 0000 0002")
    page.click("#pay")
    assert "declined" in page.inner_text(".error")
    page.fill("#card_number", "4242 4242 4242 4242")
    page.click("#pay")
    page.wait_for_selector("text=Paid")
    assert c.v1.invoices.retrieve(inv.id).status == "paid"
    assert c.v1.subscriptions.retrieve(sub.id).status == "active"
    assert "invoice.paid" in event_types(c)
