"""Bearer tokens for the REST API: one user in one organization, stored hashed, revocable.

The plain token is returned once, when it is made; only its SHA-256 and a short prefix
(to tell tokens apart in a list) are stored. A token may expire (`expires_in_days`); a user has at
most API_TOKENS_PER_USER live (unrevoked, unexpired) tokens. A token carries no role of its own: every
use looks up the user's *current* membership, so a demoted user's token loses admin
rights at once and a token of a user who left the organization stops working.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, update
from sqlmodel import Session, select

from billing_app import limits
from billing_app.auth import accounts
from billing_app.auth.accounts import LOCAL_CLIENT, Actor, Client, normalize_email
from billing_app.auth.tokens import new_token, token_hash
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import ApiToken, Membership, Organization, Role, User, utcnow
from billing_app.settings import get_settings
from billing_app.text import refuse_control_characters

TOKEN_KIND = "bapi"  # tokens look like bapi_<43 url-safe characters>
PREFIX_LENGTH = 12  # "bapi_" and 7 random characters: enough to tell tokens apart, useless to guess
MAX_NAME = 120
# last_used_at is written at most this often per token, so a busy script does not write on every call.
LAST_USED_RESOLUTION = timedelta(minutes=1)
BAD_TOKEN = "Missing, invalid or revoked API token. Send `Authorization: Bearer <token>`."


@dataclass(frozen=True)
class CreatedToken:
    id: int
    token: str  # shown once; never stored
    prefix: str
    name: str
    org_id: int
    created_at: datetime
    expires_at: datetime | None = None


@dataclass(frozen=True)
class TokenRow:
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def _clean_name(name: str | None) -> str:
    name = (name or "").strip()
    if len(name) > MAX_NAME:
        raise AppError(ErrorCode.VALIDATION_ERROR, f"Token name is too long ({MAX_NAME} characters at most).")
    return refuse_control_characters(name, "The token name")


MAX_EXPIRY_DAYS = 3650


def _live(query):
    now = utcnow()
    return query.where(ApiToken.revoked_at == None, or_(ApiToken.expires_at == None, ApiToken.expires_at > now))  # noqa: E711


def _issue(session: Session, user_id: int, org_id: int, name: str, expires_in_days: int | None = None) -> CreatedToken:
    if expires_in_days is not None and (not isinstance(expires_in_days, int) or not 1 <= expires_in_days <= MAX_EXPIRY_DAYS):
        raise AppError(ErrorCode.VALIDATION_ERROR, f"A token expires in 1 to {MAX_EXPIRY_DAYS} days, or never.")
    # One user's token count is decided one creation at a time (the user row is the lock).
    session.exec(select(User.id).where(User.id == user_id).with_for_update()).first()
    # A token belongs to a membership: one whose removal committed since the caller read it (the
    # password check takes a while) would otherwise escape that removal's revocation, and work again
    # if they are invited back. The row stays locked, so a removal now revokes this token as well.
    membership = session.exec(
        select(Membership.id).where(Membership.user_id == user_id, Membership.org_id == org_id).with_for_update()
    ).first()
    if membership is None:
        raise AppError(ErrorCode.NOT_A_MEMBER, "You are no longer a member of this organization. Reload the page.")
    cap = get_settings().api_tokens_per_user
    live = session.exec(_live(select(func.count()).select_from(ApiToken).where(ApiToken.user_id == user_id))).one()
    if live >= cap:
        raise AppError(ErrorCode.TOKEN_LIMIT_REACHED, f"You have {cap} live API tokens, the most allowed. Revoke one you no longer use first.")
    token = new_token(TOKEN_KIND)
    expires_at = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
    row = ApiToken(token_hash=token_hash(token), prefix=token[:PREFIX_LENGTH], name=name, user_id=user_id, org_id=org_id, expires_at=expires_at)
    session.add(row)
    session.flush()
    return CreatedToken(row.id, token, row.prefix, row.name, org_id, row.created_at, row.expires_at)


def create_token(session: Session, actor: Actor, name: str = "", *, expires_in_days: int | None = None) -> CreatedToken:
    """A new token for the acting user in their current organization (any role may make one).

    No password asked: for code that has already confirmed the person (`create_token_confirmed`).
    """
    org_id = actor.require_org()
    return _issue(session, actor.user_id, org_id, _clean_name(name), expires_in_days)


WRONG_PASSWORD = "Your current password is not correct."


def create_token_confirmed(session: Session, actor: Actor, password: str, name: str = "", *,
                           client: Client = LOCAL_CLIENT, expires_in_days: int | None = None) -> CreatedToken:
    """`create_token` once the user's current password is given, as a person minting one must.

    A token outlives browser sessions, so a borrowed session alone must not be able to make one.
    The check is a login attempt for the login throttle (per email and client, auth/throttle.py),
    so this form cannot be used to guess the password either. Runs argon2: not on the event loop.
    Each try counts first against the user's RATE_LIMIT_ACCOUNT_USER (429 RATE_LIMITED): argon2
    runs in the pool every login waits for, so one user must not keep it busy.
    """
    limits.hit(limits.ACCOUNT_USER, actor.user_id)
    try:
        accounts.authenticate(session, email=actor.email, password=password if isinstance(password, str) else "", client=client)
    except AppError as error:
        if error.code == ErrorCode.INVALID_CREDENTIALS:
            raise AppError(ErrorCode.INVALID_CREDENTIALS, WRONG_PASSWORD) from None
        raise
    return create_token(session, actor, name, expires_in_days=expires_in_days)


def revoke_all(session: Session, user_id: int) -> int:
    """Revoke every live token of the user, in every organization (account recovery). Returns how many."""
    return _revoke_live(session, ApiToken.user_id == user_id)


def revoke_in_org(session: Session, user_id: int, org_id: int) -> int:
    """Revoke the user's live tokens for one organization, as they leave it or are removed: a token
    belongs to the membership it was made in, not to one the user is given later. Returns how many."""
    return _revoke_live(session, ApiToken.user_id == user_id, ApiToken.org_id == org_id)


def _revoke_live(session: Session, *which) -> int:
    return session.exec(
        _live(update(ApiToken).where(*which))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount or 0


def list_tokens(session: Session, actor: Actor, *, include_revoked: bool = False) -> list[TokenRow]:
    """The acting user's tokens for their current organization, newest first."""
    org_id = actor.require_org()
    query = select(ApiToken).where(ApiToken.user_id == actor.user_id, ApiToken.org_id == org_id)
    if not include_revoked:
        query = _live(query)
    rows = session.exec(query.order_by(ApiToken.created_at.desc(), ApiToken.id.desc())).all()
    return [
        TokenRow(
            r.id, r.name, r.prefix, r.created_at,
            r.last_used_at,
            r.revoked_at if r.revoked_at else None,
            r.expires_at,
        )
        for r in rows
    ]


