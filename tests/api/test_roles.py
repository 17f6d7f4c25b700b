"""The role matrix: every endpoint for a member, an admin, a super admin, a user of another
organization, no token, a revoked token and a made-up token, against an org that has a subscription."""

import pytest
from sqlmodel import select

from billing_app.db import session_scope
from billing_app.models import OrgSubscription
from tests.api.helpers import ANONYMOUS, ROLES, buy, role_headers
from tests.billing.helpers import period_id

ADMINS = {"admin", "super_admin"}


def expected(role, *, member, admin, other):
    """(status, error_code or None) for this role."""
    if role in ANONYMOUS:
        return 401, "UNAUTHENTICATED"
    if role == "member":
        return member
    if role in ADMINS:
        return admin
    return other


OK = (200, None)
FORBIDDEN = (403, "FORBIDDEN")


@pytest.mark.parametrize("role", ROLES)
def test_role_matrix(client, tokens, stripe_env, role):
    session_id = buy(client, tokens, stripe_env)
    headers = role_headers(role, tokens)
    acme_sub = OrgSubscription.model_validate(_acme_sub(tokens.org.id))
    pro = period_id("pro", "MONTHLY")

    steps = [
        ("GET", "/api/subscriptions", None, OK, OK, OK),
        ("GET", "/api/subscriptions/my", None, OK, OK, OK),
        ("GET", "/api/billing/summary", None, OK, OK, OK),
        ("GET", f"/api/subscriptions/checkout-session/{session_id}", None, OK, OK, (404, "INVALID_SESSION")),
        ("GET", "/api/subscriptions/payments", None, FORBIDDEN, OK, OK),
        ("POST", "/api/subscriptions/portal", None, FORBIDDEN, OK, (404, "NO_BILLING_ACCOUNT")),
        ("POST", "/api/billing/portal", None, FORBIDDEN, OK, (404, "NO_BILLING_ACCOUNT")),
        ("POST", "/api/subscriptions/change", {"subscriptionPeriodId": pro, "preview": True}, FORBIDDEN, OK,
         (404, "SUBSCRIPTION_NOT_FOUND")),
        ("POST", "/api/subscriptions/cancel", {"atPeriodEnd": True}, FORBIDDEN, OK, (404, "SUBSCRIPTION_NOT_FOUND")),
        ("POST", "/api/subscriptions/reactivate", None, FORBIDDEN, OK, (404, "SUBSCRIPTION_NOT_FOUND")),
        ("POST", "/api/subscriptions/buy", {"subscriptionPeriodId": period_id("starter", "MONTHLY")}, FORBIDDEN,
         (409, "SUBSCRIPTION_ALREADY_ACTIVE"), OK),
    ]
    seen = {}
    for method, path, json, member, admin, other in steps:
        want = OK if path == "/api/subscriptions" else expected(role, member=member, admin=admin, other=other)
        response = client.request(method, path, headers=headers, json=json)
        body = response.json()
        got = (response.status_code, body.get("error_code"))
        assert got == want, f"{role} {method} {path}: {response.text}"
        if response.status_code == 401:
            assert response.headers["www-authenticate"] == "Bearer"
        seen[path] = body

    # What each role saw was its own organization's data, and only admins changed anything.
    if role in ("member", "admin", "super_admin"):
        assert seen["/api/subscriptions/my"]["subscription"]["id"] == acme_sub.stripe_id
        assert seen["/api/billing/summary"]["plan"]["key"] == "starter"
    if role in ADMINS:
        assert [p["amount"] for p in seen["/api/subscriptions/payments"]["payments"]] == [900]
        assert seen["/api/subscriptions/cancel"]["subscription"]["cancelAtPeriodEnd"] is True
        assert seen["/api/subscriptions/reactivate"]["subscription"]["cancelAtPeriodEnd"] is False
    if role == "other_org":
        assert seen["/api/subscriptions/my"]["subscription"] is None
        assert seen["/api/billing/summary"]["reason"] == "no_subscription"
        assert seen["/api/subscriptions/payments"]["payments"] == []
        checkout = stripe_env.client.v1.checkout.sessions.retrieve(seen["/api/subscriptions/buy"]["sessionId"])
        assert checkout.client_reference_id == str(tokens.other.id)  # bought for its own org
    after = OrgSubscription.model_validate(_acme_sub(tokens.org.id))
    assert (after.status, after.cancel_at_period_end, after.plan_period_id) == ("active", False, acme_sub.plan_period_id)


def _acme_sub(org_id):
    with session_scope() as s:
        return s.exec(select(OrgSubscription).where(OrgSubscription.org_id == org_id)).one().model_dump()
