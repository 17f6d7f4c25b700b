"""The access rule, one case per status, on real rows (no Stripe needed)."""

from datetime import timedelta

import pytest

from billing_app.billing.entitlements import entitlement
from billing_app.models import Organization, OrgSubscription, utcnow

NOW = utcnow()


@pytest.fixture
def org_id(db):
    org = Organization(name="Rules Inc")
    db.add(org)
    db.commit()
    return org.id


def add(db, org_id, **fields):
    defaults = dict(
        org_id=org_id, stripe_id=f"sub_{len(fields)}_{fields.get('status')}_{fields.get('one_off')}", status="active",
        current_period_start=NOW - timedelta(days=10), current_period_end=NOW + timedelta(days=20), started_at=NOW - timedelta(days=40),
    )
    row = OrgSubscription(**(defaults | fields))
    db.add(row)
    db.commit()
    return row


@pytest.mark.parametrize(
    ("fields", "access", "reason"),
    [
        ({}, True, "active"),
        ({"status": "trialing"}, True, "trialing"),
        ({"cancel_at_period_end": True}, True, "cancels_at_period_end"),
        # Ended at once or by dunning: no access, even though the paid period had time left.
        ({"status": "canceled"}, False, "canceled"),
        ({"status": "canceled", "current_period_end": NOW - timedelta(days=1)}, False, "canceled"),
        ({"status": "past_due", "current_period_start": NOW - timedelta(days=2)}, True, "past_due_grace"),
        ({"status": "past_due", "current_period_start": NOW - timedelta(days=8)}, False, "past_due"),
        ({"status": "unpaid"}, False, "unpaid"),
        ({"status": "incomplete_expired"}, False, "incomplete_expired"),
        ({"paused": True}, False, "paused"),
        ({"status": "paused"}, False, "paused"),
        ({"one_off": True, "current_period_end": None}, True, "lifetime"),
    ],
)
def test_access_rule(db, org_id, fields, access, reason):
    add(db, org_id, **fields)
    with_access = entitlement(db, org_id, now=NOW)
    assert (with_access.access, with_access.reason) == (access, reason)


def test_no_subscription_means_no_access(db, org_id):
    assert (entitlement(db, org_id).access, entitlement(db, org_id).reason) == (False, "no_subscription")


def test_a_live_subscription_wins_over_an_older_canceled_one(db, org_id):
    add(db, org_id, stripe_id="sub_old", status="canceled", started_at=NOW - timedelta(days=400), current_period_end=NOW - timedelta(days=300))
    add(db, org_id, stripe_id="sub_new", status="active", started_at=NOW - timedelta(days=5))
    assert entitlement(db, org_id, now=NOW).subscription.stripe_id == "sub_new"


def test_lifetime_wins_over_a_subscription(db, org_id):
    add(db, org_id, stripe_id="sub_x", status="past_due", current_period_start=NOW - timedelta(days=30))
    add(db, org_id, stripe_id="pi_life", one_off=True)
    assert entitlement(db, org_id, now=NOW).lifetime
