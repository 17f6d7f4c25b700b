"""The real app, started the way `make run` starts it, for browser tests."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from billing_app import serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningApp:
    url: str
    database_url: str
    log_path: Path
    sandbox_url: str

    @property
    def stripe(self):
        """The SDK pointed at the app's sandbox, for setting up what a test needs at "Stripe"."""
        import stripe

        return stripe.StripeClient(serve.SANDBOX_KEY, base_addresses={"api": self.sandbox_url}, max_network_retries=0)

    def engine(self):
        return create_engine(self.database_url)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    """`python -m billing_app serve --prod`'s start-up (sandbox included) on free loopback ports and a fresh SQLite file."""
    from billing_app.settings import get_settings

    work = tmp_path_factory.mktemp("app")
    database_url = f"sqlite:///{work}/app.db"
    port, backend_port, sandbox_port = free_port(), free_port(), free_port()
    # Every browser test comes from 127.0.0.1: one client to the per-address limits, which are meant
    # for the internet (tests/auth and tests/api/test_security.py test the limits themselves).
    relaxed = {"RATE_LIMIT_LOGIN_IP": "1000/minute", "RATE_LIMIT_REGISTER_IP": "1000/minute", "LOGIN_CLIENT_MAX_FAILURES": "1000"}
    saved = {k: os.environ.get(k) for k in ("DATABASE_URL", "STRIPE_SECRET_KEY", *relaxed)}
    os.environ.update(relaxed)
    os.environ["DATABASE_URL"] = database_url
    os.environ.pop("STRIPE_SECRET_KEY", None)
    get_settings.cache_clear()
    log_path = work / "app.log"
    with open(log_path, "w") as log:
        try:
            processes = serve.start(
                # The production build: what ships, and no hot reload while tests run.
                prod=True, port=port, backend_port=backend_port, sandbox_port=sandbox_port,
                data_dir=work, use_sandbox=True, log=log,
            )
        except Exception as error:
            pytest.fail(f"the app did not start: {error}\n{log_path.read_text()[-4000:]}")
        try:
            yield RunningApp(f"http://127.0.0.1:{port}", database_url, log_path, f"http://127.0.0.1:{sandbox_port}")
        finally:
            serve.stop(processes)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            get_settings.cache_clear()
