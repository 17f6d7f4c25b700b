"""Accounts: register, log in and out, sessions, members and roles.

Every function takes the acting user's context and checks it here, on the
server, so pages and API routes cannot skip a check by forgetting it.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, delete, select

from billing_app.auth import throttle
from billing_app.auth.passwords import check_strength, hash_password, verify_password
from billing_app.auth.tokens import new_token, token_hash
from billing_app.db import insert_if_absent, session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import AuthSession, KnownDevice, Membership, Organization, PasswordReset, Role, User, utcnow
from billing_app.settings import get_settings
from billing_app.text import control_characters_message, has_control_characters, has_invisible_characters

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
BAD_LOGIN = "Incorrect email or password."
FORM_MESSAGES = {
    "invalid": "Enter a valid email address.",
    "taken": "An account with this email already exists. Log in instead.",
    "org_missing": "Enter a name for your organization.",
    "org_too_long": "Organization name is too long (120 characters at most).",
    "org_control": control_characters_message("The organization name"),
    "name_control": control_characters_message("Your name"),
}


def normalize_email(email: str) -> str:
    email = (email or "").strip().lower()
    if not EMAIL_RE.match(email) or len(email) > 254 or has_invisible_characters(email):
        raise AppError(ErrorCode.VALIDATION_ERROR, FORM_MESSAGES["invalid"])
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


def check_registration(*, email: str, password: str, name: str, org_name: str) -> tuple[str, str, str]:
    """The normalized email, user name and organization name, or a refusal; no database or hashing work.

    Names go into email subjects and bodies: a line break or control character is refused.
    """
    email = normalize_email(email)
    check_strength(password if isinstance(password, str) else "")
    name = (name or "").strip()[:120]
    if has_control_characters(name):
        raise AppError(ErrorCode.VALIDATION_ERROR, FORM_MESSAGES["name_control"])
    return email, name, check_org_name(org_name)


def check_org_name(org_name) -> str:
    """A new organization's name, stripped, or a refusal (at sign-up, and when creating one later)."""
    org_name = (org_name if isinstance(org_name, str) else "").strip()
    if not org_name:
        raise AppError(ErrorCode.VALIDATION_ERROR, FORM_MESSAGES["org_missing"])
    if len(org_name) > 120:
        raise AppError(ErrorCode.VALIDATION_ERROR, FORM_MESSAGES["org_too_long"])
    if has_control_characters(org_name):
        raise AppError(ErrorCode.VALIDATION_ERROR, FORM_MESSAGES["org_control"])
    return org_name


def register(
    session: Session, *, email: str, password: str, name: str, org_name: str, password_hash: str | None = None
) -> User:
    """Create a user and their organization, the user its admin, in one transaction.

    Hashes the password (the pool) unless `password_hash` is given, as the sign-up route does
    after awaiting the hash off the event loop.
    """
    email, name, org_name = check_registration(email=email, password=password, name=name, org_name=org_name)
    if session.exec(select(User.id).where(User.email == email)).first() is not None:
        raise AppError(ErrorCode.EMAIL_TAKEN, FORM_MESSAGES["taken"])
    user = User(email=email, name=name, password_hash=password_hash or hash_password(password))
    org = Organization(name=org_name)
    session.add(user)
    session.add(org)
    try:
        session.flush()
    except IntegrityError:
        # Two registrations raced for one email; the unique index decided.
        session.rollback()
        raise AppError(ErrorCode.EMAIL_TAKEN, FORM_MESSAGES["taken"]) from None
    session.add(Membership(user_id=user.id, org_id=org.id, role=Role.ADMIN.value))
    session.flush()
    return user


ALREADY_IN_AN_ORG = "You are already a member of an organization. Reload the page to continue."


