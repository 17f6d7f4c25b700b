"""The event types that re-sync a customer are ones Stripe sends, at the API version the SDK pins.

The list is the installed Stripe SDK's own: the `type` field of its Event resource, a
Literal of every event type at the SDK's pinned API version. A misspelt or retired type
in RESYNC_EVENT_TYPES would never arrive, and the change it stands for would go unseen.
"""

from __future__ import annotations

import time
import typing

from stripe._api_version import _ApiVersion
from stripe._event import Event

from billing_app.billing.subscriptions import change_plan
from billing_app.db import session_scope
from billing_app.models import PlanPeriod
from billing_app.sandbox import API_VERSION
from billing_app.webhooks import eventlog
from billing_app.webhooks.handlers import RESYNC_EVENT_TYPES
from tests.billing.helpers import buy, period_id, subscription
from tests.webhooks.helpers import rows, served_backend


def stripe_event_types() -> frozenset[str]:
    return frozenset(typing.get_args(Event.__annotations__["type"]))


def test_the_sdk_list_is_the_one_of_the_api_version_we_speak():
    assert _ApiVersion.CURRENT == API_VERSION == "2026-10-28.endive"
    types = stripe_event_types()
    assert len(types) > 100 and {"invoice.paid", "customer.subscription.updated"} <= types


def test_every_resync_type_is_a_stripe_event_type():
    unknown = sorted(RESYNC_EVENT_TYPES - stripe_event_types())
    assert not unknown, f"not Stripe event types at API version {_ApiVersion.CURRENT}: {unknown}"


def _eventually(predicate, timeout: float = 20.0) -> bool:
    """Whether `predicate()` becomes true within `timeout` (deliveries and the worker run on their own)."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.1)
    return predicate()


def test_a_scheduled_change_edited_at_stripe_reaches_the_mirror(org, stripe_env, db, monkeypatch):
    """An edit of the schedule alone (Dashboard or API) sends only subscription_schedule.updated."""
    buy(org, plan="business", sandbox=stripe_env)
    with served_backend(stripe_env, monkeypatch):
        change_plan(org.admin, period_id("starter", "MONTHLY"), preview=False)
        sub = subscription(db, org)
        assert sub.scheduled_period_id == period_id("starter", "MONTHLY")
        # The change's own events delivered and synced first: only the edit's events can tell the mirror.
        assert _eventually(lambda: not stripe_env.deliveries()["pending"] and not eventlog.counts().get("pending"))

        schedule = stripe_env.client.v1.subscription_schedules.retrieve(sub.stripe_schedule_id)
        current = schedule.phases[0]
        with session_scope() as session:
            pro_price = session.get(PlanPeriod, period_id("pro", "MONTHLY")).stripe_price_id
        stripe_env.client.v1.subscription_schedules.update(schedule.id, params={"end_behavior": "release", "phases": [
            {"items": [{"price": current["items"][0]["price"], "quantity": 1}],
             "start_date": current["start_date"], "end_date": current["end_date"]},
            {"items": [{"price": pro_price, "quantity": 1}], "proration_behavior": "none"},
        ]})

        def mirror_shows_pro() -> bool:
            return subscription(db, org).scheduled_period_id == period_id("pro", "MONTHLY")

        assert _eventually(mirror_shows_pro), "the billing page would still show the change to Starter"
    assert "subscription_schedule.updated" in {r.type for r in rows()}
