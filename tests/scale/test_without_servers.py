"""What needs no PostgreSQL or Redis to check: serve's refusal, rate limits when Redis is unreachable
or stops answering."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading

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


def test_a_redis_that_stops_answering_holds_a_count_briefly_and_is_not_asked_again_at_once(monkeypatch):
    # Pages count on the event loop: a Redis that accepts and never answers (a stuck server, a
    # half-open network) used to hold the count, and with it every page of the backend, for good.
    from billing_app.settings import get_settings

    silent, accepted = socket.socket(), []
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)

    def accept_and_say_nothing():
        with contextlib.suppress(OSError):  # until the test closes it
            while True:
                accepted.append(silent.accept()[0])

    threading.Thread(target=accept_and_say_nothing, daemon=True).start()
    monkeypatch.setenv("RATE_LIMIT_STORAGE", f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
    get_settings.cache_clear()
    limits.reset()
    counted = threading.Event()

    def three_counts():
        for _ in range(3):
            limits.hit(limits.LOGIN_EMAIL, "someone@example.com")
        counted.set()

    try:
        threading.Thread(target=three_counts, daemon=True).start()
        assert counted.wait(30), "a count waited for the silent Redis"
        assert len(accepted) == 1  # asked once; the next counts went to the process's own
    finally:
        for connection in [silent, *accepted]:
            connection.close()
        limits.reset()
        get_settings.cache_clear()
