"""Account takeover and abuse guards: no mailbox for visitors of a production build, API tokens
minted only with the password and revoked by a password reset, no cross-origin operator actions
by cookie, and one client cannot mail reset links to every account it can name."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from reflex import constants
from sqlmodel import select

from billing_app import limits
from billing_app.auth import reset
from billing_app.db import session_scope
from billing_app.models import Notification
from billing_app.notifications import hooks
from billing_app.settings import get_settings
from tests.aio import run_async
from tests.api.helpers import backend_app
from tests.pages import run_event


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch):
    """Cheap argon2 parameters: these tests test no password rule."""
    from argon2 import PasswordHasher

    from billing_app.auth import passwords

    monkeypatch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def client(database_url):
    with TestClient(backend_app(), raise_server_exceptions=True) as c:
        yield c


@pytest.fixture
def fresh_limits():
    limits.reset()
    yield
    limits.reset()


def signed_out_page(state_cls, client_ip: str = ""):
    """The backend's copy of `state_cls` for a tab nobody signed in to, from `client_ip`."""
    from reflex.istate.data import RouterData
    from reflex.state import State

    root = State(_reflex_internal_init=True)
    root.router = RouterData.from_router_data({"headers": {}, constants.RouteVar.CLIENT_IP: client_ip})
    return root.get_substate(state_cls.get_full_name().split(".")[1:])


def reset_link_of(email: str, monkeypatch) -> str:
    sent = {}
    monkeypatch.setattr(reset, "_sender", lambda to, url: sent.setdefault(to, url))
    reset.request_reset(email)
    return sent[email]


# --- the dev mailbox -------------------------------------------------------------------


def test_dev_mailbox_does_not_show_reset_links_to_a_signed_out_visitor(org, stripe_env, monkeypatch):
    # `serve --prod` on the sandbox without SMTP_URL (a demo): a production build has no mailbox.
    from billing_app.pages.dev_mail import DevMailState

    monkeypatch.setenv("REFLEX_ENV_MODE", "prod")
    monkeypatch.delenv("SMTP_URL", raising=False)
    get_settings.cache_clear()
    monkeypatch.setattr(reset, "_sender", hooks.send_password_reset)
    reset.request_reset("admin@acme.example")
    tab = signed_out_page(DevMailState)
    run_async(run_event(DevMailState.load.fn(tab)))
    assert tab.gate == "404" and tab.messages == []
    with session_scope() as s:
        [row] = s.exec(select(Notification).where(Notification.kind == "password_reset")).all()
    run_async(run_event(DevMailState.open_message.fn(tab, str(row.id))))
    assert "reset?token=" not in tab.selected.text and tab.selected.id == ""
