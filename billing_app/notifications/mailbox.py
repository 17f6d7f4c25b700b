"""Reading the outbox as a mailbox: what /dev/mail shows (no SMTP_URL, and development mode only)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, select

from billing_app.models import Notification
from billing_app.settings import get_settings

MAILBOX_LIMIT = 200


def dev_mail_enabled() -> bool:
    """/dev/mail exists only while nothing is sent (no SMTP_URL: real mail is the recipients'
    business, reset links included) and in development (`make run`, `reflex run` without
    --env prod). Never in a production build, whatever Stripe it talks to: the page asks nobody
    who they are (a developer reads a reset mail signed out), so a `serve --prod` demo on the
    sandbox would hand every visitor every reset and invitation link."""
    from reflex.utils.exec import is_prod_mode

    return get_settings().smtp_url is None and not is_prod_mode()


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
