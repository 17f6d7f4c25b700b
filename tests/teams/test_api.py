"""The teams routes over HTTP: the role matrix, the exact shapes a client reads, and every error code."""

from __future__ import annotations

import re

import pytest
from sqlmodel import func, select

from billing_app.auth import invitations
from billing_app.billing import gateway
from billing_app.db import session_scope
from billing_app.models import Invitation, Notification
from tests.aio import run_async
from tests.api.helpers import ANONYMOUS, ROLES, add_membership, err, ok, role_headers
from tests.billing.helpers import buy, period_id
from tests.pages import run_event, signed_in_page
from tests.teams.helpers import (
    buy_team,
    invitee,
    join,
    quantity_at_stripe,
    stripe_subscription,
    token_of,
)

OK = (200, None)


FORBIDDEN = (403, "FORBIDDEN")


def expected(role, member, admin, other):
    if role in ANONYMOUS:
        return 401, "UNAUTHENTICATED"
    return {"member": member, "admin": admin, "super_admin": admin, "other_org": other}[role]


@pytest.mark.parametrize("role", ROLES)
def test_role_matrix_of_the_teams_routes(client, tokens, stripe_env, role):
    org = tokens.org
    buy_team(org, stripe_env)  # 3 members: 3 seats
    headers = role_headers(role, tokens)
    leaver = join(org, "leaver@example.com")  # 4 members: 4 seats
    pending = invitations.invite(org.admin, email="pending@example.com").invitation.id

    steps = [
        ("GET", "/api/billing/entitlements", None, OK, OK, OK),
        ("GET", "/api/org/members", None, OK, OK, OK),
        ("POST", "/api/org/invitations", {"email": f"new-{role}@example.com"}, FORBIDDEN, OK,
         (409, "SEAT_LIMIT_REACHED")),  # Globex: free tier, 2 of 2 seats
        ("DELETE", f"/api/org/invitations/{pending}", None, FORBIDDEN, OK, (404, "INVITATION_NOT_FOUND")),
        ("POST", "/api/subscriptions/seats", {"seats": 6, "preview": True}, FORBIDDEN, OK, (404, "SUBSCRIPTION_NOT_FOUND")),
        ("DELETE", f"/api/org/members/{leaver.user_id}", None, FORBIDDEN, OK, (404, "USER_NOT_FOUND")),
        ("POST", "/api/subscriptions/buy", {"subscriptionPeriodId": period_id("team", "MONTHLY"), "seats": 3}, FORBIDDEN,
         (409, "SUBSCRIPTION_ALREADY_ACTIVE"), OK),
    ]
    seen = {}
    for method, path, json, member, admin, other in steps:
        response = client.request(method, path, headers=headers, json=json)
        got = (response.status_code, response.json().get("error_code"))
        assert got == expected(role, member, admin, other), f"{role} {method} {path}: {response.text}"
        seen[(method, path)] = response.json()

    with session_scope() as s:
        revoked = s.get(Invitation, pending).revoked_at is not None
    acme_members = 4 if role not in ("admin", "super_admin") else 3
    assert revoked == (role in ("admin", "super_admin"))
    assert quantity_at_stripe(org, stripe_env) == acme_members  # a removal lowered it; nothing else did
    listed, granted = seen[("GET", "/api/org/members")], seen[("GET", "/api/billing/entitlements")]
    if role in ("member", "admin", "super_admin"):
        assert listed["seats"] == {"used": 4, "limit": None, "purchased": 4} and granted["plan"]["key"] == "team"
    if role == "other_org":
        assert listed["seats"] == {"used": 2, "limit": 2, "purchased": None}
        assert granted["plan"] is None


def test_entitlements_answer_the_free_tier_then_the_live_plan(client, tokens, stripe_env):
    body = ok(client.get("/api/billing/entitlements", headers=tokens.member))
    assert body == {
        "success": True, "plan": None, "access": False,
        "features": {"api_access": False, "priority_support": False, "sso": False},
        "limits": {"projects": {"limit": 1, "used": None}, "seats": {"limit": 2, "used": 3}},
    }
    buy(tokens.org, "business", sandbox=stripe_env)
    body = ok(client.get("/api/billing/entitlements", headers=tokens.member))
    assert body["plan"] == {"key": "business", "name": "Business"} and body["access"] is True
    assert body["features"] == {"api_access": True, "priority_support": True, "sso": True}
    assert body["limits"] == {"projects": {"limit": None, "used": None}, "seats": {"limit": None, "used": 3}}


