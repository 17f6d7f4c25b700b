"""Who may use the operator console.

An operator is a user with `is_operator`, granted only on the command line
(`python -m billing_app grant-operator EMAIL`); it has nothing to do with org roles. Every
/ops page state and every /api/ops route calls one of the functions here on the server. A
visitor, a member or an org admin gets NOT_FOUND, never FORBIDDEN: the console's existence is
not advertised.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, select

from billing_app.auth import accounts
from billing_app.auth.accounts import Actor
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import User
from billing_app.ops import audit

NOT_FOUND_MESSAGE = "Page not found."


@dataclass(frozen=True)
class Operator:
    user_id: int
    email: str


def not_found() -> AppError:
    return AppError(ErrorCode.NOT_FOUND, NOT_FOUND_MESSAGE)


def _operator(user: User | None) -> Operator:
    if user is None or not user.is_operator:
        raise not_found()
    return Operator(user.id, user.email)


def operator_of(session: Session, actor: Actor | None) -> Operator:
    """The actor as an operator (re-read from the database), or NOT_FOUND."""
    return _operator(session.get(User, actor.user_id) if actor is not None else None)


def operator_of_session_hash(session_hash: str) -> Operator:
    """For each round of a console page's live loop: the operator signed in with this session (the
    SHA-256 pages hold) now, or NOT_FOUND. One query; the session's "last seen" stays."""
    with session_scope() as session:
        try:
            return _operator(accounts.user_of_session(session, session_hash))
        except AppError:
            raise not_found() from None


def operator_for_session(token: str | None) -> Operator:
    """For pages and the cookie-authenticated downloads: the browser session's operator, or NOT_FOUND."""
    with session_scope() as session:
        try:
            actor = accounts.actor_for_session(session, token or "")
        except AppError:
            raise not_found() from None
        return operator_of(session, actor)


def set_operator(email: str, value: bool) -> str:
    """grant-operator / revoke-operator: the normalised email; USER_NOT_FOUND for an unknown one."""
    email = accounts.normalize_email(email)
    with session_scope() as session:
        user = session.exec(select(User).where(User.email == email)).first()
        if user is None:
            raise AppError(ErrorCode.USER_NOT_FOUND, f"No account uses {email}.")
        changed = user.is_operator != value
        user.is_operator = value
        session.add(user)
        if changed:
            audit.record(session, None, audit.GRANT if value else audit.REVOKE, f"user:{user.id}", email)
    return email
