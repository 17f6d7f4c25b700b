"""The scaled topology on real servers for tests/scale: PostgreSQL, Redis, N backends behind the balancer.

`real_servers()` says why the tests cannot run (PostgreSQL or Redis absent), `CuttableProxy`
stands between the app and Redis so a test can take Redis away from the app without touching
the shared Redis server, and `start_topology` starts `serve --prod --backends N`'s processes
(the same `serve.start_scaled` the command runs) in this run's own schema and key prefix.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import threading
import uuid
from dataclasses import dataclass
from unittest import mock
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_url() -> str:
    return os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS)


def real_servers() -> str | None:
    """Why the scale tests must be skipped, or None when PostgreSQL and Redis both answer."""
    database = os.environ.get("TEST_DATABASE_URL", "")
    if not database.startswith("postgresql+psycopg://"):
        return "needs PostgreSQL: set TEST_DATABASE_URL=postgresql+psycopg://... (make test does when 127.0.0.1:5432 answers)"
    try:
        engine = create_engine(database)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as error:
        return f"needs PostgreSQL: {database} does not answer ({type(error).__name__})"
    import redis

    try:
        redis.Redis.from_url(redis_url(), socket_connect_timeout=1).ping()
    except Exception as error:
        return f"needs Redis: {redis_url()} does not answer ({type(error).__name__}); set TEST_REDIS_URL"
    return None


class OwnSchema:
    """A fresh PostgreSQL schema for one topology (dropped by `drop`): the database URL puts it first on the search path."""

    def __init__(self):
        self.name = f"scale_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        base = os.environ["TEST_DATABASE_URL"]
        self.url = make_url(base).update_query_dict({"options": f"-csearch_path={self.name}"}).render_as_string(hide_password=False)
        self._admin = create_engine(base)
        with self._admin.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {self.name}"))

    def drop(self) -> None:
        with self._admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA IF EXISTS {self.name} CASCADE"))
        self._admin.dispose()


class CuttableProxy:
    """A TCP proxy on a free loopback port in front of `target`; `cut()` drops every connection and
    refuses new ones (the app sees Redis go away), `restore()` lets them through again."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._server = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="cuttable-proxy")
        self._thread.start()
        self._ready.wait(5)
        self.restore()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._ready.set()
        self._loop.run_forever()

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _handle(self, reader, writer) -> None:
        server = self._server
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        if self._server is not server:  # cut while this connection was being made
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(r, w):
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                w.close()
                self._writers.discard(w)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        if self._server is None:
            self._call(self._start())

    def cut(self) -> None:
        self._call(self._cut())

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        """redis:// through this proxy, same database number as TEST_REDIS_URL."""
        from urllib.parse import urlsplit

        return f"redis://127.0.0.1:{self.port}{urlsplit(redis_url()).path or '/0'}"


def redis_address() -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(redis_url())
    return parts.hostname or "127.0.0.1", parts.port or 6379


@dataclass
class Topology:
    scaled: object  # billing_app.serve.Scaled
    schema: OwnSchema
    redis: CuttableProxy
    key_prefix: str
    log_path: Path
    sandbox_url: str
    env: dict

    @property
    def url(self) -> str:
        return self.scaled.url

    def backend_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.scaled.backend_ports[index]}"

    @property
    def stripe(self):
        import stripe

        from billing_app import serve

        return stripe.StripeClient(serve.SANDBOX_KEY, base_addresses={"api": self.sandbox_url}, max_network_retries=0)

    def engine(self):
        return create_engine(self.schema.url)

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill_backend(self, index: int) -> None:
        """kill -9 the backend's whole process group (Reflex's runner and its server)."""
        process = self.scaled.backends[index]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def restart_backend(self, index: int) -> None:
        from billing_app import serve

        port = self.scaled.backend_ports[index]
        with open(self.log_path, "a") as log:
            self.scaled.backends[index] = subprocess.Popen(
                serve.backend_command(port, quiet=True), env=self.env, cwd=serve.PROJECT_ROOT,
                start_new_session=True, stdout=log, stderr=subprocess.STDOUT,
            )
        serve._wait_until_up(f"http://127.0.0.1:{port}/api/health", [self.scaled.backends[index]], timeout=120)


# Every test comes from 127.0.0.1: relax the per-address limits (tests/auth tests them), keep the
# per-email login limit low so the shared-count test reaches it quickly.
TOPOLOGY_LIMITS = {
    "RATE_LIMIT_LOGIN_IP": "1000/minute",
    "RATE_LIMIT_REGISTER_IP": "1000/minute",
    "LOGIN_CLIENT_MAX_FAILURES": "1000",
    "RATE_LIMIT_LOGIN_EMAIL": "3/minute",
}


def start_topology(work: Path, *, backends: int = 2, workers: int = 1) -> Topology:
    """Sandbox, static frontend, `backends` backends, the balancer, `workers` worker processes
    (`python -m billing_app worker`; 0: the workers run inside the backends).

    The app reaches Redis through a CuttableProxy and keeps its keys under its own prefix.
    """
    from billing_app import serve
    from billing_app.settings import get_settings

    schema = OwnSchema()
    proxy = CuttableProxy(redis_address())
    key_prefix = f"test_scale_{uuid.uuid4().hex[:8]}:"
    values = {"DATABASE_URL": schema.url, "REDIS_URL": proxy.url, "REDIS_KEY_PREFIX": key_prefix, **TOPOLOGY_LIMITS}
    log_path = work / "topology.log"
    port, sandbox_port = free_port(), free_port()
    try:
        # The topology's settings for the processes it starts; this process's environment is restored after.
        with mock.patch.dict(os.environ, values):
            os.environ.pop("STRIPE_SECRET_KEY", None)
            os.environ.pop("RATE_LIMIT_STORAGE", None)
            get_settings.cache_clear()
            with open(log_path, "w") as log:
                scaled = serve.start_scaled(port=port, backends=backends, workers=workers, sandbox_port=sandbox_port,
                                            data_dir=work, use_sandbox=True, log=log, quiet_reflex=True)
            env = serve.scaled_environment(
                serve.app_environment(port=port, backend_port=port, prod=True, sandbox_port=sandbox_port),
                redis_url=proxy.url, workers=workers,
            )
    except BaseException:
        proxy.close()
        schema.drop()
        raise
    finally:
        get_settings.cache_clear()
    return Topology(scaled, schema, proxy, key_prefix, log_path, f"http://127.0.0.1:{sandbox_port}", env)


def stop_topology(topology: Topology) -> None:
    import redis

    from billing_app import serve

    serve.stop(topology.scaled.all)
    topology.redis.close()
    topology.schema.drop()
    client = redis.Redis.from_url(redis_url())
    for key in client.scan_iter(match=f"{topology.key_prefix}*"):
        client.delete(key)
