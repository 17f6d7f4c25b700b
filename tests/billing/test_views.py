"""What the pages render comes from the database alone: no Stripe call, and the right labels."""

from sqlmodel import select

from billing_app.billing import gateway
from billing_app.billing.payments import PaymentFilter, list_payments
from billing_app.billing.views import billing_view, change_options, pricing_view
from billing_app.db import session_scope
from billing_app.models import OrgSubscription
from tests.billing.helpers import buy


def test_rendering_pricing_billing_and_payments_makes_no_stripe_call(org, stripe_env):
    buy(org, sandbox=stripe_env)
    before = gateway.call_counter["count"]
    with session_scope() as s:
        pricing_view(s, org.id)
        pricing_view(s, None)
        billing_view(s, org.id)
        change_options(s, org.id)
        list_payments(s, org.admin, PaymentFilter())
    assert gateway.call_counter["count"] == before


def test_the_counter_does_count_gateway_calls(stripe_env):
    before = gateway.call_counter["count"]
    gateway.call(gateway.stripe_client().v1.prices.list, params={"limit": 1})
    assert gateway.call_counter["count"] == before + 1


def test_pricing_marks_the_current_plan_and_hides_legacy_from_new_orgs(org, stripe_env):
    with session_scope() as s:
        before = pricing_view(s, org.id)
    assert [p.key for p in before.plans] == ["starter", "pro", "team", "business"]
    assert not before.has_subscription
    pro = before.plans[1]
    assert pro.most_popular and pro.monthly.price == "$29.00" and pro.monthly.interval == "/ month"
    assert pro.monthly.trial == "14-day free trial"
    assert before.plans[3].lifetime.interval == "one-time · lifetime"
    buy(org, sandbox=stripe_env)
    with session_scope() as s:
        after = pricing_view(s, org.id)
    assert after.has_subscription and [p.is_current for p in after.plans] == [True, False, False, False]


def test_billing_view_labels(org, stripe_env, db):
    with session_scope() as s:
        assert not billing_view(s, org.id).has_subscription
    buy(org, sandbox=stripe_env)
    with session_scope() as s:
        view = billing_view(s, org.id)
    assert (view.plan_name, view.period, view.price, view.status) == ("Starter", "Monthly", "$9.00 / month", "Active")
    assert view.renewal_label == "Next renewal" and view.renewal_date and view.can_cancel and not view.can_reactivate
    sub = db.exec(select(OrgSubscription)).one()
    sub.cancel_at_period_end = True
    db.add(sub)
    db.commit()
    with session_scope() as s:
        view = billing_view(s, org.id)
    assert view.status.startswith("Cancels on ") and view.can_reactivate and not view.can_cancel
    with session_scope() as s:
        labels = [o.label for o in change_options(s, org.id)]
    assert "Pro — $29.00 / month" in labels and not any("Starter — $9.00 / month" == label for label in labels)
