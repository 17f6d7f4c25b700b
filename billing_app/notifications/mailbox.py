"""Reading the outbox as a mailbox: what /dev/mail shows (no SMTP_URL, and development or sandbox mode)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, select

from billing_app.models import Notification
from billing_app.settings import get_settings

MAILBOX_LIMIT = 200


def dev_mail_enabled() -> bool:
    """/dev/mail exists only while nothing is sent (no SMTP_URL: real mail is the recipients'
    business, reset links included) and in development (`reflex run` without --env prod) or with
    the sandbox as Stripe."""
    from reflex.utils.exec import is_prod_mode

    settings = get_settings()
    if settings.smtp_url is not None:
        return False
    return not is_prod_mode() or settings.stripe_api_base is not None


@dataclass
class MailRow:
    id: str = ""
    kind: str = ""
    recipients: str = ""
    subject: str = ""
    created: str = ""
    state: str = ""


@dataclass
class MailDetail:
    id: str = ""
    recipients: str = ""
    subject: str = ""
    state: str = ""
    text: str = ""
    html: str = ""
    error: str = ""


def _row(n: Notification) -> MailRow:
    return MailRow(str(n.id), n.kind, ", ".join(n.to), n.subject, n.created_at.strftime("%Y-%m-%d %H:%M:%S UTC"), n.state)


def latest(session: Session, limit: int = MAILBOX_LIMIT) -> list[MailRow]:
    rows = session.exec(select(Notification).order_by(Notification.id.desc()).limit(limit)).all()
    return [_row(n) for n in rows]


def detail(session: Session, notification_id: int) -> MailDetail | None:
    n = session.get(Notification, notification_id)
    if n is None:
        return None
    return MailDetail(str(n.id), ", ".join(n.to), n.subject, n.state, n.text_body, n.html_body, n.last_error or "")
