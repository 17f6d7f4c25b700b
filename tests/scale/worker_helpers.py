"""Factories for the scaled-worker tests: a PostgreSQL schema of the test's own, worker processes,
a TCP proxy the test can cut or hold, bursts of stored events, and the sandbox's request log.

Imported by tests/scale/test_workers*.py; never import a test module for these.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from billing_app.webhooks import eventlog
from tests.sandbox_fixture import free_port
from tests.webhooks.helpers import event

ROOT = Path(__file__).resolve().parents[2]


# --- PostgreSQL -----------------------------------------------------------------------------------------

def postgres_or_skip() -> str:
    """TEST_DATABASE_URL if a PostgreSQL server answers there; otherwise the test is skipped, saying why."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("needs a real PostgreSQL: TEST_DATABASE_URL is unset (make test sets it when 127.0.0.1:5432 answers)")
    engine = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:  # any failure to connect means: no server to test on
        pytest.skip(f"needs a real PostgreSQL: TEST_DATABASE_URL ({make_url(url).render_as_string()}) does not answer: "
                    f"{type(error).__name__}")
    finally:
        engine.dispose()
    return url


def use_database(monkeypatch, url: str) -> None:
    """Point this process's settings and engine at `url` (the code under test reads DATABASE_URL)."""
    from billing_app.db import get_engine
    from billing_app.settings import get_settings

    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    get_engine.cache_clear()


@contextlib.contextmanager
def postgres_schema(monkeypatch) -> Iterator[str]:
    """A freshly migrated PostgreSQL schema of this test's own (dropped after); yields its URL,
    which worker processes can be given as DATABASE_URL too."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from billing_app.db import get_engine
    from billing_app.migrations import upgrade

    server = postgres_or_skip()
    schema = f"test_scale_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    url = make_url(server).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    try:
        upgrade(url)
        use_database(monkeypatch, url)
        yield url
    finally:
        get_engine().dispose()
        get_engine.cache_clear()
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


def with_port(url: str, port: int) -> str:
    """The same database URL through another port (a proxy in front of the server)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


# --- a TCP proxy the test controls ----------------------------------------------------------------------

class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target port, byte for byte, until told otherwise.

    `cut()`: every open connection is closed and new ones are refused (the server seems down),
    until `restore()`. `hold_from(marker, n)`: client-to-server bytes are forwarded until the
    n-th occurrence of `marker` (e.g. the n-th request for a Stripe customer); from there each
    connection that sends the marker waits (`held` is set) until `release()`.
    """

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._marker: bytes | None = None
        self._hold_at = 0
        self.seen = 0  # occurrences of the marker so far
        self.held = threading.Event()
        self._released = threading.Event()
        self._released.set()
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            listener.close()
        for sock in sockets:
            _close(sock)

    def hold_from(self, marker: bytes, n: int) -> None:
        self._marker, self._hold_at = marker, n
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self.release()
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by cut()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    _close(client), _close(upstream)
                    return
                self._sockets |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, outgoing: bool) -> None:
        tail = b""
        try:
            while data := source.recv(65536):
                if outgoing and self._marker:
                    window = tail + data
                    found = window.count(self._marker)
                    tail = window[-(len(self._marker) - 1):]
                    with self._lock:
                        self.seen += found
                        hold = found and self.seen >= self._hold_at
                    if hold and not self._released.is_set():  # this connection waits; others go on
                        self.held.set()
                        self._released.wait()
                target.sendall(data)
        except OSError:
            pass
        finally:
            _close(source)
            _close(target)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


# Every sync_customer begins by reading the customer (GET /v1/customers/cus_...), once per sync.
CUSTOMER_READ = b"GET /v1/customers/cus_"


# --- worker processes -----------------------------------------------------------------------------------

class WorkerProcess:
    """`python -m billing_app worker` as a process of its own, its output in a file."""

    def __init__(self, log_path: Path, *, database_url: str, stripe_base: str, api_key: str, **settings: str):
        """`settings`: more of its environment, e.g. WEBHOOK_SYNC_CONCURRENCY="1"."""
        self.log_path = log_path
        env = {**os.environ, "DATABASE_URL": database_url, "STRIPE_SECRET_KEY": api_key, "STRIPE_API_BASE": stripe_base,
               "PYTHONUNBUFFERED": "1", **settings}
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen([sys.executable, "-m", "billing_app", "worker"], cwd=ROOT, env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text()

    def wait_started(self, timeout: float = 30) -> None:
        wait_until(lambda: "webhook.worker_started" in self.output() or self.proc.poll() is not None, timeout,
                   f"worker {self.pid} to start")
        assert self.proc.poll() is None, f"worker {self.pid} exited: {self.output()}"

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM (graceful drain); its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """kill -9: no drain, no rollback, its claims stay on the rows."""
        self.proc.kill()
        self.wait(10)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def passes(self) -> list[int]:
        """How many events each of its passes claimed (from its `webhook.pass` log lines)."""
        return [int(line.split("claimed=")[1].split()[0]) for line in self.output().splitlines() if "webhook.pass" in line]


@contextlib.contextmanager
def worker_processes(n: int, tmp_path: Path, **settings) -> Iterator[list[WorkerProcess]]:
    """n worker processes, started together; any still running at the end is killed."""
    workers = [WorkerProcess(tmp_path / f"worker{i}.log", **settings) for i in range(n)]
    try:
        for worker in workers:
            worker.wait_started()
        yield workers
    finally:
        for worker in workers:
            if worker.proc.poll() is None:
                worker.kill()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


# --- events and the sandbox ------------------------------------------------------------------------------

def store_burst(events_per_customer: dict[str, int]) -> list[dict]:
    """Store each customer's events one customer after the other, in one transaction (a burst as the
    route stores it); the events."""
    events = [event("customer.subscription.updated", customer)
              for customer, count in events_per_customer.items() for _ in range(count)]
    assert all(eventlog.store_events([(e, json.dumps(e)) for e in events]))
    return events


def sandbox_customers(sandbox, n: int) -> list[str]:
    """n customers created in the sandbox (no organization here holds them: the sync reads and ignores them)."""
    return [sandbox.client.v1.customers.create(params={"name": f"Scale {i}"}).id for i in range(n)]


class RequestLog:
    """The sandbox's own record of the requests it answered (its --record file), from now on."""

    def __init__(self, recording: Path):
        self.recording = recording
        self.start = recording.stat().st_size if recording.exists() else 0

    def requests(self) -> list[dict]:
        with open(self.recording, "rb") as f:
            f.seek(self.start)
            lines = f.read().splitlines()
        return [r for r in map(json.loads, lines) if r.get("kind") == "request"]

    def customer_reads(self) -> collections.Counter:
        """How many times each customer was read: one per sync_customer."""
        return collections.Counter(r["path"].rsplit("/", 1)[1] for r in self.requests()
                                   if r["method"] == "GET" and r["path"].startswith("/v1/customers/cus_"))
