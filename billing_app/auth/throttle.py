"""Login throttling: growing delays per (email, client) and per client, never a lock for everyone.

A *client* is a device that signed in to this email before (its device cookie, `d:<hash>`) or
else the address the attempt came from (`ip:<addr>`). Each attempt is counted, atomically and
before the password is checked, under up to three keys:

    ec:<email>|<client>   this email from this client             LOGIN_MAX_FAILURES free
    c:<client>            this client, over all emails (spraying)   LOGIN_CLIENT_MAX_FAILURES free
    e:<email>             this email from clients it never used     LOGIN_EMAIL_MAX_FAILURES free
                          (not counted for a known device, so the owner is never locked out
                          by someone else's guesses)

Past its free allowance a key makes the next attempt wait, 5 s doubling per failure up to
LOGIN_WINDOW_MINUTES. A success clears its (email, client) key and takes back its count from the
others. Rows untouched for a day are purged (`purge`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from billing_app.errors import ErrorCode, RateLimited
from billing_app.models import LoginThrottle, utcnow
from billing_app.settings import get_settings

BASE_DELAY_SECONDS = 5
MEMORY = timedelta(days=1)  # a key quiet this long starts again from zero, and is purged
PURGE_EVERY_SECONDS = 600
_last_purge = 0.0


@dataclass(frozen=True)
class Key:
    value: str
    free: int


def keys_for(email: str, client: str, *, known_device: bool) -> list[Key]:
    settings = get_settings()
    keys = [Key(f"ec:{email}|{client}", settings.login_max_failures), Key(f"c:{client}", settings.login_client_max_failures)]
    if not known_device:
        keys.append(Key(f"e:{email}", settings.login_email_max_failures))
    return keys


def delay_after(failures: int, free: int) -> timedelta:
    """How long the next attempt waits once `failures` reached the free allowance."""
    cap = get_settings().login_window_minutes * 60
    exponent = min(failures - free, 32)
    return timedelta(seconds=min(BASE_DELAY_SECONDS * 2**exponent, cap))


def reserve(session: Session, keys: list[Key]) -> None:
    """Count one attempt under every key, or raise TOO_MANY_ATTEMPTS (429) when one says wait.

    Committed at once on the caller's connection, so the count stands even though a refused
    login rolls the rest back. Each key is one conditional UPDATE: parallel attempts cannot all
    slip under an allowance, and the one that reaches it sets a hold in the same statement.
    """
    now = utcnow()
    table = LoginThrottle.__table__
    stale = table.c.updated_at < now - MEMORY
    for key in keys:
        _ensure_row(session, key.value, now)
        after = case((stale, 1), else_=table.c.failures + 1)
        failures = session.execute(
            update(table)
            .where(table.c.key == key.value)
            .where(stale | (table.c.failures < key.free) | (table.c.next_allowed_at <= now))
            .values(
                failures=after,
                next_allowed_at=case((after >= key.free, now + delay_after(key.free, key.free)), else_=None),
                updated_at=now,
            )
            .returning(table.c.failures)
        ).scalar_one_or_none()
        if failures is None:
            wait = session.execute(select(table.c.next_allowed_at).where(table.c.key == key.value)).scalar_one_or_none()
            # Attempts already counted under earlier keys stay counted: a refused attempt is still an attempt.
            session.commit()
            seconds = math.ceil((wait - now).total_seconds()) if wait else 1
            raise RateLimited(seconds, _message(seconds), code=ErrorCode.TOO_MANY_ATTEMPTS)
        if failures > key.free:
            session.execute(update(table).where(table.c.key == key.value).values(next_allowed_at=now + delay_after(failures, key.free)))
    session.commit()
    _maybe_purge(session)


def _ensure_row(session: Session, key: str, now: datetime) -> None:
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    values = {"key": key, "failures": 0, "next_allowed_at": None, "updated_at": now}
    session.execute(insert(LoginThrottle.__table__).values(values).on_conflict_do_nothing(index_elements=["key"]))


def succeeded(session: Session, keys: list[Key]) -> None:
    """The password was right: clear the (email, client) key, take the attempt back from the others."""
    table = LoginThrottle.__table__
    for key in keys:
        if key.value.startswith("ec:"):
            session.execute(delete(table).where(table.c.key == key.value))
            continue
        session.execute(
            update(table)
            .where(table.c.key == key.value, table.c.failures > 0)
            .values(
                failures=table.c.failures - 1,
                next_allowed_at=case((table.c.failures - 1 >= key.free, table.c.next_allowed_at), else_=None),
            )
        )


def purge(session: Session, now: datetime | None = None) -> int:
    """Delete keys untouched for a day; returns how many went."""
    cutoff = (now or utcnow()) - MEMORY
    return session.execute(delete(LoginThrottle.__table__).where(LoginThrottle.__table__.c.updated_at < cutoff)).rowcount or 0


def _maybe_purge(session: Session) -> None:
    global _last_purge
    if time.monotonic() - _last_purge < PURGE_EVERY_SECONDS:
        return
    _last_purge = time.monotonic()
    purge(session)
    session.commit()


def _message(seconds: int) -> str:
    if seconds >= 90:
        return f"Too many failed attempts. Try again in {math.ceil(seconds / 60)} minutes."
    return f"Too many failed attempts. Try again in {seconds} seconds."
