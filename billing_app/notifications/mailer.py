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
import ssl
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
SMTP_TIMEOUT_SECONDS = 20


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
    next message opens a new one, so a refused or broken message never takes the others with it."""

    def __init__(self) -> None:
        self._client: smtplib.SMTP | None = None
        self._url: str | None = None

    def __enter__(self) -> SmtpConnection:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def send(self, smtp_url: str, message: EmailMessage) -> None:
        """Deliver one message through SMTP_URL; raises SmtpError (or OSError) on any failure."""
        try:
            refused = self._ready(smtp_url).send_message(message)
            if refused:
                raise SmtpError(f"refused recipients: {', '.join(sorted(refused))}")
        except smtplib.SMTPException as error:
            self.close()
            raise SmtpError(f"{type(error).__name__}: {error}") from error
        except BaseException:
            self.close()
            raise

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
        self._client, self._url = _connect(smtp_url), smtp_url
        return self._client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.quit()
            except Exception:  # the connection may already be gone; nothing to clean up
                client.close()


def _connect(smtp_url: str) -> smtplib.SMTP:
    """A connection ready to send: TLS as SMTP_URL says (see the module), logged in."""
    parts = urlsplit(smtp_url)
    host = parts.hostname
    context = ssl.create_default_context()
    if parts.scheme == "smtps":
        client: smtplib.SMTP = smtplib.SMTP_SSL(host, parts.port or 465, timeout=SMTP_TIMEOUT_SECONDS, context=context)
    else:
        client = smtplib.SMTP(host, parts.port or 587, timeout=SMTP_TIMEOUT_SECONDS)
    try:
        client.ehlo()
        if parts.scheme == "smtp":
            if client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
            elif not _is_loopback(host):
                raise SmtpError(f"{host} does not offer STARTTLS; refusing to send in clear text")
        if parts.username:
            client.login(unquote(parts.username), unquote(parts.password or ""))
    except BaseException:
        client.close()
        raise
    return client
