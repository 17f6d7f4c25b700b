from sqlmodel import func, select

from billing_app.auth import accounts
from billing_app.db import session_scope
from billing_app.models import Membership, Organization, User
from billing_app.seed import DEMO_LOGINS, seed


def test_seed_makes_two_orgs_each_with_an_admin_and_a_member_and_is_idempotent(db):
    with session_scope() as s:
        assert seed(s)
    with session_scope() as s:
        assert seed(s) == []
    assert db.exec(select(func.count()).select_from(User)).one() == 4
    assert db.exec(select(func.count()).select_from(Organization)).one() == 2
    assert db.exec(select(func.count()).select_from(Membership)).one() == 4
    for demo in DEMO_LOGINS:
        with session_scope() as s:
            who = accounts.actor_for_session(s, accounts.login(s, email=demo.email, password=demo.password))
        assert (who.org_name, who.role) == (demo.org, demo.role)
