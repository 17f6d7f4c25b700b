"""Factories for the notification tests: a real SMTP server (aiosmtpd) and webhook redelivery."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller

from tests.sandbox_fixture import free_port


@dataclass
class Received:
    to: list[str]
    message: email.message.EmailMessage

    @property
    def subject(self) -> str:
        return self.message["Subject"]

    @property
    def key(self) -> str:
        return "".join(str(self.message["X-Notification-Key"]).split())  # a long header comes folded

    @property
    def kind(self) -> str:
        return self.key.split(":", 1)[0]

    def part(self, subtype: str) -> str:
        return self.message.get_body(preferencelist=(subtype,)).get_content()


@dataclass
class SmtpServer:
    """aiosmtpd on a free 127.0.0.1 port; `stop()` and `start()` simulate an outage."""

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    _controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_DATA(self, _server, _session, envelope):  # noqa: N802 (aiosmtpd's handler API)
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        self.received.append(Received(list(envelope.rcpt_tos), message))
        return "250 OK"

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def kinds(self) -> list[str]:
        """The kinds received, invitations aside (make_org invites its member by email)."""
        return sorted(r.kind for r in self.received if r.kind != "invitation")

    def of_kind(self, kind: str) -> list[Received]:
        return [r for r in self.received if r.kind == kind]


def signed(event: dict, secret: str) -> tuple[str, dict]:
    """The body and headers Stripe would send for this event."""
    body = json.dumps(event)
    timestamp = int(time.time())
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={timestamp},v1={digest}", "Content-Type": "application/json"}


def redeliver_all(client, sandbox, secret: str, times: int = 5) -> int:
    """Post every event the sandbox recorded to the webhook route, `times` times each; how many events."""
    events = _raw_events(sandbox)
    for _ in range(times):
        for event in events:
            body, headers = signed(event, secret)
            response = client.post("/api/stripe/webhook", content=body, headers=headers)
            assert response.status_code == 200, response.text
    return len(events)


def _raw_events(sandbox) -> list[dict]:
    """Every event as Stripe's JSON (oldest first), read over HTTP as a webhook would carry it."""
    import httpx

    events: list[dict] = []
    params = {"limit": 100}
    while True:
        page = httpx.get(f"{sandbox.base_url}/v1/events", params=params, headers={"Authorization": f"Bearer {sandbox.api_key}"}).json()
        events += page["data"]
        if not page.get("has_more"):
            return list(reversed(events))
        params["starting_after"] = page["data"][-1]["id"]
