"""Password reset by email: the token mechanics and the sending hook.

`request_reset(email)` makes a one-time link (only its SHA-256 is stored; valid RESET_LIFETIME)
and hands it to the sender registered with `set_sender`: at start-up the backend registers
`notifications.hooks.send_password_reset` (the outbox; billing_app/billing_app.py). Without a
sender nothing is sent and the request is only logged (without the link). `reset_password` uses a
link once, sets the new password, ends every session of the user and revokes their API tokens
(whoever had the account may have minted one: recovery must shut them out too). The pages are
/forgot and /reset?token=... (pages/password_reset.py); both answer the same way for unknown emails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import and_
from sqlmodel import delete, select

from billing_app.auth.accounts import end_other_sessions, normalize_email, store_password_hash
from billing_app.auth.passwords import check_strength, hash_password
from billing_app.auth.api_tokens import revoke_all
from billing_app.auth.tokens import new_token, token_hash
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import PasswordReset, User, utcnow
from billing_app.settings import get_settings

log = logging.getLogger(__name__)
RESET_LIFETIME = timedelta(hours=1)
RESET_PATH = "/reset"
Sender = Callable[[str, str], None]
_sender: Sender | None = None


def set_sender(sender: Sender | None) -> None:
    """Register how a reset link reaches its user: sender(email, url). Notifications call this."""
    global _sender
    _sender = sender


def request_reset(email: str) -> None:
    """Send a reset link when the email has an account; the same (silent) outcome when not."""
    try:
        email = normalize_email(email)
    except AppError:
        return
    with session_scope() as session:
        user = session.exec(select(User).where(User.email == email)).first()
        if user is None:
            return
        token = new_token("reset")
        session.add(PasswordReset(token_hash=token_hash(token), user_id=user.id, expires_at=utcnow() + RESET_LIFETIME))
    if _sender is None:
        log.warning("password reset requested for user %s, but no sender is configured (notifications)", user.id)
        return
    _sender(email, get_settings().url(f"{RESET_PATH}?token={token}"))


INVALID_LINK = "This reset link is invalid or has expired. Ask for a new one."


def _live_link(hashed: str):
    return and_(PasswordReset.token_hash == hashed, PasswordReset.used_at.is_(None), PasswordReset.expires_at > utcnow())


def reset_password(token: str, new_password: str) -> None:
    """Use a reset link once: set the password, end every session, revoke every API token.
    Runs argon2: not on the event loop."""
    check_strength(new_password if isinstance(new_password, str) else "")
    link = _live_link(token_hash(token or ""))
    with session_scope() as session:
        if session.exec(select(PasswordReset.id).where(link)).first() is None:  # argon2 only for a live link
            raise AppError(ErrorCode.INVALID_SESSION, INVALID_LINK)
    new_hash = hash_password(new_password)  # before the claim, so no lock waits on argon2
    with session_scope() as session:
        # Claimed by deleting it: of two uses at once, one deletes the row and the other finds none
        # (on SQLite too, which ignores FOR UPDATE); its password is the one kept.
        user_id = session.execute(delete(PasswordReset).where(link).returning(PasswordReset.user_id)).scalar_one_or_none()
        if user_id is None:
            raise AppError(ErrorCode.INVALID_SESSION, INVALID_LINK)
        user = session.get(User, user_id)
        store_password_hash(session, user, new_hash)  # also removes the user's other reset links
        end_other_sessions(session, user.id)
        revoke_all(session, user.id)