def revoke_token(session: Session, actor: Actor, token_id: int) -> None:
    """Revoke one token: its owner may, and so may an admin of the token's organization.

    Revoking an already revoked token changes nothing. Anyone else's token is reported as
    not found, so token ids reveal nothing.
    """
    org_id = actor.require_org()
    row = session.get(ApiToken, token_id) if isinstance(token_id, int) else None
    mine = row is not None and row.user_id == actor.user_id and row.org_id == org_id
    org_admin = row is not None and row.org_id == org_id and actor.is_admin
    if not (mine or org_admin):
        raise AppError(ErrorCode.TOKEN_NOT_FOUND, "No such API token.")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()


def is_well_formed(token: str | None) -> bool:
    """Whether `token` could be one of ours (anything else is refused without a lookup)."""
    return isinstance(token, str) and token.startswith(f"{TOKEN_KIND}_") and len(token) <= 200


def actor_for_token(session: Session, token: str | None) -> Actor:
    """The actor behind a bearer token, with the user's current role in the token's organization.

    Missing, unknown, revoked and expired tokens, and tokens of users who are no longer members
    of the organization, all raise UNAUTHENTICATED with the same message.
    """
    if not is_well_formed(token):
        raise AppError(ErrorCode.UNAUTHENTICATED, BAD_TOKEN)
    found = session.exec(
        select(ApiToken, User, Organization, Membership.role)
        .join(User, User.id == ApiToken.user_id)
        .join(Organization, Organization.id == ApiToken.org_id)
        .join(Membership, (Membership.user_id == ApiToken.user_id) & (Membership.org_id == ApiToken.org_id))
        .where(ApiToken.token_hash == token_hash(token), ApiToken.revoked_at == None)  # noqa: E711
        .where(or_(ApiToken.expires_at == None, ApiToken.expires_at > utcnow()))  # noqa: E711
    ).first()
    if found is None:
        raise AppError(ErrorCode.UNAUTHENTICATED, BAD_TOKEN)
    row, user, org, role = found
    now = utcnow()
    if row.last_used_at is None or row.last_used_at <= now - LAST_USED_RESOLUTION:
        # One conditional UPDATE, at most once a minute per token; concurrent uses do not collide.
        session.exec(
            update(ApiToken)
            .where(ApiToken.id == row.id)
            .where(or_(ApiToken.last_used_at == None, ApiToken.last_used_at <= now - LAST_USED_RESOLUTION))  # noqa: E711
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
    return Actor(user.id, user.email, user.name, org.id, org.name, Role(role))


def authenticate_bearer(token: str | None) -> Actor:
    """actor_for_token in its own unit of work (commits the last_used_at touch)."""
    with session_scope() as session:
        return actor_for_token(session, token)


def create_token_for_email(email: str, org: int | str | None = None, name: str = "cli", expires_in_days: int | None = None) -> str:
    """For `python -m billing_app create-token --email EMAIL [--org ORG]`: the plain token, once.

    ORG is an organization id or its exact name (case-insensitive); without it the user must
    belong to exactly one organization.
    """
    with session_scope() as session:
        user = session.exec(select(User).where(User.email == normalize_email(email))).first()
        if user is None:
            raise AppError(ErrorCode.USER_NOT_FOUND, f"No account uses {email}.")
        orgs = session.exec(
            select(Organization)
            .join(Membership, Membership.org_id == Organization.id)
            .where(Membership.user_id == user.id)
            .order_by(Organization.id)
        ).all()
        if not orgs:
            raise AppError(ErrorCode.NO_ORGANIZATION, f"{user.email} is not a member of any organization.")
        if org is None or str(org).strip() == "":
            if len(orgs) > 1:
                listing = ", ".join(f"{o.id} ({o.name})" for o in orgs)
                raise AppError(
                    ErrorCode.VALIDATION_ERROR,
                    f"{user.email} belongs to several organizations; pass --org with one of: {listing}.",
                )
            chosen = orgs[0]
        else:
            wanted = str(org).strip()
            matches = [o for o in orgs if str(o.id) == wanted] or [o for o in orgs if o.name.lower() == wanted.lower()]
            if not matches:
                raise AppError(ErrorCode.FORBIDDEN, f"{user.email} is not a member of an organization {wanted!r}.")
            if len(matches) > 1:
                raise AppError(ErrorCode.VALIDATION_ERROR, f"Several organizations are named {wanted!r}; pass its id instead.")
            chosen = matches[0]
        return _issue(session, user.id, chosen.id, _clean_name(name), expires_in_days).token
