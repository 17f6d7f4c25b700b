"""SMTP over TLS for real: aiosmtpd with a certificate from a throwaway CA (trustme), STARTTLS
required and login required (only over TLS), and smtps:// (TLS from the first byte).

The app verifies the server's certificate and name with Python's default context, which trusts
the system's CAs or the file in the standard SSL_CERT_FILE variable; the tests point that at the
throwaway CA, so no setting exists only for tests.
"""

from __future__ import annotations

import pytest
from sqlmodel import select

from billing_app.db import session_scope
from billing_app.models import Notification
from billing_app.notifications import hooks
from billing_app.notifications.worker import MailWorker
from billing_app.settings import get_settings
from tests.notifications.helpers import SmtpServer, tls_server

USER, PASSWORD = "mailer", "p@ss word"  # quoted in the URL as p%40ss%20word


@pytest.fixture
def tls(tmp_path, monkeypatch):
    context, ca_file = tls_server(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    return context, ca_file


@pytest.fixture
def server(tls):
    server = SmtpServer(tls=tls[0], login=(USER, PASSWORD))
    server.start()
    yield server
    server.stop()


def _queue_reset():
    hooks.send_password_reset("someone@example.com", "http://app.example/reset?token=abc")


def _row() -> Notification:
    with session_scope() as s:
        return s.exec(select(Notification)).one()


def test_starttls_with_login_delivers_through_smtp_url(mail_settings, server, monkeypatch):
    monkeypatch.setenv("SMTP_URL", f"smtp://{USER}:p%40ss%20word@127.0.0.1:{server.port}")
    get_settings.cache_clear()
    _queue_reset()
    report = MailWorker().run_once()  # SMTP_URL as configured
    assert len(report.sent) == 1, report
    [got] = server.received
    assert got.tls and got.tls.startswith("TLSv1.") and got.login == USER
    assert got.to == ["someone@example.com"] and "token=abc" in got.part("plain")
    assert _row().state == "sent"


def test_a_wrong_password_is_a_recorded_failure_retried_later(mail_settings, server):
    from datetime import timedelta

    from billing_app.models import utcnow

    now = [utcnow()]
    _queue_reset()
    wrong = MailWorker(smtp_url=f"smtp://{USER}:wrong@127.0.0.1:{server.port}", clock=lambda: now[0])
    report = wrong.run_once()
    assert report.retrying and not report.sent
    row = _row()
    assert row.state == "pending" and row.attempts == 1 and "SMTPAuthenticationError" in row.last_error and "535" in row.last_error
    assert server.logins_refused > 0 and not server.received  # smtplib tried each mechanism offered

    now[0] += timedelta(seconds=31)  # the password fixed: the retry sends it, once
    right = MailWorker(smtp_url=f"smtp://{USER}:p%40ss%20word@127.0.0.1:{server.port}", clock=lambda: now[0])
    assert len(right.run_once().sent) == 1
    assert [r.login for r in server.received] == [USER]
    assert _row().state == "sent" and _row().attempts == 2


def test_a_certificate_the_app_does_not_trust_is_refused_before_login(mail_settings, server, tmp_path, monkeypatch):
    _, other_ca = tls_server(tmp_path / "other")  # SSL_CERT_FILE names another CA: ours is unknown
    monkeypatch.setenv("SSL_CERT_FILE", other_ca)
    _queue_reset()
    report = MailWorker(smtp_url=f"smtp://{USER}:p%40ss%20word@127.0.0.1:{server.port}").run_once()
    assert report.retrying and not server.received and server.logins_refused == 0
    assert "CERTIFICATE_VERIFY_FAILED" in _row().last_error


def test_a_certificate_for_another_name_is_refused(mail_settings, server):
    # The certificate names 127.0.0.1; reached as "localhost" it does not match.
    _queue_reset()
    report = MailWorker(smtp_url=f"smtp://{USER}:p%40ss%20word@localhost:{server.port}").run_once()
    assert report.retrying and not server.received
    assert "CERTIFICATE_VERIFY_FAILED" in _row().last_error and "localhost" in _row().last_error


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # the socket is TLS from the start
def test_smtps_is_tls_from_the_first_byte(mail_settings, tls, monkeypatch):
    server = SmtpServer(tls=tls[0], implicit_tls=True, login=(USER, PASSWORD))
    server.start()
    try:
        monkeypatch.setenv("SMTP_URL", f"smtps://{USER}:p%40ss%20word@127.0.0.1:{server.port}")
        get_settings.cache_clear()
        _queue_reset()
        assert len(MailWorker().run_once().sent) == 1
    finally:
        server.stop()
    [got] = server.received
    assert got.tls and got.tls.startswith("TLSv1.") and got.login == USER


