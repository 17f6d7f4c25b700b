"""The payments CSV export route: the browser session cookie, the admin role, the filters."""

import asyncio
import csv
import io
from datetime import datetime, timezone

from sqlmodel import select
from starlette.testclient import TestClient

from billing_app import api
from billing_app.api import build_api
from billing_app.auth import accounts
from billing_app.db import session_scope
from billing_app.models import Payment, User
from billing_app.state import SESSION_COOKIE
from tests.billing.helpers import PASSWORD, make_org


def cookie_for(email, org_id):
    """A browser session of `email`, switched to `org_id`."""
    with session_scope() as s:
        token = accounts.login(s, email=email, password=PASSWORD)
        accounts.switch_org(s, token, org_id)
    return {SESSION_COOKIE: token}


def test_csv_export_for_admins_with_filters(database_url, db):
    org = make_org("Exporter", "admin@exp.example", "member@exp.example")
    for day, status in ((1, "COMPLETED"), (2, "FAILED"), (3, "COMPLETED")):
        db.add(Payment(org_id=org.id, stripe_id=f"in_{day}", status=status, amount=900, currency="usd",
                       created=datetime(2026, 3, day, tzinfo=timezone.utc), description=f"Invoice {day}"))
    db.commit()
    client = TestClient(build_api())

    answer = client.get("/api/billing/payments.csv?status=COMPLETED&start=2026-03-02", cookies=cookie_for("admin@exp.example", org.id))
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [r["stripe_id"] for r in rows] == ["in_3"]

    member = client.get("/api/billing/payments.csv", cookies=cookie_for("member@exp.example", org.id))
    assert member.status_code == 403 and member.json()["error_code"] == "FORBIDDEN"
    assert client.get("/api/billing/payments.csv").status_code == 401
    bad = client.get("/api/billing/payments.csv?start=2026-03-05&end=2026-03-01", cookies=cookie_for("admin@exp.example", org.id))
    assert bad.status_code == 422 and bad.json()["message"] == "The from date must be on or before the to date."


def _off_the_event_loop(calls: list[bool]):
    """Records, for each call, whether it ran with no event loop in its thread (a worker thread)."""

    def record(*args, **kwargs):
        try:
            asyncio.get_running_loop()
            calls.append(False)
        except RuntimeError:
            calls.append(True)

    return record


def test_http_routes_do_their_database_work_off_the_event_loop(database_url, monkeypatch):
    """A slow database (or a full pool) must stall one request, not every websocket of the backend."""
    org = make_org("Exporter", "admin@exp.example", "member@exp.example")
    cookies = cookie_for("admin@exp.example", org.id)
    client = TestClient(build_api())
    calls: list[bool] = []
    real_lookup, record = accounts.actor_for_session, _off_the_event_loop(calls)

    def looked_up(session, token):
        record()
        return real_lookup(session, token)

    monkeypatch.setattr(accounts, "actor_for_session", looked_up)
    assert client.get("/api/billing/payments.csv", cookies=cookies).status_code == 200
    real_check = api._check_database

    def checked():
        record()
        real_check()

    monkeypatch.setattr(api, "_check_database", checked)
    assert client.get("/api/health").json() == {"status": "ok"}
    assert calls == [True, True]


def test_the_pages_link_exports_the_org_it_shows_or_is_refused(database_url, db):
    """The payments page's link names the org its tab shows; after a switch in another tab it is refused
    rather than export another organization's payments."""
    acme = make_org("Acme", "admin@acme.example", "bob@acme.example")
    with session_scope() as s:
        bob = s.exec(select(User).where(User.email == "bob@acme.example")).one()
        own = next(o.id for o in accounts.organizations_of(s, bob.id) if o.id != acme.id)  # Bob's own, where he is admin
    client = TestClient(build_api())
    cookie = cookie_for("bob@acme.example", own)
    assert client.get(f"/api/billing/payments.csv?org={own}", cookies=cookie).status_code == 200
    with session_scope() as s:
        accounts.switch_org(s, cookie[SESSION_COOKIE], acme.id)  # another tab of the same browser
    refused = client.get(f"/api/billing/payments.csv?org={own}", cookies=cookie)
    assert refused.status_code == 409 and refused.json()["error_code"] == "ORG_SWITCHED", refused.text
    assert "switched to Acme in another tab" in refused.json()["message"]


def test_the_pages_link_of_an_org_the_user_was_removed_from_says_so(database_url, db):
    """Removed from the org the payments page shows while still in another: not "you switched"."""
    from dataclasses import replace

    from billing_app.auth import members
    from billing_app.models import Role
    from tests.api.helpers import add_membership

    acme = make_org("Acme", "admin@acme.example", "bob@acme.example")
    globex = make_org("Globex", "admin@globex.example", "carol@globex.example")
    add_membership(globex.id, acme.admin.user_id, Role.ADMIN)
    client = TestClient(build_api())
    cookie = cookie_for("admin@acme.example", acme.id)
    assert client.get(f"/api/billing/payments.csv?org={acme.id}", cookies=cookie).status_code == 200
    members.change_role(acme.admin, user_id=acme.member.user_id, role=Role.ADMIN)
    members.remove_member(replace(acme.member, role=Role.ADMIN), acme.admin.user_id)  # by Bob; Globex stays
    refused = client.get(f"/api/billing/payments.csv?org={acme.id}", cookies=cookie)
    # It answered 409 ORG_SWITCHED: "… but you switched to Globex in another tab."
    assert refused.status_code == 403 and refused.json()["error_code"] == "NOT_A_MEMBER", refused.text
    assert refused.json()["message"] == ("You are not a member of the organization this page shows. "
                                         "Reload the page to continue.")
    # The link carries only an id, which may be an org the user never was in: the same answer,
    # with no "no longer", for another org and for an org that does not exist.
    never = client.get(f"/api/billing/payments.csv?org={make_org('Initech', 'a@initech.example', 'b@initech.example').id}",
                       cookies=cookie)
    assert never.json() == refused.json() == client.get("/api/billing/payments.csv?org=987654", cookies=cookie).json()
