"""REST rate limits (429 RATE_LIMITED with Retry-After), request body caps, CSV injection, the far-future date, /api/docs."""

import csv
import io
from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient

from billing_app.api import build_api
from billing_app.api.body_limit import API_MAX_BODY_BYTES
from billing_app.auth import accounts
from billing_app.db import session_scope
from billing_app.models import Payment
from billing_app.state import SESSION_COOKIE
from tests.api.helpers import err, ok, served_api, stream_until_answered
from tests.billing.helpers import PASSWORD, make_org


def limit(monkeypatch, name: str, value: str) -> None:
    from billing_app.settings import get_settings

    monkeypatch.setenv(name, value)
    get_settings.cache_clear()


def test_each_token_is_rate_limited_with_retry_after(client, tokens, monkeypatch, fresh_limits):
    limit(monkeypatch, "RATE_LIMIT_API_TOKEN", "3/minute")
    for _ in range(3):
        ok(client.get("/api/billing/summary", headers=tokens.admin))
    refused = client.get("/api/billing/summary", headers=tokens.admin)
    err(refused, 429, "RATE_LIMITED")
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    ok(client.get("/api/billing/summary", headers=tokens.member))  # another token is not affected


def test_stripe_routes_are_limited_per_organization_across_its_tokens(client, tokens, monkeypatch, fresh_limits):
    limit(monkeypatch, "RATE_LIMIT_STRIPE_ORG", "2/minute")
    for token in (tokens.admin, tokens.admin):
        client.post("/api/subscriptions/portal", headers=token)
    refused = client.post("/api/subscriptions/portal", headers=tokens.super_admin)
    err(refused, 429, "RATE_LIMITED")
    assert "retry-after" in refused.headers
    ok(client.get("/api/billing/summary", headers=tokens.admin))  # reading the mirror calls no Stripe


def test_a_member_cannot_spend_the_orgs_stripe_limit_with_refused_admin_calls(client, tokens, monkeypatch, fresh_limits):
    # Refused by role before the org's limit is counted (the token's own limit still counts them).
    limit(monkeypatch, "RATE_LIMIT_STRIPE_ORG", "3/minute")
    for _ in range(5):
        err(client.post("/api/subscriptions/cancel", headers=tokens.member, json={}), 403, "FORBIDDEN")
    for _ in range(3):
        assert client.post("/api/subscriptions/portal", headers=tokens.admin).status_code != 429
    err(client.post("/api/subscriptions/portal", headers=tokens.admin), 429, "RATE_LIMITED")


def test_a_member_cannot_lock_admins_out_through_checkout_session_lookups(client, tokens, monkeypatch, fresh_limits):
    # A member may ask how a checkout ended (a Stripe read): counted against the member's own limit.
    limit(monkeypatch, "RATE_LIMIT_STRIPE_ORG", "3/minute")
    limit(monkeypatch, "RATE_LIMIT_STRIPE_USER", "3/minute")
    lookup = "/api/subscriptions/checkout-session/cs_test_madeup"
    for _ in range(3):
        err(client.get(lookup, headers=tokens.member), 404, "INVALID_SESSION")
    err(client.get(lookup, headers=tokens.member), 429, "RATE_LIMITED")
    for _ in range(3):  # the org's admins still have their whole limit
        assert client.post("/api/subscriptions/portal", headers=tokens.admin).status_code != 429
    err(client.post("/api/subscriptions/portal", headers=tokens.admin), 429, "RATE_LIMITED")


@pytest.fixture
def token_lookups(monkeypatch) -> list[str]:
    """Each bearer token looked up in the database (what a guesser makes the server do)."""
    from billing_app.auth import api_tokens

    looked: list[str] = []
    real = api_tokens.actor_for_token

    def spy(session, token):
        if token.startswith("bapi_"):  # a malformed one is refused without a query
            looked.append(token)
        return real(session, token)

    monkeypatch.setattr(api_tokens, "actor_for_token", spy)
    return looked


