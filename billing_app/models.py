"""SQLModel tables. Schema changes go through Alembic (billing_app/migrations)."""

from __future__ import annotations

import enum
from datetime import datetime, timezone

from sqlalchemy import Column, DateTime, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _ts(**kwargs) -> Column:
    """A timezone-aware timestamp column (SQLite stores it as text; we re-attach UTC on read)."""
    return Column(DateTime(timezone=True), **kwargs)


class Role(str, enum.Enum):
    MEMBER = "member"
    ADMIN = "admin"
    SUPER_ADMIN = "super_admin"

    @property
    def rank(self) -> int:
        return {"member": 0, "admin": 1, "super_admin": 2}[self.value]

    def at_least(self, other: "Role") -> bool:
        return self.rank >= other.rank


class Organization(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    # Stored lower-cased, so uniqueness ignores case.
    email: str = Field(max_length=254, unique=True, index=True)
    name: str = Field(default="", max_length=120)
    password_hash: str
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class Membership(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("user_id", "org_id", name="uq_membership_user_org"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    org_id: int = Field(foreign_key="organization.id", index=True, ondelete="CASCADE")
    role: str = Field(default=Role.MEMBER.value, max_length=20)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class AuthSession(SQLModel, table=True):
    """A browser login. Only the token's SHA-256 is stored, so a database leak is no login."""

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    user_id: int = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    current_org_id: int | None = Field(default=None, foreign_key="organization.id", ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    expires_at: datetime = Field(sa_column=_ts(nullable=False))


class ApiToken(SQLModel, table=True):
    """A bearer token for the REST API, bound to one user in one organization."""

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    # The first characters, shown in lists so a user can tell tokens apart.
    prefix: str = Field(max_length=16)
    name: str = Field(default="", max_length=120)
    user_id: int = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    org_id: int = Field(foreign_key="organization.id", index=True, ondelete="CASCADE")
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    last_used_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))


class LoginThrottle(SQLModel, table=True):
    """Failed logins per email (known or not, so the lock reveals nothing)."""

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=254, unique=True, index=True)
    failures: int = 0
    window_started_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
