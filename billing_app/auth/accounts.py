"""Accounts: register, log in and out, sessions, members and roles.

Every function takes the acting user's context and checks it here, on the
server, so pages and API routes cannot skip a check by forgetting it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy import case, update
from sqlmodel import Session, delete, select

from billing_app.auth.passwords import check_strength, hash_password, verify_password
from billing_app.auth.tokens import new_token, token_hash
from billing_app.db import insert_if_absent
from billing_app.errors import AppError, ErrorCode
from billing_app.models import AuthSession, LoginThrottle, Membership, Organization, Role, User, utcnow
from billing_app.settings import get_settings

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
BAD_LOGIN = "Incorrect email or password."


def normalize_email(email: str) -> str:
    email = (email or "").strip().lower()
    if not EMAIL_RE.match(email) or len(email) > 254:
        raise AppError(ErrorCode.VALIDATION_ERROR, "Enter a valid email address.")
    return email


@dataclass(frozen=True)
class OrgChoice:
    id: int
    name: str
    role: Role


@dataclass(frozen=True)
class Actor:
    """Who is acting, and as which role in which organization (from the server's records)."""

    user_id: int
    email: str
    name: str
    org_id: int | None
    org_name: str
    role: Role | None

    def require_org(self) -> int:
        if self.org_id is None:
            raise AppError(ErrorCode.NO_ORGANIZATION, "You are not a member of any organization.")
        return self.org_id

    def require_role(self, role: Role) -> int:
        org_id = self.require_org()
        if self.role is None or not self.role.at_least(role):
            raise AppError(ErrorCode.FORBIDDEN, "Only an organization admin can do that.")
        return org_id

    @property
    def is_admin(self) -> bool:
        return self.role is not None and self.role.at_least(Role.ADMIN)


# --- registration -----------------------------------------------------------


def register(session: Session, *, email: str, password: str, name: str, org_name: str) -> User:
    """Create a user and their organization, the user its admin, in one transaction."""
    email = normalize_email(email)
    check_strength(password)
    org_name = (org_name or "").strip()
    if not org_name:
        raise AppError(ErrorCode.VALIDATION_ERROR, "Enter a name for your organization.")
    if len(org_name) > 120:
        raise AppError(ErrorCode.VALIDATION_ERROR, "Organization name is too long (120 characters at most).")
    if session.exec(select(User.id).where(User.email == email)).first() is not None:
        raise AppError(ErrorCode.EMAIL_TAKEN, "An account with this email already exists. Log in instead.")
    user = User(email=email, name=(name or "").strip()[:120], password_hash=hash_password(password))
    org = Organization(name=org_name)
    session.add(user)
    session.add(org)
    try:
        session.flush()
    except IntegrityError:
        # Two registrations raced for one email; the unique index decided.
        session.rollback()
        raise AppError(ErrorCode.EMAIL_TAKEN, "An account with this email already exists. Log in instead.") from None
    session.add(Membership(user_id=user.id, org_id=org.id, role=Role.ADMIN.value))
    session.flush()
    return user


# --- login, sessions ----------------------------------------------------------


def _reserve_attempt(session: Session, email: str) -> int:
    """Count one login attempt for `email` and return the count in the current window.

    Counted before the password is checked, with one atomic increment, so parallel
    guesses cannot all slip under the limit. It is committed at once (on the caller's
    own connection: a second one would wait on SQLite's write lock), so the count
    stands even though a refused login rolls the rest back.
    """
    now = utcnow()
    window_start = now - timedelta(minutes=get_settings().login_window_minutes)
    table = LoginThrottle.__table__
    expired = table.c.window_started_at < window_start
    insert_if_absent(session, table, ["email"], email=email, failures=0, window_started_at=now)
    count = session.execute(
        update(table)
        .where(table.c.email == email)
        .values(
            failures=case((expired, 1), else_=table.c.failures + 1),
            window_started_at=case((expired, now), else_=table.c.window_started_at),
        )
        .returning(table.c.failures)
    ).scalar_one()
    session.commit()
    return count


def _clear_attempts(session: Session, email: str) -> None:
    session.execute(update(LoginThrottle.__table__).where(LoginThrottle.__table__.c.email == email).values(failures=0))


def authenticate(session: Session, *, email: str, password: str) -> User:
    """The user for these credentials. Attempts are counted per email, known or not."""
    try:
        email = normalize_email(email)
    except AppError:
        raise AppError(ErrorCode.INVALID_CREDENTIALS, BAD_LOGIN) from None
    settings = get_settings()
    # The limit allows max failures; the attempt after them is refused without checking the password.
    if _reserve_attempt(session, email) > settings.login_max_failures:
        raise AppError(
            ErrorCode.TOO_MANY_ATTEMPTS,
            f"Too many failed attempts. Try again in {settings.login_window_minutes} minutes.",
        )
    user = session.exec(select(User).where(User.email == email)).first()
    if not verify_password(user.password_hash if user else None, password if isinstance(password, str) else ""):
        raise AppError(ErrorCode.INVALID_CREDENTIALS, BAD_LOGIN)
    _clear_attempts(session, email)
    return user


def start_session(session: Session, user: User) -> str:
    """A new browser session for the user, in their first organization. Returns the token."""
    token = new_token("sess")
    first = session.exec(
        select(Membership.org_id).where(Membership.user_id == user.id).order_by(Membership.id)
    ).first()
    lifetime = timedelta(hours=get_settings().session_lifetime_hours)
    # Housekeeping: a user's expired sessions go when they next log in.
    session.exec(delete(AuthSession).where(AuthSession.user_id == user.id, AuthSession.expires_at <= utcnow()))
    session.add(AuthSession(token_hash=token_hash(token), user_id=user.id, current_org_id=first, expires_at=utcnow() + lifetime))
    session.flush()
    return token


def login(session: Session, *, email: str, password: str) -> str:
    return start_session(session, authenticate(session, email=email, password=password))


def end_session(session: Session, token: str) -> None:
    row = session.exec(select(AuthSession).where(AuthSession.token_hash == token_hash(token))).first()
    if row is not None:
        session.delete(row)


def _actor(session: Session, user: User, org_id: int | None) -> Actor:
    membership = None
    if org_id is not None:
        membership = session.exec(
            select(Membership).where(Membership.user_id == user.id, Membership.org_id == org_id)
        ).first()
    if membership is None:
        # The org may have been left or removed since; fall back to the first one.
        membership = session.exec(
            select(Membership).where(Membership.user_id == user.id).order_by(Membership.id)
        ).first()
    if membership is None:
        return Actor(user.id, user.email, user.name, None, "", None)
    org = session.get(Organization, membership.org_id)
    return Actor(user.id, user.email, user.name, org.id, org.name, Role(membership.role))


def actor_for_session(session: Session, token: str) -> Actor:
    """The actor behind a browser session token; raises when missing or expired."""
    if not token:
        raise AppError(ErrorCode.UNAUTHENTICATED, "Please log in.")
    row = session.exec(select(AuthSession).where(AuthSession.token_hash == token_hash(token))).first()
    if row is None:
        raise AppError(ErrorCode.UNAUTHENTICATED, "Please log in.")
    if row.expires_at <= utcnow():
        raise AppError(ErrorCode.SESSION_EXPIRED, "Your session has expired. Please log in again.")
    user = session.get(User, row.user_id)
    return _actor(session, user, row.current_org_id)


def organizations_of(session: Session, user_id: int) -> list[OrgChoice]:
    rows = session.exec(
        select(Organization.id, Organization.name, Membership.role)
        .join(Membership, Membership.org_id == Organization.id)
        .where(Membership.user_id == user_id)
        .order_by(Organization.name)
    ).all()
    return [OrgChoice(id, name, Role(role)) for id, name, role in rows]


def switch_org(session: Session, token: str, org_id: int) -> Actor:
    actor = actor_for_session(session, token)
    member = session.exec(
        select(Membership.id).where(Membership.user_id == actor.user_id, Membership.org_id == org_id)
    ).first()
    if member is None:
        raise AppError(ErrorCode.FORBIDDEN, "You are not a member of that organization.")
    row = session.exec(select(AuthSession).where(AuthSession.token_hash == token_hash(token))).one()
    row.current_org_id = org_id
    session.flush()
    return actor_for_session(session, token)


# --- members and roles ----------------------------------------------------------


@dataclass(frozen=True)
class MemberRow:
    user_id: int
    email: str
    name: str
    role: Role


def list_members(session: Session, actor: Actor) -> list[MemberRow]:
    org_id = actor.require_org()
    rows = session.exec(
        select(User.id, User.email, User.name, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.org_id == org_id)
        .order_by(User.email)
    ).all()
    return [MemberRow(uid, email, name, Role(role)) for uid, email, name, role in rows]


def _check_can_grant(actor: Actor, role: Role) -> None:
    if role == Role.SUPER_ADMIN and actor.role != Role.SUPER_ADMIN:
        raise AppError(ErrorCode.FORBIDDEN, "Only a super admin can grant the super admin role.")


def add_member(session: Session, actor: Actor, *, email: str, role: Role = Role.MEMBER) -> MemberRow:
    """Add an existing user to the actor's organization (admins only)."""
    org_id = actor.require_role(Role.ADMIN)
    _check_can_grant(actor, role)
    email = normalize_email(email)
    user = session.exec(select(User).where(User.email == email)).first()
    if user is None:
        raise AppError(ErrorCode.USER_NOT_FOUND, "No account uses this email yet. Ask them to sign up, then add them.")
    exists = session.exec(
        select(Membership.id).where(Membership.user_id == user.id, Membership.org_id == org_id)
    ).first()
    if exists is not None:
        raise AppError(ErrorCode.ALREADY_MEMBER, f"{email} is already a member of this organization.")
    session.add(Membership(user_id=user.id, org_id=org_id, role=role.value))
    session.flush()
    return MemberRow(user.id, user.email, user.name, role)


def change_role(session: Session, actor: Actor, *, user_id: int, role: Role) -> MemberRow:
    """Change a member's role (admins only); the organization always keeps an admin."""
    org_id = actor.require_role(Role.ADMIN)
    _check_can_grant(actor, role)
    # Lock the org's memberships so two demotions cannot both pass the last-admin check.
    memberships = session.exec(
        select(Membership).where(Membership.org_id == org_id).with_for_update()
    ).all()
    target = next((m for m in memberships if m.user_id == user_id), None)
    if target is None:
        raise AppError(ErrorCode.USER_NOT_FOUND, "That user is not a member of this organization.")
    if Role(target.role) == Role.SUPER_ADMIN and actor.role != Role.SUPER_ADMIN:
        raise AppError(ErrorCode.FORBIDDEN, "Only a super admin can change a super admin's role.")
    admins_after = sum(
        1 for m in memberships if Role(role.value if m is target else m.role).at_least(Role.ADMIN)
    )
    if admins_after == 0:
        raise AppError(ErrorCode.LAST_ADMIN, "The organization needs at least one admin. Make someone else an admin first.")
    target.role = role.value
    session.flush()
    user = session.get(User, user_id)
    return MemberRow(user.id, user.email, user.name, role)