def test_refused_tokens_are_limited_per_client_address(client, tokens, token_lookups, monkeypatch, fresh_limits):
    # Made-up tokens were answered 401 forever: a client could try as many as it liked.
    from billing_app.ops.access import set_operator

    limit(monkeypatch, "RATE_LIMIT_API_AUTH_FAILURES_IP", "3/minute")
    made_up = [{"Authorization": f"Bearer bapi_made-up-{i:038d}"} for i in range(5)]
    for headers in made_up[:2]:
        err(client.get("/api/billing/summary", headers=headers), 401, "UNAUTHENTICATED")
    ok(client.get("/api/billing/summary", headers=tokens.admin))  # a good token does not count
    err(client.get("/api/billing/summary", headers={"Authorization": "Bearer not-a-token"}), 401, "UNAUTHENTICATED")  # no lookup
    assert client.get("/api/ops/metrics", headers=made_up[2]).status_code == 404  # the console's routes count too
    assert len(token_lookups) == 4
    refused = err(client.get("/api/billing/summary", headers=made_up[3]), 429, "RATE_LIMITED")
    assert "Too many refused API tokens" in refused["message"]
    assert 1 <= int(client.get("/api/billing/summary", headers=made_up[4]).headers["retry-after"]) <= 60
    # Only refused tokens are held back: a valid one from this address still works, an operator's too.
    ok(client.get("/api/billing/summary", headers=tokens.admin))
    set_operator("admin@acme.example", True)
    assert client.get("/api/ops/metrics", headers=tokens.admin).status_code == 200
    assert len(token_lookups) == 8  # one indexed query a request: 256-bit tokens are not guessed
    with TestClient(client.app, client=("198.51.100.4", 50000)) as elsewhere:  # another client is not held back
        err(elsewhere.get("/api/billing/summary", headers=made_up[0]), 401, "UNAUTHENTICATED")


def expire(token: str) -> None:
    from datetime import timedelta

    from sqlmodel import select

    from billing_app.auth import api_tokens
    from billing_app.models import ApiToken, utcnow

    with session_scope() as s:
        row = s.exec(select(ApiToken).where(ApiToken.prefix == token[:api_tokens.PREFIX_LENGTH])).one()
        row.expires_at = utcnow() - timedelta(minutes=1)
        s.add(row)


def test_a_neighbours_refused_tokens_do_not_lock_out_a_valid_token_from_the_same_address(client, tokens, monkeypatch, fresh_limits):
    # One cron job polling with an expired token, or a neighbour behind the same NAT or integration
    # platform: its refusals must not lock out another customer's valid token on that address.
    from tests.api.helpers import bearer, token_for

    limit(monkeypatch, "RATE_LIMIT_API_AUTH_FAILURES_IP", "3/minute")
    stale = token_for(tokens.org.member)
    expire(stale)
    for _ in range(3):
        err(client.get("/api/billing/summary", headers=bearer(stale)), 401, "UNAUTHENTICATED")
    err(client.get("/api/billing/summary", headers=bearer(stale)), 429, "RATE_LIMITED")  # the bad client is held back
    ok(client.get("/api/billing/summary", headers=tokens.other_admin))  # Globex's valid token, same address


def test_an_operators_valid_token_is_not_locked_out_of_the_console_api_by_refused_ones(client, tokens, monkeypatch, fresh_limits):
    # Made-up tokens from the operator's address (or from everyone, behind a proxy without
    # trusted_proxy_hops) turned the operator's /api/ops into "No such API route.".
    from billing_app.ops.access import set_operator

    limit(monkeypatch, "RATE_LIMIT_API_AUTH_FAILURES_IP", "3/minute")
    set_operator("admin@acme.example", True)
    for i in range(5):
        assert client.get("/api/ops/metrics", headers={"Authorization": f"Bearer bapi_made-up-{i:038d}"}).status_code == 404
    assert client.get("/api/ops/metrics", headers=tokens.admin).status_code == 200


def test_revoked_and_expired_tokens_count_against_their_own_limit(client, org, monkeypatch, fresh_limits):
    from datetime import timedelta

    from sqlmodel import select

    from billing_app.auth import api_tokens
    from billing_app.models import ApiToken, utcnow
    from tests.api.helpers import bearer, token_for

    limit(monkeypatch, "RATE_LIMIT_API_TOKEN", "2/minute")
    revoked, expired = token_for(org.admin), token_for(org.admin)
    with session_scope() as s:
        api_tokens.revoke_all(s, org.admin.user_id)
        row = s.exec(select(ApiToken).where(ApiToken.prefix == expired[:api_tokens.PREFIX_LENGTH])).one()
        row.revoked_at, row.expires_at = None, utcnow() - timedelta(minutes=1)
        s.add(row)
    for token in (revoked, expired):
        for _ in range(2):
            err(client.get("/api/billing/summary", headers=bearer(token)), 401, "UNAUTHENTICATED")
        err(client.get("/api/billing/summary", headers=bearer(token)), 429, "RATE_LIMITED")
    ok(client.get("/api/billing/summary", headers=bearer(token_for(org.member))))  # per token


