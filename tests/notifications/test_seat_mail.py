"""A seat change alone (same price, another quantity) is confirmed by email once per change, from
the REST route, the members following the quantity, and the Stripe portal; each cause's webhooks
delivered five times send one email, and the plan-change opt-out covers it."""

from __future__ import annotations

from billing_app.auth import members
from billing_app.db import session_scope
from billing_app.notifications import outbox
from billing_app.notifications.kinds import Kind
from tests.api.helpers import bearer, token_for
from tests.notifications.helpers import deliver
from tests.teams.helpers import buy_team, join, mirror_quantity, quantity_at_stripe, stripe_subscription


def seat_mail(smtp) -> list[tuple[str, list[str]]]:
    """Each seat change's email and who got it (one message per recipient, grouped by cause: the key
    without its recipient digest)."""
    causes: dict[str, tuple[str, list[str]]] = {}
    for r in smtp.of_kind("seats_changed"):
        causes.setdefault(r.key.rsplit(":", 1)[0], (r.subject, []))[1].extend(r.to)
    return [(subject, sorted(to)) for subject, to in causes.values()]


def test_each_seat_change_is_confirmed_once_with_the_old_and_new_counts(org, stripe_env, webhook_client, smtp):
    buy_team(org, stripe_env)  # two members: the Team plan's minimum, 3 seats
    customer = stripe_subscription(org, stripe_env).customer
    stripe_env.client.v1.customers.update(customer, params={"email": "billing@acme.example"})
    deliver(webhook_client, stripe_env, smtp)
    assert quantity_at_stripe(org, stripe_env) == 3
    assert seat_mail(smtp) == [] and smtp.of_kind("plan_changed") == []  # the purchase is no seat change

    # 1. Bought through the REST route (what the members page calls too).
    answer = webhook_client.post("/api/subscriptions/seats", json={"seats": 5}, headers=bearer(token_for(org.admin)))
    assert answer.status_code == 200, answer.text
    deliver(webhook_client, stripe_env, smtp)
    everyone = ["admin@acme.example", "billing@acme.example"]
    assert seat_mail(smtp) == [("[Acme Billing] Your Team plan now has 5 seats", everyone)]
    mail = smtp.of_kind("seats_changed")[0]
    assert "now has 5 seats (was 3)" in mail.part("plain") and "<strong>5 seats</strong> (was 3)" in mail.part("html")

    # 2. The quantity following the members: removing one gives back the unused seats (5 -> max(3, 3)).
    carol = join(org, "carol@example.com")
    members.remove_member(org.admin, carol.user_id)
    assert mirror_quantity(org) == 3
    deliver(webhook_client, stripe_env, smtp)
    assert [s for s, _ in seat_mail(smtp)] == [
        "[Acme Billing] Your Team plan now has 5 seats", "[Acme Billing] Your Team plan now has 3 seats",
    ]
    assert "now has 3 seats (was 5)" in smtp.of_kind("seats_changed")[-1].part("plain")

    # 3. The Stripe portal, with the admin having turned plan and seat changes off: the billing email only.
    with session_scope() as s:
        outbox.set_preference(s, org.admin.user_id, org.id, Kind.PLAN_CHANGED, False)
    from billing_app.billing.portal import portal_url

    session_id = portal_url(org.admin).rsplit("/", 1)[1]
    sub_id = stripe_subscription(org, stripe_env).id
    done = stripe_env.http.post(f"/portal/{session_id}/quantity", data={"subscription": sub_id, "quantity": "4"})
    assert "msg=" in done.headers["location"]
    deliver(webhook_client, stripe_env, smtp)
    assert seat_mail(smtp)[2:] == [("[Acme Billing] Your Team plan now has 4 seats", ["billing@acme.example"])]
    assert len(seat_mail(smtp)) == 3 and smtp.of_kind("plan_changed") == []


def test_a_plan_change_with_other_seats_is_one_plan_change_email(org, stripe_env, webhook_client, smtp):
    """Switching plans is confirmed by the plan-change email alone, never also as a seat change."""
    from billing_app.billing.subscriptions import change_plan
    from tests.billing.helpers import buy, period_id

    buy(org, "starter", sandbox=stripe_env)
    change_plan(org.admin, period_id("team", "MONTHLY"), preview=False)
    deliver(webhook_client, stripe_env, smtp)
    assert len(smtp.of_kind("plan_changed")) == 1 and seat_mail(smtp) == []


def test_a_seat_change_made_again_in_the_same_period_is_confirmed_again(org, stripe_env, webhook_client, smtp):
    """3 -> 5, back to 3, 3 -> 5 again in one billing period: three changes billed, three emails (the
    third's key was the first's). Each change synced again (its webhooks redelivered, another sync) stays one email."""
    from billing_app.billing.seat_billing import change_seats
    from billing_app.billing.sync import sync_customer

    buy_team(org, stripe_env)  # two members: 3 seats
    deliver(webhook_client, stripe_env, smtp)
    for seats in (5, 3, 5):
        change_seats(org.admin, seats, preview=False)
        deliver(webhook_client, stripe_env, smtp)
        sync_customer(stripe_subscription(org, stripe_env).customer)
        deliver(webhook_client, stripe_env, smtp)
    assert [s for s, _ in seat_mail(smtp)] == [
        "[Acme Billing] Your Team plan now has 5 seats", "[Acme Billing] Your Team plan now has 3 seats",
        "[Acme Billing] Your Team plan now has 5 seats",
    ]


def test_a_plan_change_made_again_in_the_same_period_is_confirmed_again(org, stripe_env, webhook_client, smtp):
    """Starter -> Pro -> Starter -> Pro in one period (at Stripe, as from its dashboard): three emails, the
    last no longer lost to the first's key; each change's webhooks delivered five times stay one email."""
    from billing_app.billing.sync import sync_customer
    from billing_app.models import PlanPeriod
    from tests.billing.helpers import buy, period_id

    buy(org, "starter", sandbox=stripe_env)
    deliver(webhook_client, stripe_env, smtp)
    sub = stripe_subscription(org, stripe_env)
    with session_scope() as s:
        price = {plan: s.get(PlanPeriod, period_id(plan, "MONTHLY")).stripe_price_id for plan in ("starter", "pro")}
    for plan in ("pro", "starter", "pro"):
        item = stripe_env.client.v1.subscriptions.retrieve(sub.id)["items"].data[0].id
        stripe_env.client.v1.subscriptions.update(sub.id, params={"items": [{"id": item, "price": price[plan]}],
                                                                  "proration_behavior": "none"})
        deliver(webhook_client, stripe_env, smtp)
        sync_customer(sub.customer)
        deliver(webhook_client, stripe_env, smtp)
    assert [r.subject for r in smtp.of_kind("plan_changed")] == [
        "[Acme Billing] You are now on Pro", "[Acme Billing] You are now on Starter", "[Acme Billing] You are now on Pro",
    ]
