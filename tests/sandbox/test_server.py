"""The sandbox as a process: start-up time, loopback binding, --data persistence, CLI checks."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time

import httpx
import stripe

from tests.sandbox.helpers import SUCCESS, catalog
from tests.sandbox_fixture import ROOT, free_port, start_sandbox, stop, wait_until_up


def test_starts_in_under_two_seconds_on_loopback():
    port = free_port()
    t0 = time.monotonic()
    proc = start_sandbox(port)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", proc)
        assert time.monotonic() - t0 < 2.0
        # Bound to loopback only: the port is not open on another local address of this machine.
        addrs = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)} - {"127.0.0.1", "127.0.1.1"}
        for addr in addrs:
            with socket.socket() as s:
                s.settimeout(0.5)
                assert s.connect_ex((addr, port)) != 0, f"sandbox reachable on {addr}"
    finally:
        stop(proc)


def test_data_file_survives_restart(tmp_path):
    data = tmp_path / "sandbox.json"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_sandbox(port, "--data", str(data))
    try:
        wait_until_up(url, proc)
        c = stripe.StripeClient("sk_test_persist", base_addresses={"api": url})
        prod = c.v1.products.create(params={"name": "kept"})
        price = c.v1.prices.create(params={"product": prod.id, "currency": "eur", "unit_amount": 700, "recurring": {"interval": "month"}})
        cust = c.v1.customers.create(params={"email": "keep@x.test"})
        cs = c.v1.checkout.sessions.create(params={"mode": "subscription", "customer": cust.id, "success_url": "http://app.test/",
                                                   "line_items": [{"price": price.id, "quantity": 1}]})
        c.raw_request("post", f"/v1/test_helpers/checkout/sessions/{cs.id}/complete")
    finally:
        stop(proc)  # SIGTERM: a clean shutdown flushes the file
    assert data.exists()
    proc = start_sandbox(port, "--data", str(data))
    try:
        wait_until_up(url, proc)
        c = stripe.StripeClient("sk_test_persist", base_addresses={"api": url})
        assert c.v1.products.retrieve(prod.id).name == "kept"
        cs = c.v1.checkout.sessions.retrieve(cs.id)
        assert cs.status == "complete"
        assert c.v1.subscriptions.retrieve(cs.subscription).status == "active"
        assert c.v1.invoices.list(params={"customer": cust.id}).data[0].status == "paid"
        assert c.v1.events.list(params={"type": "checkout.session.completed"}).data
        # New objects still get fresh ids after a reload.
        assert c.v1.products.create(params={"name": "new"}).id != prod.id
    finally:
        stop(proc)


def test_a_refund_waiting_to_fail_fails_at_its_time_after_a_restart(tmp_path):
    """The refund-failing card's refund is `succeeded` at first; stopped and started again in between,
    the sandbox still fails it, not before its time, with its events."""
    data, port, key, wait = tmp_path / "sandbox.json", free_port(), "sk_test_persist", 4
    url = f"http://127.0.0.1:{port}"
    proc = start_sandbox(port, "--data", str(data))
    try:
        wait_until_up(url, proc)
        httpx.post(f"{url}/_sandbox/config", json={"refund_failure_seconds": wait},
                   headers={"Authorization": f"Bearer {key}"}).raise_for_status()
        c = stripe.StripeClient(key, base_addresses={"api": url})
        _, _, _, one = catalog(c)
        cust = c.v1.customers.create(params={"email": "rf@x.test"})
        cs = c.v1.checkout.sessions.create(params={"mode": "payment", "customer": cust.id, "success_url": SUCCESS,
                                                   "line_items": [{"price": one.id, "quantity": 1}]})
        c.raw_request("post", f"/v1/test_helpers/checkout/sessions/{cs.id}/complete", payment_method="pm_card_refundFail")
        refund = c.v1.refunds.create(params={"payment_intent": c.v1.checkout.sessions.retrieve(cs.id).payment_intent})
        assert refund.status == "succeeded"
    finally:
        stop(proc)  # before the refund fails
    proc = start_sandbox(port, "--data", str(data))
    try:
        wait_until_up(url, proc)
        c = stripe.StripeClient(key, base_addresses={"api": url})
        deadline = time.monotonic() + wait + 10
        while c.v1.refunds.retrieve(refund.id).status != "failed" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert c.v1.refunds.retrieve(refund.id).status == "failed", "the restart forgot the refund's failure"
        assert c.v1.charges.retrieve(refund.charge).amount_refunded == 0
        failed = c.v1.events.list(params={"type": "refund.failed"}).data
        assert [e.data.object.id for e in failed] == [refund.id] and failed[0].created >= refund.created + wait
    finally:
        stop(proc)


def test_without_data_state_is_memory_only(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    for expected in (0, 0):
        proc = start_sandbox(port)
        try:
            wait_until_up(url, proc)
            c = stripe.StripeClient("sk_test_mem", base_addresses={"api": url})
            assert len(c.v1.products.list().data) == expected
            c.v1.products.create(params={"name": "gone after restart"})
        finally:
            stop(proc)


def test_cli_rejects_bad_options():
    for args in (["--chaos", "explode"], ["--webhook-url", "http://x"], ["--webhook-url", "http://x", "--webhook-secret", "nope"]):
        r = subprocess.run([sys.executable, "-m", "billing_app.sandbox", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, args
        assert "error" in r.stderr


def test_sandbox_imports_nothing_else_from_billing_app():
    """The app knows the sandbox only as a URL; the reverse holds too."""
    code = ("import sys, billing_app.sandbox.app, billing_app.sandbox.__main__; "
            "print(sorted(m for m in sys.modules if m.startswith('billing_app') and not m.startswith('billing_app.sandbox') and m != 'billing_app'))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
    for path in (ROOT / "billing_app" / "sandbox").rglob("*.py"):
        assert not re.search(r"^\s*(from|import)\s+billing_app(?!\.sandbox)", path.read_text(), re.M), path


def test_control_routes_need_the_key_and_json(sandbox):
    """A web page cannot reset or reconfigure the sandbox with a cross-site form post."""
    import httpx as plain

    base = sandbox.base_url
    assert plain.post(f"{base}/_sandbox/reset", json={}).status_code == 401  # no key
    form = plain.post(f"{base}/_sandbox/config", data={"chaos": "dup"}, headers={"Authorization": f"Bearer {sandbox.api_key}"})
    assert form.status_code == 415  # a form post, even with the key
    assert plain.get(f"{base}/_sandbox/deliveries").status_code == 401
    assert sandbox.http.get("/_sandbox/deliveries").status_code == 200
    assert plain.get(f"{base}/_sandbox/health").status_code == 200  # readiness stays open
