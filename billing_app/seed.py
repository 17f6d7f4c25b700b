"""Demo data: two organizations, each with an admin and a member. Safe to run again."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, select

from billing_app.auth.passwords import hash_password
from billing_app.models import Membership, Organization, Role, User


@dataclass(frozen=True)
class DemoLogin:
    email: str
    password: str
    org: str
    role: Role


DEMO_PASSWORD = "demo-password-123"
DEMO_LOGINS = [
    DemoLogin("admin@acme.test", DEMO_PASSWORD, "Acme Inc", Role.ADMIN),
    DemoLogin("member@acme.test", DEMO_PASSWORD, "Acme Inc", Role.MEMBER),
    DemoLogin("admin@globex.test", DEMO_PASSWORD, "Globex Corp", Role.ADMIN),
    DemoLogin("member@globex.test", DEMO_PASSWORD, "Globex Corp", Role.MEMBER),
]


def seed(session: Session) -> list[str]:
    """Create what is missing; returns a line per thing created (empty when all existed)."""
    created = []
    orgs: dict[str, Organization] = {}
    for login in DEMO_LOGINS:
        user = session.exec(select(User).where(User.email == login.email)).first()
        if user is None:
            user = User(email=login.email, name=login.email.split("@")[0].title(), password_hash=hash_password(login.password))
            session.add(user)
            session.flush()
            created.append(f"user {login.email}")
        org = orgs.get(login.org)
        if org is None:
            # A demo org is found through its demo admin's membership, so a renamed org is not duplicated.
            org = session.exec(
                select(Organization)
                .join(Membership, Membership.org_id == Organization.id)
                .join(User, User.id == Membership.user_id)
                .where(Organization.name == login.org, User.email.like("%@" + login.email.split("@")[1]))
            ).first()
            if org is None:
                org = Organization(name=login.org)
                session.add(org)
                session.flush()
                created.append(f"organization {login.org}")
            orgs[login.org] = org
        membership = session.exec(
            select(Membership).where(Membership.user_id == user.id, Membership.org_id == org.id)
        ).first()
        if membership is None:
            session.add(Membership(user_id=user.id, org_id=org.id, role=login.role.value))
            created.append(f"membership {login.email} as {login.role.value} of {login.org}")
    session.flush()
    return created


def logins_text() -> str:
    lines = [f"  {d.email:<22} {d.password}   ({d.role.value} of {d.org})" for d in DEMO_LOGINS]
    return "Demo logins:\n" + "\n".join(lines)
