"""Writing the outbox: a rendered message, keyed per (kind, cause), in the caller's transaction.

`enqueue` takes the caller's session so the notification commits (or rolls back) with the change
that causes it; one row per recipient, keyed per (kind, cause, recipient), and INSERT ... ON
CONFLICT DO NOTHING on `key` makes repeats (a webhook delivered five times, a second sync) a
no-op. `org_recipients` is who hears about an org's billing: the billing email (the Stripe
customer's) and the admins, minus admins who turned an optional kind off. `cancel` withdraws a
message not sent yet (a revoked invitation's), in the caller's transaction too.
"""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, select

from billing_app.models import Membership, Notification, NotificationOptOut, Role, User, utcnow
from billing_app.notifications import mailer
from billing_app.notifications.kinds import Kind, OPTIONAL
from billing_app.notifications.worker import CANCELED, CLEARED_BODY, PENDING

KEY_MAX = 255
DIGEST_CHARS = 16


def recipient_key(kind: Kind, key: str, address: str) -> str:
    """The row's key for one recipient: (kind, cause) and a digest of the address, so repeats of a
    cause still write nothing new, per recipient (the digest keeps its place whatever the cause's length)."""
    digest = hashlib.sha256(address.encode()).hexdigest()[:DIGEST_CHARS]
    return f"{f'{kind.value}:{key}'[:KEY_MAX - DIGEST_CHARS - 1]}:{digest}"


def rows(kind: Kind, key: str, to: list[str], context: dict, *, org_id: int | None = None) -> list[dict]:
    """The rows for one rendered message: one per recipient (empty when nobody is to receive it).

    Each recipient gets a message of their own, sent, retried and failed on its own: one refused
    address never resends to the others, no provider's recipient cap applies, and nobody sees who
    else received it.
    """
    to = list(dict.fromkeys(_address(a) for a in to if a and a.strip()))
    if not to:
        return []
    rendered = mailer.render(kind, context)
    now = utcnow()
    return [
        {
            "key": recipient_key(kind, key, address), "kind": kind.value, "org_id": org_id,
            "recipients": json.dumps([address]), "subject": rendered.subject[:255], "text_body": rendered.text,
            "html_body": rendered.html, "created_at": now, "state": "pending", "attempts": 0, "next_attempt_at": None,
        }
        for address in to
    ]


def _address(address: str) -> str:
    return address.strip().lower()


def cancel(session: Session, kind: Kind, key: str, address: str) -> None:
    """Withdraw the message of (kind, cause) to `address` unless it went already: it is never sent,
    and its body (an invitation link) is cleared. One being sent now is let go too: its lease is
    cleared, so the sending pass records no outcome and nothing retries it."""
    session.execute(
        update(Notification)
        .where(Notification.key == recipient_key(kind, key, _address(address)), Notification.state == PENDING)
        .values(state=CANCELED, claimed_until=None, next_attempt_at=None, **CLEARED_BODY)
    )


def enqueue(session: Session, kind: Kind, key: str, to: list[str], context: dict, *, org_id: int | None = None) -> bool:
    """Add one message per recipient to the outbox unless its key is already there. False when nobody is to receive it."""
    new = rows(kind, key, to, context, org_id=org_id)
    insert_rows(session, new)
    return bool(new)


def insert_rows(connection, rows: list[dict]) -> None:
    """INSERT ... ON CONFLICT (key) DO NOTHING, on a Session or a Core connection (the webhook worker's)."""
    if not rows:
        return
    dialect = connection.get_bind().dialect if isinstance(connection, Session) else connection.dialect
    insert = pg_insert if dialect.name == "postgresql" else sqlite_insert
    for row in rows:
        connection.execute(insert(Notification.__table__).values(**row).on_conflict_do_nothing(index_elements=["key"]))


def org_recipients(session: Session, org_id: int, kind: Kind, billing_email: str | None = None) -> list[str]:
    """The billing email and the org's admins, without admins who opted out of this (optional) kind.

    The billing email is the Stripe customer's, usually the admin who bought: when it is a
    registered user's address it is that user, sent to only while they are an admin of this org
    and have not opted out (a removed or demoted buyer hears nothing more); an address that is
    nobody's account here (accounting@, set in the portal) is always sent to. No address twice.
    """
    admin_roles = [Role.ADMIN.value, Role.SUPER_ADMIN.value]
    query = (
        select(User.id, User.email)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.org_id == org_id, Membership.role.in_(admin_roles))
        .order_by(User.id)
    )
    admins = session.exec(query).all()
    opted_out: set[int] = set()
    if kind.optional:
        opted_out = set(session.exec(
            select(NotificationOptOut.user_id).where(NotificationOptOut.org_id == org_id, NotificationOptOut.kind == kind.preference.value)
        ).all())
    receiving = {user_id for user_id, _ in admins if user_id not in opted_out}
    emails: list[str] = []
    billing = (billing_email or "").strip().lower()
    if billing:
        owner = session.exec(select(User.id).where(User.email == billing)).first()  # users' emails are lower-cased
        if owner is None or owner in receiving:
            emails.append(billing)
    emails += [email for user_id, email in admins if user_id in receiving]
    return list(dict.fromkeys(e.strip().lower() for e in emails))


def preferences(session: Session, user_id: int, org_id: int) -> dict[str, bool]:
    """The optional kinds and whether this admin receives each (default: yes)."""
    off = set(session.exec(
        select(NotificationOptOut.kind).where(NotificationOptOut.user_id == user_id, NotificationOptOut.org_id == org_id)
    ).all())
    return {kind.value: kind.value not in off for kind in sorted(OPTIONAL, key=lambda k: k.value)}


def set_preference(session: Session, user_id: int, org_id: int, kind: Kind, receive: bool) -> None:
    """Turn an optional kind on or off for one admin of one org; always-sent kinds cannot be turned off."""
    if kind not in OPTIONAL:
        raise ValueError(f"{kind.value} is always sent")
    row = session.exec(select(NotificationOptOut).where(
        NotificationOptOut.user_id == user_id, NotificationOptOut.org_id == org_id, NotificationOptOut.kind == kind.value,
    )).first()
    if receive and row is not None:
        session.delete(row)
    elif not receive and row is None:
        session.add(NotificationOptOut(user_id=user_id, org_id=org_id, kind=kind.value))
