"""The outbox and the mail worker against a real SMTP server (aiosmtpd on loopback)."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from datetime import timedelta

import pytest
from sqlmodel import select

from billing_app.auth import reset
from billing_app.db import session_scope
from billing_app.models import Notification, utcnow
from billing_app.notifications import hooks, mailer, outbox
from billing_app.notifications.kinds import Kind
from billing_app.notifications.worker import MailWorker
from tests.billing.helpers import PASSWORD, make_org
from tests.notifications.helpers import SmtpServer, StallingServer
from tests.sandbox_fixture import free_port


def _queue_reset(email="someone@example.com", url="http://app.example/reset?token=abc"):
    hooks.send_password_reset(email, url)


def test_every_kind_renders_html_and_text_in_one_layout(mail_settings):
    contexts = {
        Kind.INVITATION: dict(url="http://x/i", org_name="Acme <b>", inviter="Ann"),
        Kind.PASSWORD_RESET: dict(url="http://x/r", email="a@b.c"),
        Kind.TRIAL_ENDING: dict(org_name="Acme", plan="Pro", trial_end="Dec 1, 2026", billing_url="http://x/b", pricing_url="http://x/p"),
        Kind.PAYMENT_FAILED: dict(org_name="Acme", plan="Pro", amount="$29.00", next_retry="Dec 4, 2026", update_url="http://x/b", billing_url="", pricing_url=""),
        Kind.PAYMENT_ACTION_REQUIRED: dict(org_name="Acme", plan="Pro", amount="$29.00", invoice_url="http://s/invoices/in_1", billing_url="", pricing_url=""),
        Kind.RECEIPT: dict(org_name="Acme", amount="$29.00", description="Pro", period="Nov 1 – Dec 1", paid_on="Nov 1, 2026", pdf_url="http://s/in_1/pdf", billing_url="", pricing_url=""),
        Kind.SUBSCRIPTION_CANCELED: dict(org_name="Acme", plan="Pro", ended_on="Dec 1, 2026", billing_url="", pricing_url="http://x/p"),
        Kind.CANCEL_SCHEDULED: dict(org_name="Acme", plan="Pro", ends_on="Dec 1, 2026", billing_url="http://x/b", pricing_url=""),
        Kind.PLAN_CHANGED: dict(org_name="Acme", plan="Pro", previous="Starter", quantity=1, billing_url="http://x/b", pricing_url=""),
        Kind.SEATS_CHANGED: dict(org_name="Acme", plan="Team", seats=5, previous_seats=3, billing_url="http://x/b", pricing_url=""),
    }
    assert set(contexts) == set(Kind)
    for kind, context in contexts.items():
        rendered = mailer.render(kind, context)
        assert rendered.subject.startswith("[Acme Billing] ")
        assert "Acme Billing" in rendered.html and "Acme Billing" in rendered.text
        assert "<html" in rendered.html and "<" not in rendered.text.replace("<b>", "")
    invitation = mailer.render(Kind.INVITATION, contexts[Kind.INVITATION])
    assert "Acme &lt;b&gt;" in invitation.html  # HTML is escaped; the text part is plain
    failed = mailer.render(Kind.PAYMENT_FAILED, contexts[Kind.PAYMENT_FAILED])
    assert "Dec 4, 2026" in failed.text and "Update payment method" in failed.html


def test_one_row_per_kind_and_cause(mail_settings):
    for _ in range(5):
        _queue_reset()
    _queue_reset(url="http://app.example/reset?token=other")
    with session_scope() as s:
        rows = s.exec(select(Notification)).all()
    assert len(rows) == 2
    assert "token=abc" not in rows[0].key  # the key holds a digest, never the link's token


def test_sent_over_smtp_once(mail_settings, smtp):
    _queue_reset()
    worker = MailWorker(smtp_url=smtp.url)
    assert len(worker.run_once().sent) == 1
    assert worker.run_once().claimed == 0
    assert len(smtp.received) == 1
    got = smtp.received[0]
    assert got.to == ["someone@example.com"]
    assert got.message["From"] == "Acme Billing <billing@acme.example>"
    assert "http://app.example/reset?token=abc" in got.part("plain")
    assert 'href="http://app.example/reset?token=abc"' in got.part("html")
    with session_scope() as s:
        row = s.exec(select(Notification)).one()
    assert row.state == "sent" and row.sent_at is not None and row.attempts == 1


def test_smtp_down_then_up_sends_once_after_retry(mail_settings):
    server = SmtpServer(port=free_port())  # not started: connection refused
    now = [utcnow()]
    worker = MailWorker(smtp_url=server.url, clock=lambda: now[0])
    _queue_reset()
    report = worker.run_once()
    assert report.retrying and not report.sent
    with session_scope() as s:
        row = s.exec(select(Notification)).one()
    assert row.state == "pending" and row.attempts == 1 and "Connection" in (row.last_error or "")
    assert row.next_attempt_at > now[0] + timedelta(seconds=29)
    assert worker.run_once().claimed == 0  # not due before the backoff

    server.start()
    try:
        now[0] += timedelta(seconds=31)
        assert len(worker.run_once().sent) == 1
        now[0] += timedelta(hours=2)
        assert worker.run_once().claimed == 0
        assert len(server.received) == 1
    finally:
        server.stop()
    with session_scope() as s:
        row = s.exec(select(Notification)).one()
    assert row.state == "sent" and row.attempts == 2


def test_gives_up_after_the_attempt_limit(mail_settings):
    now = [utcnow()]
    worker = MailWorker(smtp_url=f"smtp://127.0.0.1:{free_port()}", max_attempts=3, clock=lambda: now[0])
    _queue_reset()
    for _ in range(3):
        worker.run_once()
        now[0] += timedelta(hours=2)
    with session_scope() as s:
        row = s.exec(select(Notification)).one()
    assert row.state == "failed" and row.attempts == 3 and row.last_error
    assert worker.run_once().claimed == 0


def test_without_smtp_nothing_leaves_and_messages_are_kept(mail_settings, smtp):
    _queue_reset()
    report = MailWorker(smtp_url=None).run_once()
    assert report.kept and not smtp.received
    with session_scope() as s:
        assert s.exec(select(Notification.state)).one() == "kept"


def test_password_reset_goes_through_the_hook(mail_settings, smtp, monkeypatch):
    previous = reset._sender
    hooks.install()
    try:
        org = make_org("Acme", "admin@acme.example", "member@acme.example")
        reset.request_reset("ADMIN@acme.example")
        reset.request_reset("nobody@acme.example")  # no account: nothing queued, same silence
        MailWorker(smtp_url=smtp.url).drain()
    finally:
        reset.set_sender(previous)
    resets = smtp.of_kind("password_reset")
    assert [r.to for r in resets] == [["admin@acme.example"]]
    body = resets[0].part("plain")
    token = body.split("token=", 1)[1].split()[0]
    reset.reset_password(token, "a-brand-new-password-2")
    from billing_app.auth import accounts

    with session_scope() as s:
        accounts.login(s, email="admin@acme.example", password="a-brand-new-password-2")
    assert org.admin.email == "admin@acme.example" and PASSWORD


def test_admins_choose_optional_kinds_but_not_security_ones(mail_settings):
    org = make_org("Acme", "admin@acme.example", "member@acme.example")
    with session_scope() as s:
        outbox.set_preference(s, org.admin.user_id, org.id, Kind.RECEIPT, False)
    with session_scope() as s:
        assert outbox.org_recipients(s, org.id, Kind.RECEIPT, "billing@acme.example") == ["billing@acme.example"]
        assert outbox.org_recipients(s, org.id, Kind.PAYMENT_FAILED, "billing@acme.example") == ["billing@acme.example", "admin@acme.example"]
        assert outbox.preferences(s, org.admin.user_id, org.id) == {"plan_changed": True, "receipt": False}
        outbox.set_preference(s, org.admin.user_id, org.id, Kind.PLAN_CHANGED, False)
    with session_scope() as s:  # one switch for plan and seat changes
        assert outbox.org_recipients(s, org.id, Kind.SEATS_CHANGED, "billing@acme.example") == ["billing@acme.example"]
        # members never get billing mail
        assert "member@acme.example" not in outbox.org_recipients(s, org.id, Kind.PLAN_CHANGED)
    import pytest

    with session_scope() as s, pytest.raises(ValueError):
        outbox.set_preference(s, org.admin.user_id, org.id, Kind.PAYMENT_FAILED, False)


def test_the_backend_runs_the_mail_worker_and_sends_resets_through_it():
    from billing_app.billing_app import app
    from billing_app.notifications.worker import run_mail_worker

    assert run_mail_worker in app.get_lifespan_tasks()
    assert reset._sender is hooks.send_password_reset


def test_an_invitation_is_emailed_to_the_invitee_only(mail_settings, smtp, monkeypatch):
    from billing_app.auth import invitations
    from billing_app.billing import entitlements
    from billing_app.billing.catalog import free_tier

    roomy = free_tier().model_copy(update={"limits": {**free_tier().limits, "seats": 10}})
    monkeypatch.setattr(entitlements, "free_tier", lambda: roomy)
    org = make_org("Acme", "admin@acme.example", "member@acme.example")
    invited = invitations.invite(org.admin, email="New.Person@example.com")
    MailWorker(smtp_url=smtp.url).drain()
    # make_org invited its member the same way; each invitation went to its invitee alone
    assert sorted(r.to[0] for r in smtp.of_kind("invitation")) == ["member@acme.example", "new.person@example.com"]
    assert all(len(r.to) == 1 for r in smtp.received)
    got = next(r for r in smtp.received if r.to == ["new.person@example.com"])
    assert got.subject == "[Acme Billing] You are invited to join Acme"
    assert invited.url in got.part("plain") and "Admin invited you" in got.part("plain")


@pytest.mark.parametrize("how", ["revoked", "replaced", "inviter removed"])
def test_an_invitation_withdrawn_before_its_email_went_is_never_emailed(roomy_free_tier, fresh_limits, mail_settings, smtp, how):
    """Bob invites a mistyped address while the SMTP server is down (the email waits for its retry),
    and the invitation is withdrawn: revoked, replaced by a new one for the address, or gone with
    Bob's removal. Once SMTP is back the stranger does not get the withdrawn link (a replacement's own email goes)."""
    from billing_app.auth import invitations, members
    from billing_app.models import Role

    org = make_org("Acme", "admin@acme.example", "bob@acme.example")
    members.change_role(org.admin, user_id=org.member.user_id, role=Role.ADMIN)
    bob = dataclasses.replace(org.member, role=Role.ADMIN)
    MailWorker(smtp_url=smtp.url).drain()  # Bob's own invitation
    smtp.received.clear()
    invited = invitations.invite(bob, email="typo@example.com")
    now = [utcnow()]
    assert MailWorker(smtp_url=f"smtp://127.0.0.1:{free_port()}", clock=lambda: now[0]).run_once().retrying  # refused: down
    if how == "revoked":
        invitations.revoke(org.admin, invited.invitation.id)
    elif how == "replaced":
        invitations.invite(org.admin, email="typo@example.com")
    else:
        members.remove_member(org.admin, bob.user_id)
    now[0] += timedelta(hours=2)
    MailWorker(smtp_url=smtp.url, clock=lambda: now[0]).drain()
    mailed = [r.part("plain") for r in smtp.of_kind("invitation")]
    assert not any(invited.url in text for text in mailed), "a withdrawn invitation was emailed"
    assert len(mailed) == (how == "replaced")


def test_a_long_pass_never_sends_a_row_another_process_took_over(mail_settings):
    """Pass A's sends outlast the lease of its later rows; pass B, in another process, claims those.
    Each row still goes out once: A renews a row's lease just before sending it, and skips a row it lost."""
    for n in range(3):
        _queue_reset(email=f"user{n}@example.com", url=f"http://app.example/reset?token={n}")
    now = [utcnow()]
    sent: list[str] = []

    def record(_url, message):
        sent.append(message["To"])

    other = MailWorker(smtp_url="smtp://unused", send=record, clock=lambda: now[0])

    def slow_send(url, message):
        record(url, message)
        now[0] += timedelta(seconds=70)  # two sends outlast the first lease (120 s)
        if len(sent) == 2:
            other.run_once()  # meanwhile, another process's pass finds the third row's lease lapsed

    MailWorker(smtp_url="smtp://unused", send=slow_send, clock=lambda: now[0]).run_once()
    assert sorted(sent) == [f"user{n}@example.com" for n in range(3)]
    with session_scope() as s:
        assert set(s.exec(select(Notification.state)).all()) == {"sent"}


