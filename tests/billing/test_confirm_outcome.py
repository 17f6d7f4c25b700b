"""The confirmation page's check, as its poller runs it (a plain function, outside the state lock)."""

import pytest

from billing_app.auth import accounts
from billing_app.billing import gateway
from billing_app.billing.checkout import start_checkout
from billing_app.db import session_scope
from billing_app.errors import AppError
from billing_app.pages.confirm import check_outcome
from tests.billing.helpers import make_org, period_id


def session_of(email, org_id):
    with session_scope() as s:
        token = accounts.login(s, email=email, password="a-long-password-1")
        accounts.switch_org(s, token, org_id)
    return token


def test_outcomes_follow_the_checkout(org, stripe_env):
    token = session_of("admin@acme.example", org.id)
    abandoned = start_checkout(org.admin, period_id("starter", "YEARLY"))
    stripe_env.client.v1.checkout.sessions.expire(abandoned.session_id)
    assert check_outcome(token, abandoned.session_id)[0] == "expired"

    started = start_checkout(org.admin, period_id("starter", "MONTHLY"))
    assert check_outcome(token, started.session_id) == ("processing", "", "")
    stripe_env.complete_checkout(started.session_id)
    phase, plan, renewal = check_outcome(token, started.session_id)
    assert (phase, plan) == ("success", "Starter") and renewal.startswith("Next renewal: ")


def test_a_foreign_session_is_not_found_and_a_bad_login_raises(org, stripe_env):
    other = make_org("Globex", "admin@globex.example", "member@globex.example")
    foreign = start_checkout(other.admin, period_id("starter", "MONTHLY"))
    assert check_outcome(session_of("admin@acme.example", org.id), foreign.session_id)[0] == "not_found"
    with pytest.raises(AppError):
        check_outcome("sess_forged", foreign.session_id)


def test_a_delayed_payment_still_clearing_is_not_called_failed(org, stripe_env, monkeypatch):
    """Stripe between checkout.session.completed and .async_payment_succeeded (SEPA, ACH: days):
    the session is complete and unpaid, its payment intent processing."""
    token = session_of("admin@acme.example", org.id)
    started = start_checkout(org.admin, period_id("business", "ALL_TIME"))
    stripe_env.complete_checkout(started.session_id, async_payment="succeeded")
    real_call, real_list = gateway.call, gateway.list_all

    def unpaid(obj):
        if isinstance(obj, dict) and obj.get("id") == started.session_id:
            obj["payment_status"] = "unpaid"
        return obj

    monkeypatch.setattr(gateway, "call", lambda fn, *a, **k: unpaid(real_call(fn, *a, **k)))
    monkeypatch.setattr(gateway, "list_all", lambda fn, p: [unpaid(o) for o in real_list(fn, p)])
    assert check_outcome(token, started.session_id) == ("clearing", "", "")


def test_a_delayed_payment_that_bounced_is_failed(org, stripe_env):
    token = session_of("admin@acme.example", org.id)
    started = start_checkout(org.admin, period_id("business", "ALL_TIME"))
    stripe_env.complete_checkout(started.session_id, async_payment="failed")
    assert check_outcome(token, started.session_id) == ("failed", "", "")
