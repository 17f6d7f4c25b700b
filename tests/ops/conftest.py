"""Operator console tests: the real services on the real database, Stripe played by the sandbox.
Factories: helpers.py."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def fast_password_hashing(fast_password_hashing):
    """tests/conftest.py's cheap hashing, for every test here: they test no password rule."""