def test_a_send_slower_than_its_lease_is_given_up_before_another_process_sends_it_too(mail_settings, monkeypatch):
    """A relay slow to answer the end of DATA (each reply may take SMTP_TIMEOUT_SECONDS, a message
    about ten of them): the send is given up, to be retried, before the row's lease runs out, so
    another process's pass after the lease would have lapsed does not send the row a second time."""
    monkeypatch.setattr("billing_app.notifications.worker.LEASE_SECONDS", 2.0)
    other: list = []
    done = threading.Event()

    def second_process():
        time.sleep(2.5)  # the first pass's lease has lapsed by now
        other.append(MailWorker(smtp_url=server.url).run_once())
        done.set()

    server = StallingServer(meanwhile=second_process)
    server.start()
    try:
        _queue_reset()
        started = time.monotonic()
        report = MailWorker(smtp_url=server.url).run_once()
        took = time.monotonic() - started
        assert done.wait(30)
    finally:
        server.stop()
    assert len(server.received) <= 1, "the same row was sent by two processes"
    assert took < 2.0 and len(report.retrying) == 1 and other[0].claimed == 0
    with session_scope() as s:
        row = s.exec(select(Notification)).one()
    assert row.state == "pending" and "gave up" in row.last_error


def test_a_row_that_cannot_become_a_message_fails_alone_and_later_mail_still_goes(mail_settings, smtp):
    """A row whose recipient holds a line break (stored before addresses were checked) cannot be
    built into a message: it is retried, then failed, like a refused send; the rows after it go."""
    with session_scope() as s:
        [poison] = outbox.rows(Kind.PASSWORD_RESET, "poison", ["victim@example.com"], {"url": "http://x/r", "email": "v"})
        poison["recipients"] = json.dumps(["victim@example.com\r\nBcc: everyone@example.com"])
        outbox.insert_rows(s, [poison])
    _queue_reset()
    now = [utcnow()]
    worker = MailWorker(smtp_url=smtp.url, max_attempts=2, clock=lambda: now[0])
    report = worker.run_once()
    assert len(report.sent) == 1 and report.retrying == [poison["key"]]
    assert [r.to for r in smtp.received] == [["someone@example.com"]]
    now[0] += timedelta(hours=2)
    assert worker.run_once().failed == [poison["key"]]
    with session_scope() as s:
        row = s.exec(select(Notification).where(Notification.key == poison["key"])).one()
    assert row.state == "failed" and "linefeed" in row.last_error
    assert len(smtp.received) == 1


def test_a_line_break_in_a_subject_value_stays_inside_the_subject(mail_settings, smtp):
    """An org name with CR/LF (stored before names were checked) cannot add a header (Bcc) to its invitation."""
    hooks.send_invitation("invitee@example.com", "http://x/i", org_name="Evil\r\nBcc: everyone@example.com", inviter="Eve")
    assert len(MailWorker(smtp_url=smtp.url).run_once().sent) == 1
    [got] = smtp.received
    assert got.to == ["invitee@example.com"] and got.message["Bcc"] is None
    assert got.subject == "[Acme Billing] You are invited to join Evil Bcc: everyone@example.com"
