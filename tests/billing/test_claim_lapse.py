"""A purchase claim that lapses while Stripe creates the session (the SDK's timeouts and retries
can outlast CLAIM_SECONDS): the request that took over keeps the org's one payable checkout."""

from datetime import timedelta

from billing_app.billing import gateway
from billing_app.billing.checkout import start_checkout
from billing_app.billing.customers import customer_id_for
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import PurchaseReservation, utcnow
from tests.billing.helpers import expect, period_id


def open_session_ids(stripe_env, org):
    params = {"customer": customer_id_for(org.id), "status": "open", "limit": 100}
    return [s.id for s in stripe_env.client.v1.checkout.sessions.list(params=params).data]


def claim_lapses_during_the_first_create(monkeypatch, org, meanwhile, fail_expire=False):
    """The first Checkout create at Stripe is slow: the org's claim runs out, then `meanwhile` (another
    tab's request) runs to its end, then the create answers. With fail_expire, no expire reaches Stripe."""
    sessions = gateway.stripe_client().v1.checkout.sessions
    real_call = gateway.call
    outcome = {}

    def call(fn, *args, **kwargs):
        if fn == sessions.create and "meanwhile" not in outcome:
            outcome["meanwhile"] = None  # the other tab's own create is not slow
            with session_scope() as s:
                s.get(PurchaseReservation, org.id).claimed_until = utcnow() - timedelta(seconds=1)
            try:
                outcome["meanwhile"] = meanwhile()
            except AppError as error:
                outcome["meanwhile"] = error
            created = real_call(fn, *args, **kwargs)
            outcome["slow_session_id"] = created["id"]
            return created
        if fn == sessions.expire and fail_expire:
            raise gateway.StripeFailure("connection reset", status=None)
        return real_call(fn, *args, **kwargs)

    monkeypatch.setattr(gateway, "call", call)
    return outcome


def test_the_slow_request_is_refused_and_its_session_expired(org, stripe_env, monkeypatch):
    outcome = claim_lapses_during_the_first_create(
        monkeypatch, org, lambda: start_checkout(org.admin, period_id("pro", "MONTHLY")))
    error = expect(ErrorCode.CHECKOUT_IN_PROGRESS, start_checkout, org.admin, period_id("starter", "MONTHLY"))
    assert "try again" in error.message
    other_tab = outcome["meanwhile"]
    assert not isinstance(other_tab, AppError), other_tab
    assert open_session_ids(stripe_env, org) == [other_tab.session_id]
    slow = stripe_env.client.v1.checkout.sessions.retrieve(outcome["slow_session_id"])
    assert slow.status == "expired"
    with session_scope() as s:
        assert s.get(PurchaseReservation, org.id).checkout_session_id == other_tab.session_id


def test_trying_again_leads_to_the_session_that_stands(org, stripe_env, monkeypatch):
    starter = period_id("starter", "MONTHLY")
    outcome = claim_lapses_during_the_first_create(monkeypatch, org, lambda: start_checkout(org.admin, starter))
    expect(ErrorCode.CHECKOUT_IN_PROGRESS, start_checkout, org.admin, starter)
    again = start_checkout(org.admin, starter)
    assert again.session_id == outcome["meanwhile"].session_id
    assert open_session_ids(stripe_env, org) == [again.session_id]


def test_an_expire_that_fails_does_not_hide_the_refusal(org, stripe_env, monkeypatch):
    outcome = claim_lapses_during_the_first_create(
        monkeypatch, org, lambda: start_checkout(org.admin, period_id("pro", "MONTHLY")), fail_expire=True)
    expect(ErrorCode.CHECKOUT_IN_PROGRESS, start_checkout, org.admin, period_id("starter", "MONTHLY"))
    # The slow request's URL was never handed out; the reservation still names the other tab's session.
    with session_scope() as s:
        assert s.get(PurchaseReservation, org.id).checkout_session_id == outcome["meanwhile"].session_id


def test_a_stripe_that_never_answers_is_given_up_on_before_a_claim_lapses(stripe_env, monkeypatch):
    """The client really applies the timeout and the retries, and their worst case fits in a claim."""
    import socket
    import threading

    from billing_app.billing import reservations
    from billing_app.settings import get_settings

    assert gateway.worst_case_call_seconds() < reservations.CLAIM_SECONDS
    silent = socket.create_server(("127.0.0.1", 0))
    attempts = []

    def accept_and_say_nothing():
        while True:
            try:
                connection, _ = silent.accept()
            except OSError:
                return
            attempts.append(connection)

    threading.Thread(target=accept_and_say_nothing, daemon=True).start()
    monkeypatch.setattr(gateway, "TIMEOUT_SECONDS", 0.3)
    monkeypatch.setenv("STRIPE_API_BASE", f"http://127.0.0.1:{silent.getsockname()[1]}")
    get_settings.cache_clear()
    gateway.reset_client()
    try:
        client = gateway.stripe_client()
        try:
            gateway.call(client.v1.customers.retrieve, "cus_silent")
        except gateway.StripeFailure:
            pass
        else:
            raise AssertionError("a Stripe that never answers was not given up on")
        assert len(attempts) == gateway.NETWORK_RETRIES + 1
    finally:
        silent.close()
        for connection in attempts:
            connection.close()
        gateway.reset_client()
