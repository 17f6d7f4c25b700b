"""REST API tests: the real FastAPI app, mounted at /api as the backend mounts it, in-process,
on the real database, with the real SDK against the offline sandbox. Factories: helpers.py."""

from __future__ import annotations

import pytest

from tests.api.helpers import Tokens, role_tokens


@pytest.fixture(autouse=True)
def fast_password_hashing(fast_password_hashing):
    """tests/conftest.py's cheap hashing, for every test here: they test no password rule."""


@pytest.fixture
def tokens(org) -> Tokens:
    return role_tokens(org)
