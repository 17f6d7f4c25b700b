"""Factories for the notification tests: a real SMTP server (aiosmtpd) and webhook redelivery."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import json
import ssl
import time
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.sandbox_fixture import free_port


def tls_server(tmp_path) -> tuple[ssl.SSLContext, str]:
    """A throwaway CA (trustme) and a server certificate for 127.0.0.1: the server's TLS context and
    the CA's PEM file, which a client must trust (SSL_CERT_FILE) to accept the server."""
    import trustme

    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    tmp_path.mkdir(parents=True, exist_ok=True)
    ca_file = tmp_path / "smtp-test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return context, str(ca_file)


@dataclass
class Received:
    to: list[str]
    message: email.message.EmailMessage
    tls: str | None = None  # the TLS version the message travelled under, None in clear text
    login: str | None = None  # the user the client logged in as
    connection: tuple | None = None  # the client's (address, port): one per SMTP connection

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
    """aiosmtpd on a free 127.0.0.1 port; `stop()` and `start()` simulate an outage.

    With `tls` (a server ssl.SSLContext, see `tls_server`): STARTTLS is offered and required, or,
    with `implicit_tls`, TLS from the first byte (smtps). With `login`: AUTH is required, only over
    TLS, and only this (user, password) is accepted.
    """

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    tls: ssl.SSLContext | None = None
    implicit_tls: bool = False
    login: tuple[str, str] | None = None
    logins_refused: int = 0
    _controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's handler API)
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        tls = server.transport.get_extra_info("ssl_object")
        login = session.auth_data.login.decode() if session.authenticated else None
        self.received.append(Received(list(envelope.rcpt_tos), message, tls.version() if tls else None, login, session.peer))
        return "250 OK"

    def _authenticate(self, _server, _session, _envelope, _mechanism, data) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login.decode(), data.password.decode()) == self.login
        self.logins_refused += not ok
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)  # aiosmtpd answers 535

    def start(self) -> None:
        options: dict = {}
        if self.tls is not None and self.implicit_tls:
            options["ssl_context"] = self.tls
        elif self.tls is not None:
            options.update(tls_context=self.tls, require_starttls=True)
        if self.login is not None:
            # With STARTTLS, AUTH is not even offered in clear text.
            options.update(auth_required=True, authenticator=self._authenticate)
            # aiosmtpd counts only STARTTLS as TLS for AUTH; on an smtps socket everything is TLS already.
            options["auth_require_tls"] = not self.implicit_tls
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, **options)
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


@dataclass
class RefusingServer(SmtpServer):
    """Accepts every recipient but `bad` (a typo in the billing email, a full mailbox): 550 for it."""

    bad: str = "bounce@example.com"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address == self.bad:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@dataclass
class ClosingServer(SmtpServer):
    """Like providers that cap messages per connection (or drop an idle one): after `per_connection`
    messages on a connection the server closes it (the client finds out at its next command)."""

    per_connection: int = 2

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's handler API)
        answer = await super().handle_DATA(server, session, envelope)
        if sum(1 for r in self.received if r.connection == session.peer) >= self.per_connection:
            asyncio.get_running_loop().call_soon(server.transport.close)
        return answer


@dataclass
class CappedServer(SmtpServer):
    """Like most providers: at most `cap` recipients per message, 452 for the rest."""

    cap: int = 100

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if len(envelope.rcpt_tos) >= self.cap:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@dataclass
class StallingServer(SmtpServer):
    """A loaded relay: at the end of the first message's DATA it runs `meanwhile` (in a thread)
    before it answers, while the client waits for the 250."""

    meanwhile: object = None
    _stalled: bool = False

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's handler API)
        if not self._stalled:
            self._stalled = True
            await asyncio.to_thread(self.meanwhile)
        return await super().handle_DATA(server, session, envelope)


def signed(event: dict, secret: str) -> tuple[str, dict]:
    """The body and headers Stripe would send for this event."""
    body = json.dumps(event)
    timestamp = int(time.time())
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={timestamp},v1={digest}", "Content-Type": "application/json"}


WEBHOOK_SECRET = "whsec_notifications_test"  # the webhook_client fixture's


def deliver(webhook_client, sandbox, smtp, rounds: int = 2, times: int = 5) -> None:
    """Every event so far, `times` times per round, the webhook worker draining between rounds; then
    the mail worker sends to `smtp`."""
    from billing_app.notifications.worker import MailWorker
    from billing_app.webhooks.worker import Worker

    for _ in range(rounds):
        redeliver_all(webhook_client, sandbox, WEBHOOK_SECRET, times=times)
        Worker(ingest_busy=None).drain()
    MailWorker(smtp_url=smtp.url).drain()


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
