"""Fixtures shared by the whole suite.

Each area's own fixtures live beside its tests; the ones here are used across areas.
"""

import os
import shutil
import uuid

import pytest

pytest_plugins = ["tests.sandbox_fixture", "tests.conformance.plugin"]

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# Without these flags Chromium keeps dialling Google's hosts, which this closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    """One headless Debian Chromium for the session, driven by Playwright."""
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `make test`, which installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (no cookies, no storage) and page per test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


# --- database -------------------------------------------------------------------

def _database_backends() -> list[str]:
    return ["sqlite", "postgresql"] if os.environ.get("TEST_DATABASE_URL") else ["sqlite"]


def _use_database(monkeypatch, url: str) -> None:
    from billing_app.db import get_engine
    from billing_app.settings import get_settings

    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    get_engine.cache_clear()


# This run's own PostgreSQL schema, so two suites on one server (a developer's and CI's) never collide.
RUN_SCHEMA = f"test_run_{os.getpid()}_{uuid.uuid4().hex[:8]}"


def _own_schema(url: str) -> str:
    """The URL with this run's schema first on the search path (tables and Alembic's version table go there)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return parsed.update_query_dict({"options": f"-csearch_path={RUN_SCHEMA}"}).render_as_string(hide_password=False)


@pytest.fixture(scope="session", autouse=True)
def _drop_run_schema():
    yield
    if "TEST_DATABASE_URL" in os.environ:
        from sqlalchemy import create_engine, text

        engine = create_engine(os.environ["TEST_DATABASE_URL"])
        with engine.begin() as connection:
            connection.execute(text(f"DROP SCHEMA IF EXISTS {RUN_SCHEMA} CASCADE"))
        engine.dispose()


@pytest.fixture(params=_database_backends())
def database_url(request, tmp_path, monkeypatch):
    """A freshly migrated, empty database for one test, on each configured backend."""
    from sqlalchemy import create_engine, text

    from billing_app.db import get_engine
    from billing_app.migrations import upgrade
    from billing_app.settings import get_settings

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/test.db"
    else:
        url = _own_schema(os.environ["TEST_DATABASE_URL"])
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(text(f"DROP SCHEMA IF EXISTS {RUN_SCHEMA} CASCADE"))
            connection.execute(text(f"CREATE SCHEMA {RUN_SCHEMA}"))
        engine.dispose()
    upgrade(url)
    _use_database(monkeypatch, url)
    yield url
    get_engine().dispose()
    get_engine.cache_clear()
    get_settings.cache_clear()


@pytest.fixture
def db(database_url):
    """A database session on the test database; commit to make changes visible to the code under test."""
    from sqlmodel import Session

    from billing_app.db import get_engine

    with Session(get_engine(), expire_on_commit=False) as session:
        yield session


@pytest.fixture
def stripe_env(sandbox, database_url, monkeypatch):
    """Settings pointing the app's gateway at the sandbox; the catalog synced into Stripe and the mirror."""
    from billing_app.billing import gateway, portal
    from billing_app.billing.catalog import sync_catalog
    from billing_app.db import session_scope
    from billing_app.settings import get_settings

    monkeypatch.setenv("STRIPE_SECRET_KEY", sandbox.api_key)
    monkeypatch.setenv("STRIPE_API_BASE", sandbox.base_url)
    monkeypatch.setenv("APP_URL", "http://127.0.0.1:3999")
    get_settings.cache_clear()
    gateway.reset_client()
    portal._config_cache.clear()
    with session_scope() as s:
        sync_catalog(s)
    yield sandbox
    gateway.reset_client()
    portal._config_cache.clear()
    get_settings.cache_clear()


@pytest.fixture
def org(stripe_env):
    """Acme: an admin and a member, the catalog in the sandbox."""
    from tests.billing.helpers import make_org

    return make_org("Acme", "admin@acme.example", "member@acme.example")


# --- shared by several areas: the REST app, cheap hashing, limits, a roomier free tier ------

@pytest.fixture
def fast_password_hashing(monkeypatch):
    """Cheap argon2 parameters, for tests that make many accounts and test no password rule (an
    area's conftest turns it on for all its tests)."""
    from argon2 import PasswordHasher

    from billing_app.auth import passwords

    monkeypatch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def client(database_url):
    """The backend's HTTP routes (REST API, session, exports), served in-process."""
    from starlette.testclient import TestClient

    from tests.api.helpers import backend_app

    with TestClient(backend_app(), raise_server_exceptions=True) as c:
        yield c


@pytest.fixture
def fresh_limits():
    """Rate-limit counts from zero, and none left behind for the next test."""
    from billing_app import limits

    limits.reset()
    yield
    limits.reset()


@pytest.fixture
def roomy_free_tier(monkeypatch):
    """The free tier with room for 10 members, for tests about invitations rather than caps."""
    from billing_app.billing import entitlements
    from billing_app.billing.catalog import free_tier

    roomy = free_tier().model_copy(update={"limits": {**free_tier().limits, "seats": 10}})
    monkeypatch.setattr(entitlements, "free_tier", lambda: roomy)
    return roomy