def create_org_hash(session: Session, session_hash: str, org_name: str) -> Actor:
    """A new organization for a signed-in user in none (they left, or were removed from, their
    last one): they become its admin and the session switches to it, in one transaction.

    Only for a user in no organization: sign-up gives everyone one, others invite them to theirs,
    and every organization is a billing account, so a user in one does not make more by a form.
    """
    row, user = _session_and_user(session, session_hash)
    org = Organization(name=check_org_name(org_name))
    session.add(org)
    # The first write, then the user row as the lock: on SQLite the writer's lock, on PostgreSQL the
    # row's, so two creates at once are decided one after the other and the second sees the first.
    session.flush()
    session.exec(select(User.id).where(User.id == user.id).with_for_update()).first()
    if session.exec(select(Membership.id).where(Membership.user_id == user.id)).first() is not None:
        raise AppError(ErrorCode.ALREADY_MEMBER, ALREADY_IN_AN_ORG)
    # last_used_at: the next login starts here too (start_session)
    session.add(Membership(user_id=user.id, org_id=org.id, role=Role.ADMIN.value, last_used_at=utcnow()))
    row.current_org_id = org.id
    session.flush()
    return actor_for_session_hash(session, session_hash)


# --- login, sessions ----------------------------------------------------------


@dataclass(frozen=True)
class Client:
    """Where a login comes from: the address, the device cookie (if any) and the browser's name."""

    ip: str = ""
    device: str | None = None  # the raw device cookie; only its hash is compared or stored
    user_agent: str = ""

    @property
    def device_hash(self) -> str | None:
        return token_hash(self.device) if self.device and len(self.device) <= 200 else None


LOCAL_CLIENT = Client(ip="local")


def _known_device(session: Session, user: User | None, client: Client) -> bool:
    device = client.device_hash
    if user is None or device is None:
        return False
    return session.exec(
        select(KnownDevice.id).where(KnownDevice.device_hash == device, KnownDevice.user_id == user.id)
    ).first() is not None


def remember_device(session: Session, user_id: int, client: Client) -> None:
    """After a successful login: this browser is now a device the user signed in from."""
    device = client.device_hash
    if device is None:
        return
    insert_if_absent(session, KnownDevice.__table__, ["device_hash", "user_id"],
                     device_hash=device, user_id=user_id, created_at=utcnow(), last_login_at=utcnow())
    session.execute(
        update(KnownDevice.__table__)
        .where(KnownDevice.__table__.c.device_hash == device, KnownDevice.__table__.c.user_id == user_id)
        .values(last_login_at=utcnow())
    )


@dataclass(frozen=True)
class LoginAttempt:
    """A counted login attempt, waiting for its password check (see `authenticate`)."""

    email: str
    user_id: int | None
    password_hash: str | None
    keys: tuple


def begin_login(session: Session, *, email: str, client: Client = LOCAL_CLIENT) -> LoginAttempt:
    """Count the attempt under the throttle keys (or refuse it); no password work yet."""
    try:
        email = normalize_email(email)
    except AppError:
        raise AppError(ErrorCode.INVALID_CREDENTIALS, BAD_LOGIN) from None
    user = session.exec(select(User).where(User.email == email)).first()
    known = _known_device(session, user, client)
    who = f"d:{client.device_hash}" if known else f"ip:{client.ip or 'unknown'}"
    keys = throttle.keys_for(email, who, known_device=known)
    throttle.reserve(session, keys)
    return LoginAttempt(email, user.id if user else None, user.password_hash if user else None, tuple(keys))


def finish_login(session: Session, attempt: LoginAttempt, password_ok: bool) -> User:
    """After the password check: the user, or INVALID_CREDENTIALS (the same for an unknown email)."""
    if not password_ok or attempt.user_id is None:
        raise AppError(ErrorCode.INVALID_CREDENTIALS, BAD_LOGIN)
    throttle.succeeded(session, list(attempt.keys))  # first: on SQLite the write lock, so no reset commits after the read below
    user = session.exec(select(User).where(User.id == attempt.user_id).with_for_update()).first()
    if user is None or user.password_hash != attempt.password_hash:
        # The password was reset or changed while the old one was being checked: that ended every
        # session, and must end this one before it starts.
        raise AppError(ErrorCode.INVALID_CREDENTIALS, BAD_LOGIN)
    return user


def authenticate(session: Session, *, email: str, password: str, client: Client = LOCAL_CLIENT) -> User:
    """The user for these credentials, throttled per (email, client) and per client (auth/throttle.py).

    Runs argon2 (through the bounded pool): call it from a worker thread, never the event loop.
    The login route runs the same three steps with the check awaited instead (api/session.py).
    Attempts are counted whether the email is known or not, so a refusal reveals nothing.
    """
    attempt = begin_login(session, email=email, client=client)
    ok = verify_password(attempt.password_hash, password if isinstance(password, str) else "")
    return finish_login(session, attempt, ok)