def test_members_and_invitations_shapes(client, tokens, stripe_env):
    buy(tokens.org, "pro", sandbox=stripe_env)
    created = ok(client.post("/api/org/invitations", headers=tokens.admin, json={"email": "Carol@Example.com", "role": "admin"}))
    assert set(created) == {"success", "invitation", "inviteUrl", "costPreview"}
    invitation = created["invitation"]
    assert set(invitation) == {"id", "email", "role", "expiresAt"}
    assert (invitation["email"], invitation["role"], created["costPreview"]) == ("carol@example.com", "admin", None)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", invitation["expiresAt"])  # as every time the API answers
    assert created["inviteUrl"].startswith("http://127.0.0.1:3999/invite/inv_")

    body = ok(client.get("/api/org/members", headers=tokens.member))
    assert set(body) == {"success", "members", "invitations", "seats"}
    assert [m["email"] for m in body["members"]] == ["admin@acme.example", "boss@acme.example", "member@acme.example"]
    assert set(body["members"][0]) == {"userId", "email", "name", "role"}
    assert [m["role"] for m in body["members"]] == ["admin", "super_admin", "member"]
    assert body["invitations"] == [invitation]
    assert body["seats"] == {"used": 3, "limit": 15, "purchased": None}

    carol = invitee("carol@example.com")
    invitations.accept(carol, token_of(created["inviteUrl"]))
    body = ok(client.get("/api/org/members", headers=tokens.admin))
    assert body["invitations"] == [] and body["seats"]["used"] == 4
    removed = ok(client.delete(f"/api/org/members/{carol.user_id}", headers=tokens.admin))
    assert removed["seats"] == {"used": 3, "limit": 15, "purchased": None}


def test_per_seat_invitation_shows_its_cost_and_seats_change(client, tokens, stripe_env):
    buy_team(tokens.org, stripe_env)  # 3 members: 3 seats
    created = ok(client.post("/api/org/invitations", headers=tokens.admin, json={"email": "dave@example.com"}))
    cost = created["costPreview"]
    assert set(cost) == {"seatsAdded", "amount", "currency", "interval", "proratedAmount", "message"}
    assert (cost["seatsAdded"], cost["amount"], cost["currency"], cost["interval"]) == (1, 800, "usd", "month")
    assert cost["message"].startswith("adds $8.00 a month; $") and "now, prorated" in cost["message"]

    preview = ok(client.post("/api/subscriptions/seats", headers=tokens.admin, json={"seats": 5, "preview": True}))
    assert (preview["fromSeats"], preview["toSeats"], preview["applied"], preview["recurringAmount"]) == (3, 5, False, 4000)
    assert preview["seats"] == {"used": 3, "limit": None, "purchased": 3}
    done = ok(client.post("/api/subscriptions/seats", headers=tokens.admin, json={"seats": 5}))
    assert done["applied"] and done["seats"]["purchased"] == 5 and quantity_at_stripe(tokens.org, stripe_env) == 5
    err(client.post("/api/subscriptions/seats", headers=tokens.admin, json={"seats": 2}), 422, "VALIDATION_ERROR")  # min 3
    add_membership(tokens.org.id, invitee("fourth@example.com").user_id)
    err(client.post("/api/subscriptions/seats", headers=tokens.admin, json={"seats": 3}), 409, "SEATS_BELOW_MEMBERS")
    err(client.post("/api/subscriptions/seats", headers=tokens.admin, json={"seats": 0}), 422, "VALIDATION_ERROR")
    err(client.post("/api/subscriptions/seats", headers=tokens.admin, json={"seats": "5"}), 422, "VALIDATION_ERROR")
    err(client.post("/api/subscriptions/seats", headers=tokens.admin, json={"seats": 5, "extra": 1}), 422, "VALIDATION_ERROR")


