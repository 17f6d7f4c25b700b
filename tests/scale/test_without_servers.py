"""What needs no PostgreSQL or Redis to check: serve's refusal, rate limits when Redis is unreachable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from billing_app import limits, serve
from billing_app.errors import RateLimited
from tests.scale.helpers import free_port


def _serve(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")} | env
    return subprocess.run([sys.executable, "-m", "billing_app", "serve", "--prod", *args], env=environ,
                          cwd=serve.PROJECT_ROOT, capture_output=True, text=True, timeout=60)


def test_serve_with_backends_needs_postgresql_and_redis_and_says_so_in_one_line():
    no_database = _serve("--backends", "2", DATABASE_URL="sqlite:///x.db")
    assert no_database.returncode == 2
    assert no_database.stderr.strip().splitlines() == [
        "serve --backends needs DATABASE_URL=postgresql+psycopg://... (several processes cannot share SQLite)"]
    no_redis = _serve("--backends", "2", DATABASE_URL="postgresql+psycopg://u@127.0.0.1:1/db")
    assert no_redis.returncode == 2
    assert no_redis.stderr.strip().splitlines() == [
        "serve --backends needs REDIS_URL=redis://... (page states, live updates and rate limits are shared there)"]


def test_rate_limits_count_in_the_process_while_redis_is_unreachable(monkeypatch):
    from billing_app.settings import get_settings

    monkeypatch.setenv("RATE_LIMIT_STORAGE", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    monkeypatch.setenv("RATE_LIMIT_LOGIN_EMAIL", "2/minute")
    get_settings.cache_clear()
    try:
        limits.hit(limits.LOGIN_EMAIL, "someone@example.com")
        limits.hit(limits.LOGIN_EMAIL, "someone@example.com")
        with pytest.raises(RateLimited):
            limits.hit(limits.LOGIN_EMAIL, "someone@example.com")
    finally:
        get_settings.cache_clear()
