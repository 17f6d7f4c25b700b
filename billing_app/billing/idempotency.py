"""Idempotency keys that outlive one request: a Stripe write that must happen once, whoever retries it.

Stripe keeps its answer under a key for 24 hours and replays it to every request with that key,
a 500 too, and refuses the key with other parameters (`idempotency_error`). A fixed key that got
either would lock its action for a day (an org unable to buy, a double charge not refunded). So a
key has a number, kept in the database: every process sends the same one, which keeps two racing
requests to one effect, and one that gets such an answer moves the key on to the next number. A
500 may still have done its work: each caller's next attempt is safe against that by what Stripe
itself refuses or what the caller reads first (see the callers).
"""

from __future__ import annotations

import hashlib

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from billing_app.billing import gateway
from billing_app.db import session_scope
from billing_app.models import AppMeta


def _meta_key(key: str) -> str:
    return "idempotency:" + hashlib.sha256(key.encode()).hexdigest()[:40]  # AppMeta keys are at most 64 chars


def _number(key: str) -> int:
    with session_scope() as session:
        row = session.get(AppMeta, _meta_key(key))
        return int(row.value) if row else 0


def _move_on(key: str, number: int) -> None:
    """The key's answer is spent: the next attempt anywhere uses number + 1 (once, however many saw it)."""
    try:
        with session_scope() as session:
            if number == 0:
                session.add(AppMeta(key=_meta_key(key), value="1"))
            else:
                session.execute(update(AppMeta).where(AppMeta.key == _meta_key(key), AppMeta.value == str(number))
                                .values(value=str(number + 1)))
    except IntegrityError:
        pass  # another process moved it on first


def _spent(failure: gateway.StripeFailure) -> bool:
    return (failure.status is not None and failure.status >= 500) or failure.code == gateway.IDEMPOTENCY_ERROR


def call_once(fn, *args, key: str, **kwargs):
    """`gateway.call` under the idempotency key `key` (its current number appended after the first)."""
    number = _number(key)
    try:
        return gateway.call(fn, *args, options={"idempotency_key": f"{key}-{number}" if number else key}, **kwargs)
    except gateway.StripeFailure as failure:
        if _spent(failure):
            _move_on(key, number)
        raise