def test_a_coupon_holder_is_shown_the_seat_price_it_will_pay(client, tokens, stripe_env):
    """50% off forever: a seat adds $4.00 a month, not the $8.00 list price, beside Stripe's prorated
    figure, and buying seats shows each period's bill after the discount."""
    buy_team(tokens.org, stripe_env)  # 3 members: 3 seats at $8
    c = stripe_env.client
    sub = stripe_subscription(tokens.org, stripe_env)
    c.v1.subscriptions.update(sub.id, params={"discounts": [{"coupon": c.v1.coupons.create(params={"percent_off": 50, "duration": "forever"}).id}]})
    created = ok(client.post("/api/org/invitations", headers=tokens.admin, json={"email": "dave@example.com"}))
    cost = created["costPreview"]
    assert (cost["seatsAdded"], cost["amount"]) == (1, 400)
    assert cost["message"].startswith("adds $4.00 a month; $") and 0 < cost["proratedAmount"] <= 400
    invitations.accept(invitee("dave@example.com"), token_of(created["inviteUrl"]))
    pending = c.v1.invoice_items.list(params={"customer": sub.customer, "pending": True}).data
    assert sum(ii.amount for ii in pending) == cost["proratedAmount"]  # what Stripe will bill for it

    preview = ok(client.post("/api/subscriptions/seats", headers=tokens.admin, json={"seats": 6, "preview": True}))
    assert (preview["fromSeats"], preview["recurringAmount"]) == (4, 6 * 400)
    renewal = c.v1.invoices.create_preview(params={"subscription": sub.id, "subscription_details": {
        "items": [{"id": sub["items"]["data"][0]["id"], "quantity": 6}], "proration_behavior": "none"}})
    assert renewal.total - sum(ii.amount for ii in pending) == preview["recurringAmount"]


def _pending(c, customer):
    return sum(ii.amount for ii in c.v1.invoice_items.list(params={"customer": customer, "pending": True}).data)


def test_the_prorated_figure_of_a_second_seat_is_that_seat_alone(client, tokens, stripe_env, fast_password_hashing):
    """SEAT_PRORATION=create_prorations (the default): the first accepted invitation leaves a pending
    proration for the next invoice; the second invitation's "$X now, prorated" is what the second seat
    adds, not that plus the first seat's pending proration."""
    buy_team(tokens.org, stripe_env)  # 3 members: 3 seats at $8
    c = stripe_env.client
    sub = stripe_subscription(tokens.org, stripe_env)
    first = ok(client.post("/api/org/invitations", headers=tokens.admin, json={"email": "dave@example.com"}))
    invitations.accept(invitee("dave@example.com"), token_of(first["inviteUrl"]))
    after_first = _pending(c, sub.customer)
    assert after_first == first["costPreview"]["proratedAmount"] > 0

    second = ok(client.post("/api/org/invitations", headers=tokens.admin, json={"email": "erin@example.com"}))
    invitations.accept(invitee("erin@example.com"), token_of(second["inviteUrl"]))
    shown = second["costPreview"]
    assert shown["proratedAmount"] == _pending(c, sub.customer) - after_first, shown["message"]


def test_the_seats_preview_prorated_amount_is_this_change_alone(client, tokens, stripe_env):
    buy_team(tokens.org, stripe_env)
    c = stripe_env.client
    sub = stripe_subscription(tokens.org, stripe_env)
    ok(client.post("/api/subscriptions/seats", headers=tokens.admin, json={"seats": 5, "preview": False}))
    after_first = _pending(c, sub.customer)
    preview = ok(client.post("/api/subscriptions/seats", headers=tokens.admin, json={"seats": 6, "preview": True}))
    assert preview["amountDueNow"] == 0  # create_prorations: on the next invoice
    ok(client.post("/api/subscriptions/seats", headers=tokens.admin, json={"seats": 6, "preview": False}))
    assert preview["proratedAmount"] == _pending(c, sub.customer) - after_first > 0