def start_session(session: Session, user: User, client: Client = LOCAL_CLIENT) -> str:
    """A new browser session for the user, in the organization they last switched to (an accepted
    invitation switches too), else their first. Returns the token (for the cookie only)."""
    token = new_token("sess")
    first = session.exec(
        select(Membership.org_id).where(Membership.user_id == user.id)
        .order_by(Membership.last_used_at.desc().nulls_last(), Membership.id)
    ).first()
    lifetime = timedelta(hours=get_settings().session_lifetime_hours)
    # Housekeeping: a user's expired sessions go when they next log in.
    session.exec(delete(AuthSession).where(AuthSession.user_id == user.id, AuthSession.expires_at <= utcnow()))
    session.add(AuthSession(
        token_hash=token_hash(token), user_id=user.id, current_org_id=first, expires_at=utcnow() + lifetime,
        last_seen_at=utcnow(), user_agent=(client.user_agent or "")[:255], client_ip=(client.ip or "")[:64],
    ))
    remember_device(session, user.id, client)
    session.flush()
    return token


def login(session: Session, *, email: str, password: str, client: Client = LOCAL_CLIENT) -> str:
    return start_session(session, authenticate(session, email=email, password=password, client=client), client)


def end_session(session: Session, token: str) -> None:
    end_session_hash(session, token_hash(token))


def end_session_hash(session: Session, session_hash: str) -> None:
    if session_hash:
        session.exec(delete(AuthSession).where(AuthSession.token_hash == session_hash))


@dataclass(frozen=True)
class _Membership:
    id: int
    org: OrgChoice


def _memberships_of(session: Session, user_ids: Collection[int]) -> dict[int, list[_Membership]]:
    """Each user's organizations with the role in each, by organization name (one query)."""
    if not user_ids:
        return {}
    rows = session.exec(
        select(Membership.user_id, Membership.id, Organization.id, Organization.name, Membership.role)
        .join(Membership, Membership.org_id == Organization.id)
        .where(Membership.user_id.in_(list(user_ids)))
        .order_by(Organization.name)
    ).all()
    found: dict[int, list[_Membership]] = {}
    for user_id, membership_id, org_id, name, role in rows:
        found.setdefault(user_id, []).append(_Membership(membership_id, OrgChoice(org_id, name, Role(role))))
    return found


def _memberships(session: Session, user_id: int) -> list[_Membership]:
    return _memberships_of(session, [user_id]).get(user_id, [])


def _actor_among(user: User, org_id: int | None, memberships: list[_Membership]) -> Actor:
    chosen = next((m for m in memberships if m.org.id == org_id), None) if org_id is not None else None
    if chosen is None and memberships:
        # The org may have been left or removed since; fall back to the first one joined.
        chosen = min(memberships, key=lambda m: m.id)
    if chosen is None:
        return Actor(user.id, user.email, user.name, None, "", None)
    return Actor(user.id, user.email, user.name, chosen.org.id, chosen.org.name, chosen.org.role)


def _actor(session: Session, user: User, org_id: int | None) -> Actor:
    return _actor_among(user, org_id, _memberships(session, user.id))


# last_seen_at is written at most this often per session.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)


def _sessions_of(session: Session, session_hashes: Collection[str]) -> dict[str, tuple[AuthSession, User] | AppError]:
    """Each session with its user, or the error to raise for it (missing or expired); one query."""
    hashes = [h for h in session_hashes if h]
    rows = session.exec(
        select(AuthSession, User).join(User, User.id == AuthSession.user_id).where(AuthSession.token_hash.in_(hashes))
    ).all() if hashes else []
    by_hash = {row.token_hash: (row, user) for row, user in rows}
    now = utcnow()
    found: dict[str, tuple[AuthSession, User] | AppError] = {}
    for session_hash in session_hashes:
        row_and_user = by_hash.get(session_hash)
        if row_and_user is None:
            found[session_hash] = AppError(ErrorCode.UNAUTHENTICATED, "Please log in.")
        elif row_and_user[0].expires_at <= now:
            found[session_hash] = AppError(ErrorCode.SESSION_EXPIRED, "Your session has expired. Please log in again.")
        else:
            found[session_hash] = row_and_user
    return found


