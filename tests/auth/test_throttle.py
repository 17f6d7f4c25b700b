"""Login throttling: growing delays per (email, client) and per client; nobody can lock an owner out."""

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import select

from billing_app.auth import accounts, throttle
from billing_app.auth.accounts import Client
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode, RateLimited
from billing_app.models import KnownDevice, LoginThrottle, utcnow

PASSWORD = "correct-horse-battery"
OWNER_DEVICE = "dev_owner-laptop"


def register(email="ada@example.com"):
    with session_scope() as s:
        return accounts.register(s, email=email, password=PASSWORD, name="Ada", org_name="Engines")


def login(email, password=PASSWORD, client=Client(ip="10.0.0.1")):
    with session_scope() as s:
        return accounts.login(s, email=email, password=password, client=client)


def refused(email, password, client) -> RateLimited:
    with pytest.raises(RateLimited) as info:
        login(email, password, client)
    assert info.value.code == ErrorCode.TOO_MANY_ATTEMPTS
    return info.value


def fail(email, client, times=1):
    for _ in range(times):
        with pytest.raises(AppError) as info:
            login(email, "wrong-password-1", client)
        assert info.value.code == ErrorCode.INVALID_CREDENTIALS


def let_time_pass(db, seconds):
    """Move every hold back, as if `seconds` had passed."""
    for row in db.exec(select(LoginThrottle).where(LoginThrottle.next_allowed_at != None)).all():  # noqa: E711
        row.next_allowed_at -= timedelta(seconds=seconds)
        db.add(row)
    db.commit()


def test_an_attacker_elsewhere_cannot_lock_the_owner_out(db):
    """Six wrong passwords used to lock an email for everyone; now they slow only the guesser."""
    register()
    owner = Client(ip="192.0.2.10", device=OWNER_DEVICE)
    login("ada@example.com", client=owner)  # the owner's browser is now a known device
    attacker = Client(ip="203.0.113.66")
    fail("ada@example.com", attacker, times=5)
    refused("ada@example.com", "wrong-password-1", attacker)
    # Same email, the owner's device: straight in, and so is another address that never failed.
    assert login("ada@example.com", client=owner)
    assert login("ada@example.com", client=Client(ip="198.51.100.7"))


def test_delays_grow_with_each_failure_past_the_allowance(db):
    register()
    attacker = Client(ip="203.0.113.66")
    fail("ada@example.com", attacker, times=5)
    first = refused("ada@example.com", PASSWORD, attacker)  # even the right password waits
    assert 1 <= first.retry_after <= 5
    let_time_pass(db, first.retry_after)
    fail("ada@example.com", attacker)
    second = refused("ada@example.com", "wrong-password-1", attacker)
    assert second.retry_after > first.retry_after
    let_time_pass(db, second.retry_after)
    fail("ada@example.com", attacker)
    third = refused("ada@example.com", "wrong-password-1", attacker)
    assert third.retry_after > second.retry_after
    assert "Try again in" in third.message


def test_the_longest_delay_is_the_configured_window(db):
    assert throttle.delay_after(5, 5) == timedelta(seconds=5)
    assert throttle.delay_after(6, 5) == timedelta(seconds=10)
    assert throttle.delay_after(500, 5) == timedelta(minutes=15)


def test_spraying_many_emails_from_one_client_is_throttled(db):
    sprayer = Client(ip="203.0.113.99")
    for n in range(20):  # LOGIN_CLIENT_MAX_FAILURES: each email fails only once
        fail(f"victim{n}@example.com", sprayer)
    refused("victim-next@example.com", "wrong-password-1", sprayer)
    # Another client is not affected.
    fail("victim-next@example.com", Client(ip="198.51.100.1"))


def test_guesses_for_one_email_from_many_addresses_are_throttled_but_not_for_its_known_device(db):
    register()
    owner = Client(ip="192.0.2.10", device=OWNER_DEVICE)
    login("ada@example.com", client=owner)
    for n in range(20):  # LOGIN_EMAIL_MAX_FAILURES over clients that never signed in to it
        fail("ada@example.com", Client(ip=f"203.0.113.{n}"))
    refused("ada@example.com", PASSWORD, Client(ip="203.0.113.200"))
    assert login("ada@example.com", client=owner)


def test_a_device_cookie_only_counts_for_the_user_it_signed_in_as(db):
    register("ada@example.com")
    register("bob@example.com")
    owner = Client(ip="192.0.2.10", device=OWNER_DEVICE)
    login("ada@example.com", client=owner)
    with session_scope() as s:
        devices = s.exec(select(KnownDevice)).all()
    assert len(devices) == 1 and devices[0].device_hash != OWNER_DEVICE  # only the hash is stored
    # Bob's email from Ada's device is an unknown device for Bob: counted against Bob's email.
    for _ in range(5):
        fail("bob@example.com", owner)
    refused("bob@example.com", PASSWORD, owner)


def test_old_throttle_rows_are_purged(db):
    fail("ghost@example.com", Client(ip="203.0.113.5"))
    table = LoginThrottle.__table__
    db.execute(update(table).values(updated_at=utcnow() - timedelta(days=2)))
    db.commit()
    fail("fresh@example.com", Client(ip="203.0.113.6"))
    with session_scope() as s:
        assert throttle.purge(s) == 3  # the ghost's three keys; the fresh ones stay
    with session_scope() as s:
        keys = {row.key for row in s.exec(select(LoginThrottle)).all()}
    assert keys and all("fresh@example.com" in k or k.startswith("c:ip:203.0.113.6") for k in keys)