def test_with_tax_both_seat_figures_are_what_the_customer_pays(client, tokens, stripe_env):
    """Automatic tax (US 8% in the sandbox): "adds $X a month" is what each renewal bill grows by, tax
    included, as the prorated figure beside it is."""
    buy_team(tokens.org, stripe_env)  # 3 members: 3 seats at $8
    c = stripe_env.client
    sub = stripe_subscription(tokens.org, stripe_env)
    c.v1.customers.update(sub.customer, params={"address": {"country": "US", "postal_code": "94103", "line1": "1 Main St", "city": "SF", "state": "CA"}})
    c.v1.subscriptions.update(sub.id, params={"automatic_tax": {"enabled": True}})
    item = sub["items"]["data"][0]["id"]

    def renewal(seats):
        return c.v1.invoices.create_preview(params={"subscription": sub.id, "subscription_details": {
            "items": [{"id": item, "quantity": seats}], "proration_behavior": "none"}}).total

    cost = ok(client.post("/api/org/invitations", headers=tokens.admin, json={"email": "dave@example.com"}))["costPreview"]
    assert cost["amount"] == renewal(4) - renewal(3) == 864, cost["message"]
    assert cost["message"] == "adds $8.64 a month; $8.64 now, prorated (on the next invoice)"
    preview = ok(client.post("/api/subscriptions/seats", headers=tokens.admin, json={"seats": 6, "preview": True}))
    assert preview["recurringAmount"] == renewal(6) == 6 * 864


def test_a_seat_price_without_a_renewal_to_preview_is_the_list_price(client, tokens, stripe_env, monkeypatch):
    """Set to cancel, a subscription may have no next invoice to preview (Stripe's invoice_upcoming_none,
    which the sandbox does not answer here, so it stands in): the seat's price per period is then its
    list price, and the invitation still shows its cost rather than none."""
    buy_team(tokens.org, stripe_env)  # 3 members: 3 seats at $8
    real_call = gateway.call

    def no_renewal(fn, *args, **kwargs):
        details = (kwargs.get("params") or {}).get("subscription_details") or {}
        if fn.__name__ == "create_preview" and details.get("proration_behavior") == "none":
            raise gateway.StripeFailure("No upcoming invoices for customer", status=400, code="invoice_upcoming_none")
        return real_call(fn, *args, **kwargs)

    monkeypatch.setattr(gateway, "call", no_renewal)
    cost = ok(client.post("/api/org/invitations", headers=tokens.admin, json={"email": "dave@example.com"}))["costPreview"]
    assert (cost["seatsAdded"], cost["amount"]) == (1, 800) and cost["message"].startswith("adds $8.00 a month")


def test_error_codes_of_the_teams_routes(client, tokens, stripe_env):
    h = tokens.admin
    err(client.post("/api/org/invitations", headers=h, json={"email": "carol@example.com"}), 409, "SEAT_LIMIT_REACHED")
    buy(tokens.org, "pro", sandbox=stripe_env)
    err(client.post("/api/subscriptions/seats", headers=h, json={"seats": 5}), 409, "NOT_PER_SEAT")
    err(client.post("/api/org/invitations", headers=h, json={"email": "member@acme.example"}), 409, "ALREADY_MEMBER")
    err(client.post("/api/org/invitations", headers=h, json={"email": "not-an-email"}), 422, "VALIDATION_ERROR")
    err(client.post("/api/org/invitations", headers=h, json={"email": "x@example.com", "role": "owner"}), 422, "VALIDATION_ERROR")
    err(client.post("/api/org/invitations", headers=h, json={"email": "x@example.com", "role": "super_admin"}), 403, "FORBIDDEN")
    ok(client.post("/api/org/invitations", headers=tokens.super_admin, json={"email": "x@example.com", "role": "super_admin"}))
    invitation = ok(client.post("/api/org/invitations", headers=h, json={"email": "y@example.com"}))["invitation"]
    ok(client.delete(f"/api/org/invitations/{invitation['id']}", headers=h))
    err(client.delete(f"/api/org/invitations/{invitation['id']}", headers=h), 409, "INVITATION_REVOKED")
    err(client.delete("/api/org/invitations/999999", headers=h), 404, "INVITATION_NOT_FOUND")
    err(client.delete("/api/org/invitations/abc", headers=h), 422, "VALIDATION_ERROR")
    # The last admin: Acme has an admin and a super admin; removing both is refused at the last one.
    ok(client.delete(f"/api/org/members/{tokens.org.admin.user_id}", headers=tokens.super_admin))
    boss = ok(client.get("/api/org/members", headers=tokens.super_admin))["members"][0]
    assert boss["role"] == "super_admin"
    err(client.delete(f"/api/org/members/{boss['userId']}", headers=tokens.super_admin), 409, "LAST_ADMIN")
    err(client.delete("/api/org/members/999999", headers=tokens.super_admin), 404, "USER_NOT_FOUND")
    # A plan change below the members: Starter (3 seats) with 4 members.
    add_membership(tokens.org.id, invitee("four@example.com").user_id)
    add_membership(tokens.org.id, invitee("five@example.com").user_id)
    err(client.post("/api/subscriptions/change", headers=tokens.super_admin,
                    json={"subscriptionPeriodId": period_id("starter", "MONTHLY"), "preview": True}), 409, "SEAT_LIMIT_EXCEEDED")


