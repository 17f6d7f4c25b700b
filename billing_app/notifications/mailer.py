"""Rendering (Jinja2: HTML and plain text, one layout) and sending over SMTP.

SMTP_URL: `smtp://user:pass@host:587` speaks STARTTLS (required: a server that does not offer it
is refused, so credentials and mail never travel in clear text, except to a loopback host, where
STARTTLS is used when offered); `smtps://host:465` is TLS from the first byte. The certificate and
host name are always verified (Python's default context: the system's CAs, or the standard
SSL_CERT_FILE variable for a private CA).
"""

from __future__ import annotations

import ipaddress
import smtplib
import socket
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from billing_app.notifications.kinds import Kind
from billing_app.settings import get_settings

TEMPLATES = Path(__file__).parent / "templates"
SMTP_TIMEOUT_SECONDS = 20  # each reply's; a whole message has the connection's deadline (see SmtpConnection)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


SUBJECTS = {
    Kind.INVITATION: "You are invited to join {org_name}",
    Kind.PASSWORD_RESET: "Reset your password",
    Kind.TRIAL_ENDING: "Your trial ends on {trial_end}",
    Kind.PAYMENT_FAILED: "Payment failed: update your payment method",
    Kind.PAYMENT_ACTION_REQUIRED: "Your bank needs you to confirm a payment",
    Kind.RECEIPT: "Receipt: {amount} paid",
    Kind.SUBSCRIPTION_CANCELED: "Your {plan} subscription has ended",
    Kind.CANCEL_SCHEDULED: "Your {plan} subscription will cancel on {ends_on}",
    Kind.PLAN_CHANGED: "You are now on {plan}",
    Kind.SEATS_CHANGED: "Your {plan} plan now has {seats} seats",
}


@lru_cache(maxsize=2)
def _env(autoescape: bool) -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]) if autoescape else False,
        undefined=StrictUndefined,  # a missing value is a bug in the caller, not an empty string in an email
        keep_trailing_newline=True,
    )


def render(kind: Kind, context: dict) -> Rendered:
    settings = get_settings()
    values = {"product_name": settings.product_name, "app_url": settings.url("/"), "optional": kind.optional, **context}
    subject = f"[{settings.product_name}] " + SUBJECTS[kind].format(**values)
    values["subject"] = subject
    html = _env(True).get_template(f"{kind.value}.html").render(values)
    text = _env(False).get_template(f"{kind.value}.txt").render(values).strip()
    text += f"\n\n-- \n{settings.product_name} ({settings.url('/')})\n"
    return Rendered(subject, text, html)


def build_message(to: list[str], rendered: Rendered, *, message_id_key: str | None = None) -> EmailMessage:
    settings = get_settings()
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = ", ".join(to)
    message["Subject"] = " ".join(rendered.subject.split())  # one line: a CR/LF from a name would end the header
    message["Message-ID"] = make_msgid(domain=_domain(settings.mail_from))
    if message_id_key:
        message["X-Notification-Key"] = message_id_key
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message


def _domain(address: str) -> str:
    part = address.rsplit("@", 1)[-1].strip(" >")
    return part or "localhost"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SmtpError(Exception):
    """Sending failed; the text is kept on the outbox row."""


class SmtpConnection:
    """One SMTP session for several messages: a mail pass sends each recipient a message of their
    own, so 500 admins would otherwise cost 500 connections, TLS handshakes and logins (and a
    provider's connection rate limit). Opened at the first message; a failure closes it and the
    next message opens a new one, so a refused or broken message never takes the others with it.

    Each message's whole conversation (STARTTLS and login included) ends within `deadline_seconds`:
    a server answering each of its ~10 replies just inside SMTP_TIMEOUT_SECONDS would otherwise
    hold one message for minutes. Past it the socket is shut, so whatever waits on the server fails
    at once, and the send fails (retried later); the mail worker keeps this below a row's lease, so
    no other worker takes the row while it is being sent. (Opening a connection, before there is a
    socket to shut, is bounded by SMTP_TIMEOUT_SECONDS for the connect and for the greeting.)"""

    def __init__(self, *, deadline_seconds: float) -> None:
        self.deadline_seconds = deadline_seconds
        self._client: smtplib.SMTP | None = None
        self._url: str | None = None
        self._late = False

    def __enter__(self) -> SmtpConnection:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def send(self, smtp_url: str, message: EmailMessage) -> None:
        """Deliver one message through SMTP_URL; raises SmtpError (or OSError) on any failure."""
        self._late = False
        watchdog = threading.Timer(self.deadline_seconds, self._give_up)
        watchdog.start()
        try:
            refused = self._ready(smtp_url).send_message(message)
            if refused:
                raise SmtpError(f"refused recipients: {', '.join(sorted(refused))}")
        except (smtplib.SMTPException, OSError) as error:
            self.close()
            if self._late:
                raise SmtpError(f"no answer within {self.deadline_seconds:g} s; gave up ({type(error).__name__})") from error
            if isinstance(error, smtplib.SMTPException):
                raise SmtpError(f"{type(error).__name__}: {error}") from error
            raise
        except BaseException:
            self.close()
            raise
        finally:
            watchdog.cancel()
            watchdog.join()  # a late watchdog must not shut the next message's connection

    def _give_up(self) -> None:
        """The deadline passed: shut the socket under the waiting call (it then fails at once). The
        plain socket's shutdown, so no TLS state is touched from this thread."""
        self._late = True
        sock = getattr(self._client, "sock", None)
        if sock is not None:
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:  # already closed
                pass

    def _ready(self, smtp_url: str) -> smtplib.SMTP:
        """The connection to send on: the open one while the server still answers it (a provider may
        close a connection after some messages, or an idle one: found by a NOOP, before anything of
        the message is sent, so nothing goes twice), else a new one."""
        if self._client is not None and self._url == smtp_url:
            try:
                if self._client.noop()[0] == 250:
                    return self._client
            except (smtplib.SMTPException, OSError):
                pass
        self.close()
        self._client, self._url = _open(smtp_url), smtp_url
        if self._late:  # the deadline passed while connecting, before there was a socket to shut
            self._give_up()
        try:
            _start(self._client, smtp_url)
        except BaseException:
            client, self._client = self._client, None
            client.close()  # not QUIT: the server may be one we refuse to talk to (no STARTTLS, a wrong certificate)
            raise
        return self._client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.quit()
            except Exception:  # the connection may already be gone; nothing to clean up
                client.close()


def _open(smtp_url: str) -> smtplib.SMTP:
    """A connection to SMTP_URL's server that has greeted us (over TLS already for smtps)."""
    parts = urlsplit(smtp_url)
    if parts.scheme == "smtps":
        context = ssl.create_default_context()
        return smtplib.SMTP_SSL(parts.hostname, parts.port or 465, timeout=SMTP_TIMEOUT_SECONDS, context=context)
    return smtplib.SMTP(parts.hostname, parts.port or 587, timeout=SMTP_TIMEOUT_SECONDS)


def _start(client: smtplib.SMTP, smtp_url: str) -> None:
    """Make an open connection ready to send: TLS as SMTP_URL says (see the module), logged in."""
    parts = urlsplit(smtp_url)
    host = parts.hostname
    client.ehlo()
    if parts.scheme == "smtp":
        if client.has_extn("starttls"):
            client.starttls(context=ssl.create_default_context())
            client.ehlo()
        elif not _is_loopback(host):
            raise SmtpError(f"{host} does not offer STARTTLS; refusing to send in clear text")
    if parts.username:
        client.login(unquote(parts.username), unquote(parts.password or ""))
