"""Operator console tests: the real services on the real database, Stripe played by the sandbox.
Factories: helpers.py."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch):
    """Cheap argon2 parameters: these tests make many accounts and test no password rule."""
    from argon2 import PasswordHasher

    from billing_app.auth import passwords

    monkeypatch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
