"""Secrets at rest: a delivered email keeps no body (reset links, invitation tokens), and /dev/mail
exists only with no SMTP_URL and in development mode (never in a production build, sandbox or not);
elsewhere it is an unknown page and reads nothing."""

from __future__ import annotations

import pytest
from sqlmodel import select

from billing_app.db import session_scope
from billing_app.models import Notification
from billing_app.notifications import hooks, mailbox
from billing_app.notifications.worker import MailWorker
from billing_app.settings import get_settings
from tests.aio import run_async
from tests.sandbox_fixture import free_port

RESET_URL = "http://app.example/reset?token=secret-reset-token"


def _rows() -> list[Notification]:
    with session_scope() as s:
        return list(s.exec(select(Notification).order_by(Notification.id)).all())


def test_a_delivered_email_keeps_no_body(mail_settings, smtp):
    hooks.send_password_reset("someone@example.com", RESET_URL)
    hooks.send_invitation("new@example.com", "http://app.example/invite/secret-invite-token", org_name="Acme", inviter="Ann")
    assert len(MailWorker(smtp_url=smtp.url).run_once().sent) == 2
    assert all("secret-" in r.part("plain") for r in smtp.received)  # the recipients got the links
    for row in _rows():
        assert row.state == "sent" and row.text_body == "" and row.html_body == ""
        assert row.kind in ("password_reset", "invitation") and row.to and row.subject and row.created_at and row.sent_at
    with session_scope() as s:
        assert all("secret-" not in " ".join(map(str, r)) for r in s.execute(select(Notification.__table__)).all())  # every column of every row


def test_a_message_waiting_for_a_retry_keeps_its_body(mail_settings):
    hooks.send_password_reset("someone@example.com", RESET_URL)
    MailWorker(smtp_url=f"smtp://127.0.0.1:{free_port()}").run_once()  # nobody listens
    [row] = _rows()
    assert row.state == "pending" and RESET_URL in row.text_body


def test_an_undeliverable_invitation_does_not_keep_its_working_link(roomy_free_tier, org, mail_settings):
    """The invitation stays valid 7 days and its table stores only the token's hash: once the outbox
    gives up on the email, the row keeps its subject and error, not the link."""
    from billing_app.auth import invitations
    from billing_app.models import Role

    invited = invitations.invite(org.admin, email="new-admin@elsewhere.example", role=Role.ADMIN)
    token = invited.url.rsplit("/", 1)[1]
    MailWorker(smtp_url=f"smtp://127.0.0.1:{free_port()}", max_attempts=1).run_once()  # nobody listens
    [row] = [r for r in _rows() if r.kind == "invitation" and r.to == ["new-admin@elsewhere.example"]]
    assert row.state == "failed" and row.subject and row.last_error
    assert row.text_body == "" and row.html_body == ""
    with session_scope() as s:
        assert all(token not in " ".join(map(str, r)) for r in s.execute(select(Notification.__table__)).all())


def test_kept_messages_keep_their_body_for_dev_mail(mail_settings):
    hooks.send_password_reset("someone@example.com", RESET_URL)
    MailWorker(smtp_url=None).run_once()
    [row] = _rows()
    assert row.state == "kept" and RESET_URL in row.text_body and RESET_URL in row.html_body


@pytest.fixture
def mode(monkeypatch, mail_settings):
    """mode(prod=..., sandbox=..., smtp=...): Reflex's mode and the settings, as a server would have them."""

    def apply(*, prod: bool, sandbox: bool, smtp: bool):
        monkeypatch.setenv("REFLEX_ENV_MODE", "prod" if prod else "dev")
        for name, on, value in (("STRIPE_API_BASE", sandbox, "http://127.0.0.1:12111"),
                                ("SMTP_URL", smtp, f"smtp://127.0.0.1:{free_port()}")):
            if on:
                monkeypatch.setenv(name, value)
            else:
                monkeypatch.delenv(name, raising=False)
        get_settings.cache_clear()

    return apply


@pytest.mark.parametrize(("prod", "sandbox", "smtp", "enabled"), [
    (False, False, False, True),   # make run / reflex run: development
    (True, True, False, False),    # serve --prod with the sandbox, nothing sent: a demo anyone may visit
    (False, True, False, True),    # make run: development on the sandbox
    (True, True, True, False),     # serve --prod with the sandbox and real mail: a public demo
    (False, True, True, False),    # development with real mail
    (True, False, False, False),   # production with real Stripe
])
def test_dev_mail_exists_only_without_smtp_in_development(mode, prod, sandbox, smtp, enabled):
    mode(prod=prod, sandbox=sandbox, smtp=smtp)
    assert mailbox.dev_mail_enabled() is enabled


def _page_state():
    """The /dev/mail page's state as the backend creates it for a browser tab."""
    from reflex.state import State

    from billing_app.pages.dev_mail import DevMailState

    return State(_reflex_internal_init=True).get_substate(DevMailState.get_full_name().split(".")[1:])


def test_dev_mail_is_an_unknown_page_and_reads_nothing_when_mail_is_sent(mode, monkeypatch):
    from billing_app.pages.dev_mail import DevMailState

    hooks.send_password_reset("someone@example.com", RESET_URL)
    MailWorker(smtp_url=None).run_once()  # kept from before SMTP_URL was set: the body is there
    mode(prod=True, sandbox=True, smtp=True)

    def no_reading(*_args, **_kwargs):
        raise AssertionError("the outbox was read")

    monkeypatch.setattr(mailbox, "latest", no_reading)
    monkeypatch.setattr(mailbox, "detail", no_reading)
    state = _page_state()
    run_async(DevMailState.load.fn(state))
    assert state.gate == "404" and state.messages == [] and state.selected.id == ""
    [row] = _rows()
    run_async(DevMailState.open_message.fn(state, str(row.id)))
    assert state.selected.text == ""


def test_dev_mail_shows_the_kept_mail_in_development_on_the_sandbox(mode):
    from billing_app.pages.dev_mail import DevMailState

    hooks.send_password_reset("someone@example.com", RESET_URL)
    MailWorker(smtp_url=None).run_once()
    mode(prod=False, sandbox=True, smtp=False)
    state = _page_state()
    run_async(DevMailState.load.fn(state))
    assert state.gate == "ok" and [m.kind for m in state.messages] == ["password_reset"]
    assert RESET_URL in state.selected.text