def test_the_document_says_every_authenticated_route_may_answer_429(client):
    doc = client.get("/api/openapi.json").json()
    for path, item in doc["paths"].items():
        for op in item.values():
            if "security" in op:
                assert op["responses"]["429"]["headers"]["Retry-After"], path


MIB = 1024 * 1024


def test_a_large_body_is_refused_unread_before_the_caller_is_even_checked(database_url):
    with served_api() as port:
        status, sent = stream_until_answered(port, "/api/subscriptions/buy", {"Content-Type": "application/json"})
    assert sent <= 16 * MIB, f"read {sent // MIB} MiB from a caller with no token"
    assert status.startswith(b"HTTP/1.1 413"), status

    json_type = {"Content-Type": "application/json"}
    with TestClient(build_api()) as client:
        declared = client.post("/api/subscriptions/buy", content=b"x" * (API_MAX_BODY_BYTES + 1), headers=json_type)
        within = client.post("/api/subscriptions/buy", json={"subscriptionPeriodId": 1})
    assert err(declared, 413)["error_code"] == "PAYLOAD_TOO_LARGE"
    assert err(within, 401)["error_code"] == "UNAUTHENTICATED"


def test_reflex_routes_mounted_under_the_api_app_are_not_capped(database_url):
    """rx.App(api_transformer=build_api()) mounts Reflex's own app (its /_upload, /_event) at "" inside ours."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def upload(request):
        return PlainTextResponse(str(len(await request.body())))

    app = build_api()
    app.mount("", Starlette(routes=[Route("/_upload", upload, methods=["POST"])]))
    with TestClient(app) as client:
        assert client.post("/_upload", content=b"x" * 4 * MIB).text == str(4 * MIB)


def test_api_docs_are_off_in_production(monkeypatch):
    from billing_app.api import rest

    monkeypatch.setenv("REFLEX_ENV_MODE", "prod")
    assert rest.docs_enabled() is False
    assert TestClient(rest.create_app()).get("/docs").status_code == 404
    assert TestClient(rest.create_app(docs=True)).get("/docs").status_code == 200


def admin_cookie(org):
    with session_scope() as s:
        token = accounts.login(s, email="admin@csv.example", password=PASSWORD)
        accounts.switch_org(s, token, org.id)
    return {SESSION_COOKIE: token}


@pytest.mark.parametrize("evil", ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tTAB", "\rCR"])
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(database_url, db, evil):
    org = make_org("CSV Co", "admin@csv.example", "member@csv.example")
    db.add(Payment(org_id=org.id, stripe_id="in_evil", status="COMPLETED", amount=900, currency="usd",
                   created=datetime(2026, 3, 1, tzinfo=timezone.utc), description=evil))
    db.commit()
    answer = TestClient(build_api()).get("/api/billing/payments.csv", cookies=admin_cookie(org))
    [row] = list(csv.DictReader(io.StringIO(answer.text)))
    assert row["description"] == "'" + evil
    assert row["amount"] == "9.00"


def test_the_last_possible_day_is_refused_cleanly_by_the_csv_route_and_the_page(database_url, db):
    from billing_app.billing.payments import PaymentFilter
    from billing_app.errors import AppError

    org = make_org("Far Future", "admin@csv.example", "member@csv.example")
    answer = TestClient(build_api()).get("/api/billing/payments.csv?end=9999-12-31", cookies=admin_cookie(org))
    assert answer.status_code == 422 and answer.json()["error_code"] == "VALIDATION_ERROR"
    # The page builds its filter through the same validator (PaymentsState._filters); the browser
    # test tests/browser/test_security_ui.py types the date on the page itself.
    with pytest.raises(AppError):
        PaymentFilter.parse(None, "9999-12-31", None)