def _session_and_user(session: Session, session_hash: str) -> tuple[AuthSession, User]:
    found = _sessions_of(session, [session_hash])[session_hash]
    if isinstance(found, AppError):
        raise found
    return found


def _session_row(session: Session, session_hash: str) -> AuthSession:
    return _session_and_user(session, session_hash)[0]


def user_of_session(session: Session, session_hash: str) -> User:
    """The user of a live session (one query); raises when missing or expired. "Last seen" stays:
    for the server's own checks (a page's live loop), not the user's actions."""
    return _session_and_user(session, session_hash)[1]


def actor_and_orgs(session: Session, session_hash: str) -> tuple[Actor, list[OrgChoice]]:
    """The actor behind a session, named by the SHA-256 of its token (what pages hold), and the
    user's organizations (by name); raises when missing or expired. Two queries."""
    row, user = _session_and_user(session, session_hash)
    now = utcnow()
    if row.last_seen_at is None or row.last_seen_at <= now - LAST_SEEN_RESOLUTION:
        row.last_seen_at = now
        session.flush()
    memberships = _memberships(session, user.id)
    return _actor_among(user, row.current_org_id, memberships), [m.org for m in memberships]


def actors_and_orgs(session: Session, session_hashes: Collection[str]) -> dict[str, tuple[Actor, list[OrgChoice]] | AppError]:
    """`actor_and_orgs` for many sessions at once (two queries), each with its error instead of
    raising. For a refresh the server pushes to open pages: last_seen_at is left alone, as the
    user did nothing."""
    sessions = _sessions_of(session, session_hashes)
    memberships = _memberships_of(session, {found[1].id for found in sessions.values() if not isinstance(found, AppError)})
    resolved: dict[str, tuple[Actor, list[OrgChoice]] | AppError] = {}
    for session_hash, found in sessions.items():
        if isinstance(found, AppError):
            resolved[session_hash] = found
            continue
        row, user = found
        mine = memberships.get(user.id, [])
        resolved[session_hash] = (_actor_among(user, row.current_org_id, mine), [m.org for m in mine])
    return resolved


def actor_for_session_hash(session: Session, session_hash: str) -> Actor:
    """`actor_and_orgs` without the organizations."""
    return actor_and_orgs(session, session_hash)[0]


def actor_for_session(session: Session, token: str) -> Actor:
    """The actor behind a browser session token (the cookie's value); raises when missing or expired."""
    if not token or not isinstance(token, str) or len(token) > 200:
        raise AppError(ErrorCode.UNAUTHENTICATED, "Please log in.")
    return actor_for_session_hash(session, token_hash(token))


# --- the user's own sessions and password ------------------------------------------


@dataclass(frozen=True)
class SessionRow:
    id: int
    created_at: datetime
    last_seen_at: datetime | None
    user_agent: str
    client_ip: str
    current: bool


def list_sessions(session: Session, user_id: int, current_hash: str = "") -> list[SessionRow]:
    """The user's live sessions, most recently used first (the current one marked)."""
    rows = session.exec(
        select(AuthSession).where(AuthSession.user_id == user_id, AuthSession.expires_at > utcnow())
    ).all()
    rows = sorted(rows, key=lambda r: (r.last_seen_at or r.created_at, r.id), reverse=True)
    return [SessionRow(r.id, r.created_at, r.last_seen_at, r.user_agent, r.client_ip, r.token_hash == current_hash) for r in rows]


def end_session_by_id(session: Session, user_id: int, session_id: int) -> None:
    """End one of the user's own sessions; anyone else's is 'not found'."""
    row = session.get(AuthSession, session_id) if isinstance(session_id, int) else None
    if row is None or row.user_id != user_id:
        raise AppError(ErrorCode.NOT_FOUND, "No such session.")
    session.delete(row)
    session.flush()


def end_other_sessions(session: Session, user_id: int, keep_hash: str = "") -> int:
    """Log out everywhere else (keep_hash empty: everywhere). Returns how many sessions ended.

    Browser sessions only: API tokens are the user's scripts and stay until revoked on the tokens
    page (a session alone cannot mint one: `api_tokens.create_token_confirmed`); a password reset
    revokes them too (auth/reset.py)."""
    query = delete(AuthSession).where(AuthSession.user_id == user_id)
    if keep_hash:
        query = query.where(AuthSession.token_hash != keep_hash)
    return session.exec(query).rowcount or 0