def test_buy_takes_seats_for_per_seat_plans_only(client, tokens, stripe_env):
    team = period_id("team", "MONTHLY")
    err(client.post("/api/subscriptions/buy", headers=tokens.admin, json={"subscriptionPeriodId": team, "seats": 2}), 422,
        "VALIDATION_ERROR")  # below min_seats
    add_membership(tokens.org.id, invitee("fourth@example.com").user_id)
    err(client.post("/api/subscriptions/buy", headers=tokens.admin, json={"subscriptionPeriodId": team, "seats": 3}), 409,
        "SEATS_BELOW_MEMBERS")  # 4 members
    err(client.post("/api/subscriptions/buy", headers=tokens.admin,
                    json={"subscriptionPeriodId": period_id("starter", "MONTHLY"), "seats": 3}), 422, "VALIDATION_ERROR")
    started = ok(client.post("/api/subscriptions/buy", headers=tokens.admin, json={"subscriptionPeriodId": team, "seats": 6}))
    item = stripe_env.client.v1.checkout.sessions.line_items.list(started["sessionId"]).data[0]
    assert (item.quantity, item.amount_total) == (6, 4800)
    default = ok(client.post("/api/subscriptions/buy", headers=tokens.admin, json={"subscriptionPeriodId": team}))
    assert stripe_env.client.v1.checkout.sessions.line_items.list(default["sessionId"]).data[0].quantity == 4  # the members


def invitation_emails_to(address: str) -> int:
    with session_scope() as s:
        return s.exec(select(func.count()).select_from(Notification)
                      .where(Notification.kind == "invitation", Notification.recipients.contains(address))).one()


def test_invitation_emails_to_one_address_are_limited(client, tokens, roomy_free_tier, fresh_limits):
    # Anyone can sign up and be an admin, and the email carries their org and inviter names: re-inviting
    # one address must not turn the platform's mail into a cannon aimed at it.
    for _ in range(5):  # RATE_LIMIT_INVITATION_EMAIL's default: 5 an hour
        ok(client.post("/api/org/invitations", headers=tokens.admin, json={"email": "victim@example.org"}))
    for headers, email in [(tokens.admin, "victim@example.org"), (tokens.admin, " Victim@Example.ORG"),
                           (tokens.other_admin, "victim@example.org")]:  # per address, whichever org invites
        refused = err(client.post("/api/org/invitations", headers=headers, json={"email": email}), 429, "RATE_LIMITED")
        assert "Too many invitations were sent to this email address" in refused["message"]
    assert invitation_emails_to("victim@example.org") == 5
    with session_scope() as s:
        pending = s.exec(select(Invitation).where(Invitation.email == "victim@example.org", Invitation.revoked_at.is_(None))).all()
    assert len(pending) == 1  # the last one sent still works
    ok(client.post("/api/org/invitations", headers=tokens.admin, json={"email": "someone-else@example.org"}))


def test_one_organization_cannot_email_any_number_of_addresses(client, tokens, roomy_free_tier, fresh_limits):
    # The per-address limit alone let one org invite (and revoke, to keep its seats free) a new
    # address each time: a relay mailing anyone. RATE_LIMIT_INVITATION_ORG's default: 20 an hour.
    for i in range(20):
        sent = ok(client.post("/api/org/invitations", headers=tokens.admin, json={"email": f"target{i}@example.org"}))
        ok(client.delete(f"/api/org/invitations/{sent['invitation']['id']}", headers=tokens.admin))
    refused = err(client.post("/api/org/invitations", headers=tokens.super_admin, json={"email": "target20@example.org"}),
                  429, "RATE_LIMITED")  # whichever admin sends it
    assert "Too many invitations were sent from your organization" in refused["message"]
    assert 1 <= int(client.post("/api/org/invitations", headers=tokens.admin,
                                json={"email": "target21@example.org"}).headers["retry-after"]) <= 3600
    assert invitation_emails_to("target20@example.org") == invitation_emails_to("target21@example.org") == 0
    ok(client.post("/api/org/invitations", headers=tokens.other_admin, json={"email": "target20@example.org"}))  # another org


