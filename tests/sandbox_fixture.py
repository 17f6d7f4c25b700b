"""Pytest plugin: the offline Stripe sandbox as a subprocess, reset before each test.

Fixtures
- ``sandbox_server`` (session): ``python -m billing_app.sandbox`` on a free 127.0.0.1 port.
- ``sandbox`` (function): resets the sandbox's state and settings, yields an object with
  ``.base_url``, ``.api_key`` ("sk_test_sandbox") and ``.client`` (a ``stripe.StripeClient``
  pointed at it), plus helpers to register a webhook endpoint and change sandbox settings.
- ``webhook_receiver`` (function): a local HTTP server that records signed deliveries.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "sk_test_sandbox"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen | None = None, timeout: float = 15.0) -> float:
    """Poll the sandbox's health route; returns seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"sandbox exited with {proc.returncode}: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(url + "/_sandbox/health", timeout=0.5).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"sandbox at {url} did not answer within {timeout}s")


def start_sandbox(port: int, *extra: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "billing_app.sandbox", "--port", str(port), *extra],
        cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM (a clean shutdown flushes --data), SIGKILL if it hangs."""
    from billing_app.serve import stop as stop_processes

    stop_processes([proc])


@dataclass
class SandboxServer:
    base_url: str
    proc: subprocess.Popen
    recording: Path  # every request, answer and event of the run (tests/conformance checks it)


@dataclass
class Sandbox:
    base_url: str
    api_key: str
    client: object
    http: httpx.Client = field(repr=False)

    def reset(self) -> None:
        self.http.post("/_sandbox/reset", json={}).raise_for_status()

    def configure(self, **settings) -> dict:
        """Change sandbox settings (see README: webhook_retry_schedule, chaos, payment_retry_days, ...)."""
        r = self.http.post("/_sandbox/config", json=settings)
        r.raise_for_status()
        return r.json()

    def register_webhook(self, url: str, events: list[str] | None = None):
        """POST /v1/webhook_endpoints through the SDK; returns the endpoint (with .secret)."""
        return self.client.v1.webhook_endpoints.create(params={"url": url, "enabled_events": events or ["*"]})

    def raw(self, method: str, path: str, **params):
        """Call a sandbox-only API route (e.g. the checkout test helper) and get a StripeObject."""
        resp = self.client.raw_request(method, path, **params)
        return self.client.deserialize(resp, api_mode="V1")

    def complete_checkout(self, session_id: str, payment_method: str = "pm_card_visa", **extra):
        return self.raw("post", f"/v1/test_helpers/checkout/sessions/{session_id}/complete", payment_method=payment_method, **extra)

    def deliveries(self) -> dict:
        return self.http.get("/_sandbox/deliveries").json()


@pytest.fixture(scope="session")
def sandbox_server(tmp_path_factory):
    port = free_port()
    recording = tmp_path_factory.mktemp("sandbox") / "recording.jsonl"
    proc = start_sandbox(port, "--record", str(recording))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, proc)
        yield SandboxServer(url, proc, recording)
    finally:
        stop(proc)


@pytest.fixture
def sandbox(sandbox_server):
    import stripe

    # The control routes (/_sandbox/*) take the sandbox key, like the API.
    http = httpx.Client(base_url=sandbox_server.base_url, timeout=30, headers={"Authorization": f"Bearer {API_KEY}"})
    client = stripe.StripeClient(API_KEY, base_addresses={"api": sandbox_server.base_url}, max_network_retries=0)
    sb = Sandbox(sandbox_server.base_url, API_KEY, client, http)
    sb.reset()
    yield sb
    http.close()


# --- a webhook receiver ------------------------------------------------------------------------------
class WebhookReceiver:
    """Records deliveries; ``fail_next(n)`` answers 500 to the next n, ``slow`` delays replies."""

    def __init__(self):
        self.deliveries: list[dict] = []
        self._cv = threading.Condition()
        self._fail = 0
        self.slow = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._cv:
                    failing = receiver._fail > 0
                    if failing:
                        receiver._fail -= 1
                if receiver.slow:
                    time.sleep(receiver.slow)
                status = 500 if failing else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
                with receiver._cv:
                    receiver.deliveries.append({"body": body.decode(), "signature": self.headers.get("Stripe-Signature"),
                                                "status": status, "event": json.loads(body)})
                    receiver._cv.notify_all()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def fail_next(self, n: int) -> None:
        with self._cv:
            self._fail = n

    def events(self, ok_only: bool = True) -> list[dict]:
        with self._cv:
            return [d["event"] for d in self.deliveries if d["status"] == 200 or not ok_only]

    def wait_for(self, predicate, timeout: float = 10.0, what: str = "delivery"):
        """Wait until some accepted delivery's event satisfies ``predicate``; returns that delivery."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for d in self.deliveries:
                    if d["status"] == 200 and predicate(d["event"]):
                        return d
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [d["event"]["type"] for d in self.deliveries]
                    raise AssertionError(f"no {what} within {timeout}s; got {seen}")
                self._cv.wait(left)

    def wait_for_type(self, type_: str, timeout: float = 10.0, **data_match):
        def pred(ev):
            if ev["type"] != type_:
                return False
            obj = ev["data"]["object"]
            return all(obj.get(k) == v for k, v in data_match.items())
        return self.wait_for(pred, timeout, what=type_)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_receiver():
    r = WebhookReceiver()
    yield r
    r.close()
