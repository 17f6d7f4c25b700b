"""The model's shared facts: times come back as aware UTC, and each status decision is made once."""

from datetime import datetime, timedelta, timezone

import pytest

from billing_app.models import (
    ENDED_STATUSES,
    LIVE_STATUSES,
    MANAGEABLE_STATUSES,
    PAYMENT_PROBLEM_STATUSES,
    Organization,
    OrgSubscription,
    SubscriptionStatus,
)


def test_times_come_back_as_aware_utc_on_every_backend(db):
    berlin = timezone(timedelta(hours=1))
    created = datetime(2026, 3, 1, 13, 30, tzinfo=berlin)
    db.add(Organization(name="Zoned", created_at=created))
    db.add(Organization(name="Naive (taken as UTC)", created_at=datetime(2026, 3, 1, 12, 30)))
    db.commit()
    db.expire_all()
    zoned, naive = db.query(Organization).order_by(Organization.id).all()
    assert zoned.created_at == created and zoned.created_at.tzinfo == timezone.utc
    assert zoned.created_at.hour == 12
    assert naive.created_at == datetime(2026, 3, 1, 12, 30, tzinfo=timezone.utc)


def test_comparisons_in_queries_use_utc(db):
    db.add(Organization(name="Late", created_at=datetime(2026, 3, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))))
    db.commit()
    # 23:30 at UTC-5 is 04:30 UTC the next day.
    after = datetime(2026, 3, 2, 4, tzinfo=timezone.utc)
    assert db.query(Organization).filter(Organization.created_at > after).count() == 1


@pytest.mark.parametrize("status", list(SubscriptionStatus))
def test_predicates_agree_with_the_status_sets(status):
    sub = OrgSubscription(org_id=1, stripe_id="sub_x", status=status.value)
    assert sub.is_live == (status.value in LIVE_STATUSES)
    assert sub.is_manageable == (status.value in MANAGEABLE_STATUSES) == sub.holds_plan
    assert sub.has_ended == (status.value in ENDED_STATUSES)
    assert sub.has_payment_problem == (status.value in PAYMENT_PROBLEM_STATUSES)
    assert not (sub.is_live and sub.has_ended)


def test_a_lifetime_purchase_is_held_while_active_and_never_manageable():
    held = OrgSubscription(org_id=1, stripe_id="pi_1", status="active", one_off=True)
    refunded = OrgSubscription(org_id=1, stripe_id="pi_2", status="canceled", one_off=True)
    assert (held.is_live, held.holds_plan, held.is_manageable) == (True, True, False)
    assert (refunded.is_live, refunded.holds_plan, refunded.has_ended) == (False, False, True)


def test_the_enum_is_exactly_the_sdks_list_of_subscription_statuses():
    import ast
    import inspect

    from stripe import _subscription

    # `status: Union[Literal["active", ...], str]` in the SDK's resource class, at its pinned API version.
    tree = ast.parse(inspect.getsource(_subscription.Subscription))
    annotation = next(
        node.annotation for node in tree.body[0].body
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "status"
    )
    literals = {n.value for n in ast.walk(annotation) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert literals == {s.value for s in SubscriptionStatus}