def test_the_members_page_counts_in_the_organizations_invitation_limit(client, tokens, roomy_free_tier, monkeypatch, fresh_limits):
    from billing_app.pages.members import MembersState
    from billing_app.settings import get_settings

    monkeypatch.setenv("RATE_LIMIT_INVITATION_ORG", "2/hour")
    get_settings.cache_clear()
    ok(client.post("/api/org/invitations", headers=tokens.admin, json={"email": "first@example.org"}))
    tab = signed_in_page(MembersState, "admin@acme.example")
    run_async(run_event(MembersState.invite.fn(tab, {"email": "second@example.org", "role": "member"})))
    assert tab.error == ""
    run_async(run_event(MembersState.invite.fn(tab, {"email": "third@example.org", "role": "member"})))
    assert tab.error.startswith("Too many invitations were sent from your organization")
    assert invitation_emails_to("third@example.org") == 0
    err(client.post("/api/org/invitations", headers=tokens.admin, json={"email": "fourth@example.org"}), 429, "RATE_LIMITED")


def org_invitation_limit(monkeypatch, value: str, **others: str) -> None:
    from billing_app.settings import get_settings

    for name, limit in {"RATE_LIMIT_INVITATION_ORG": value, **others}.items():
        monkeypatch.setenv(name, limit)
    get_settings.cache_clear()


def test_invitations_refused_as_already_member_do_not_spend_the_orgs_limit(client, tokens, roomy_free_tier, monkeypatch, fresh_limits):
    # A bulk invite (a CSV of the team) naturally names people already in the org: nothing is sent.
    org_invitation_limit(monkeypatch, "3/hour")
    for _ in range(3):
        err(client.post("/api/org/invitations", headers=tokens.admin, json={"email": "member@acme.example"}), 409, "ALREADY_MEMBER")
    for i in range(3):
        ok(client.post("/api/org/invitations", headers=tokens.admin, json={"email": f"new-hire{i}@example.org"}))
    err(client.post("/api/org/invitations", headers=tokens.admin, json={"email": "new-hire3@example.org"}), 429, "RATE_LIMITED")


def test_another_org_spending_an_address_limit_does_not_spend_this_orgs(client, tokens, roomy_free_tier, monkeypatch, fresh_limits):
    # Globex (anyone can sign up as an admin) spends new-hire@'s address limit: Acme's admin retrying
    # that invitation is refused, and sends nothing, so Acme's own limit is untouched.
    org_invitation_limit(monkeypatch, "3/hour", RATE_LIMIT_INVITATION_EMAIL="2/hour")
    for _ in range(2):
        ok(client.post("/api/org/invitations", headers=tokens.other_admin, json={"email": "new-hire@example.org"}))
    for _ in range(3):
        err(client.post("/api/org/invitations", headers=tokens.admin, json={"email": "new-hire@example.org"}), 429, "RATE_LIMITED")
    ok(client.post("/api/org/invitations", headers=tokens.admin, json={"email": "someone-else@example.org"}))


@pytest.mark.parametrize("email", ["a\x00b@example.com", "a\rb@example.com", "ab@exa\u200bmple.com"])
def test_an_invitation_to_an_email_with_a_control_character_is_a_clear_refusal(client, tokens, roomy_free_tier, email):
    """A NUL passed the email check and reached PostgreSQL, which answered a 500 (SQLite stored it)."""
    def invitations_made():
        with session_scope() as s:
            return s.exec(select(func.count()).select_from(Invitation)).one()

    before = invitations_made()
    refused = err(client.post("/api/org/invitations", headers=tokens.admin, json={"email": email, "role": "member"}), 422, "VALIDATION_ERROR")
    assert refused["message"] == "Enter a valid email address." and invitations_made() == before
