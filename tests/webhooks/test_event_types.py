"""The event types that re-sync a customer are ones Stripe sends, at the API version the SDK pins.

The list is the installed Stripe SDK's own: the `type` field of its Event resource, a
Literal of every event type at the SDK's pinned API version. A misspelt or retired type
in RESYNC_EVENT_TYPES would never arrive, and the change it stands for would go unseen.
"""

from __future__ import annotations

import typing

from stripe._api_version import _ApiVersion
from stripe._event import Event

from billing_app.sandbox import API_VERSION
from billing_app.webhooks.handlers import RESYNC_EVENT_TYPES


def stripe_event_types() -> frozenset[str]:
    return frozenset(typing.get_args(Event.__annotations__["type"]))


def test_the_sdk_list_is_the_one_of_the_api_version_we_speak():
    assert _ApiVersion.CURRENT == API_VERSION == "2026-10-28.endive"
    types = stripe_event_types()
    assert len(types) > 100 and {"invoice.paid", "customer.subscription.updated"} <= types


def test_every_resync_type_is_a_stripe_event_type():
    unknown = sorted(RESYNC_EVENT_TYPES - stripe_event_types())
    assert not unknown, f"not Stripe event types at API version {_ApiVersion.CURRENT}: {unknown}"