def change_password(session: Session, user_id: int, *, current: str, new: str, keep_hash: str = "") -> int:
    """Set a new password after checking the current one; ends every other session.

    Runs argon2 twice (through the bounded pool): call it from a worker thread. Returns how many
    other sessions ended.
    """
    user = session.get(User, user_id)
    if user is None:
        raise AppError(ErrorCode.UNAUTHENTICATED, "Please log in.")
    if not verify_password(user.password_hash, current if isinstance(current, str) else ""):
        raise AppError(ErrorCode.INVALID_CREDENTIALS, "Your current password is not correct.")
    new = new if isinstance(new, str) else ""
    check_strength(new)
    if new == current:
        raise AppError(ErrorCode.VALIDATION_ERROR, "Choose a password different from the current one.")
    checked, new_hash = user.password_hash, hash_password(new)
    # Written only over the hash just checked: a reset (or another change) committed during the
    # argon2 work wins, or whoever had the old password could undo the owner's recovery.
    changed = session.execute(
        update(User).where(User.id == user_id, User.password_hash == checked).values(password_hash=new_hash)
    ).rowcount
    if changed != 1:
        if keep_hash and session.exec(select(AuthSession.id).where(AuthSession.token_hash == keep_hash)).first() is not None:
            # Still signed in here: another tab of this browser changed it a moment before.
            raise AppError(ErrorCode.VALIDATION_ERROR, "Your password was just changed in another tab. Use the new one.")
        raise AppError(ErrorCode.SESSION_EXPIRED, "Your password was just changed or reset elsewhere. Please log in again.")
    session.exec(delete(PasswordReset).where(PasswordReset.user_id == user_id))
    return end_other_sessions(session, user_id, keep_hash)


def store_password_hash(session: Session, user: User, password_hash: str) -> None:
    """Store a password hash made beforehand (outside the transaction, so no lock waits on argon2)
    and void any open password-reset links of the user."""
    user.password_hash = password_hash
    session.add(user)
    session.exec(delete(PasswordReset).where(PasswordReset.user_id == user.id))
    session.flush()


def organizations_of(session: Session, user_id: int) -> list[OrgChoice]:
    return [m.org for m in _memberships(session, user_id)]


def switch_org(session: Session, token: str, org_id: int) -> Actor:
    """switch_org_hash for a session token (the cookie's value)."""
    if not token or not isinstance(token, str) or len(token) > 200:
        raise AppError(ErrorCode.UNAUTHENTICATED, "Please log in.")
    return switch_org_hash(session, token_hash(token), org_id)


def switch_org_hash(session: Session, session_hash: str, org_id: int) -> Actor:
    """Make `org_id` the session's current organization (the user must be a member)."""
    actor = actor_for_session_hash(session, session_hash)
    member = session.exec(
        select(Membership).where(Membership.user_id == actor.user_id, Membership.org_id == org_id)
    ).first()
    if member is None:
        raise AppError(ErrorCode.NOT_A_MEMBER, "You are not a member of that organization.")
    _session_row(session, session_hash).current_org_id = org_id
    member.last_used_at = utcnow()  # the next login starts here (start_session)
    session.flush()
    return actor_for_session_hash(session, session_hash)


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


ROLE_CHANGED = "Your role in this organization changed; reload the page."


def actor_now(session: Session, actor: Actor, role: Role) -> Actor:
    """`actor` with their role in their organization as `session` reads it now; 403 when they are
    no longer a member or are below `role`.

    A request resolves its actor first and may then wait (up to 30 s for the org's seat claim): a
    demotion or removal committed meanwhile must bind it. Called in the transaction that acts.
    """
    org_id = actor.require_org()
    now = session.exec(
        select(Membership.role).where(Membership.org_id == org_id, Membership.user_id == actor.user_id)
    ).first()
    if now is None or not Role(now).at_least(role):
        raise AppError(ErrorCode.FORBIDDEN, ROLE_CHANGED)
    return replace(actor, role=Role(now))


def admin_now(actor: Actor) -> Actor:
    """`actor_now(..., Role.ADMIN)` in a short transaction of its own, for a billing service that acts
    for an admin: called where the action begins, after the claim it waits for (seat, purchase)."""
    with session_scope() as session:
        return actor_now(session, actor, Role.ADMIN)
