"""Each recipient gets a message of their own: a refused address or a provider's recipient cap
never resends to the others, and nobody sees who else received it."""

from __future__ import annotations

import json

from sqlmodel import select

from billing_app.db import session_scope
from billing_app.models import Membership, Notification, Role, User
from billing_app.notifications import outbox
from billing_app.notifications.kinds import Kind
from billing_app.notifications.worker import MailWorker
from tests.notifications.helpers import CappedServer, ClosingServer, RefusingServer

CTX = {"org_name": "Acme", "plan": "Pro", "amount": "$29.00", "next_retry": "Dec 4, 2026", "update_url": "http://x/b",
       "billing_url": "http://x/b", "pricing_url": "http://x/p"}


def test_one_refused_recipient_does_not_resend_to_the_others(mail_settings):
    server = RefusingServer()
    server.start()
    try:
        with session_scope() as s:
            outbox.enqueue(s, Kind.PAYMENT_FAILED, "in_1:1", ["bounce@example.com", "admin1@acme.test", "admin2@acme.test"], CTX)
        worker = MailWorker(smtp_url=server.url, backoff_base=0, backoff_cap=0, max_attempts=4)
        for _ in range(4):
            worker.run_once()
        got = sorted(a for r in server.of_kind("payment_failed") for a in r.to)
        assert got == ["admin1@acme.test", "admin2@acme.test"]
        with session_scope() as s:
            states = {json.loads(r.recipients)[0]: r.state for r in s.exec(select(Notification)).all()}
        assert states == {"bounce@example.com": "failed", "admin1@acme.test": "sent", "admin2@acme.test": "sent"}
    finally:
        server.stop()


def test_the_same_cause_queued_again_adds_nothing_per_recipient(mail_settings):
    to = ["billing@acme.test", "admin1@acme.test"]
    for _ in range(3):  # a webhook delivered three times
        with session_scope() as s:
            outbox.enqueue(s, Kind.PAYMENT_FAILED, "in_1:1", to, CTX)
    with session_scope() as s:
        rows = s.exec(select(Notification)).all()
    assert sorted(json.loads(r.recipients) for r in rows) == [["admin1@acme.test"], ["billing@acme.test"]]
    assert len({r.key for r in rows}) == 2 and all("acme.test" not in r.key for r in rows)  # a digest, not the address


def test_an_org_with_more_admins_than_a_providers_cap_reaches_each_once_alone(org, mail_settings):
    with session_scope() as s:
        for i in range(150):
            user = User(email=f"admin{i:03}@big.example", password_hash="x")
            s.add(user)
            s.flush()
            s.add(Membership(user_id=user.id, org_id=org.id, role=Role.ADMIN.value))
    with session_scope() as s:
        to = outbox.org_recipients(s, org.id, Kind.PAYMENT_FAILED, None)
        outbox.enqueue(s, Kind.PAYMENT_FAILED, "in_big:1", to, CTX, org_id=org.id)
    server = CappedServer()
    server.start()
    try:
        worker = MailWorker(smtp_url=server.url, backoff_base=0, backoff_cap=0)
        passes = 0
        while worker.run_once().claimed:
            passes += 1
        received = server.of_kind("payment_failed")
        got = sorted(a for r in received for a in r.to)
        assert got == sorted(to) and len(got) == 151
        assert {len(r.message["To"].addresses) for r in received} == {1}  # nobody sees the other admins
        # One SMTP connection (one TLS handshake and login) per pass, not one per message.
        assert passes == 4 and len({r.connection for r in server.received}) == passes
    finally:
        server.stop()


def test_a_connection_the_server_closed_between_messages_costs_no_message_an_attempt(mail_settings):
    """A provider that closes a connection after two messages: the next message goes on a new
    connection in the same pass, not put off by the backoff with an error."""
    server = ClosingServer(per_connection=2)
    server.start()
    try:
        with session_scope() as s:
            outbox.enqueue(s, Kind.PAYMENT_FAILED, "in_1:1", [f"admin{i}@acme.test" for i in range(5)], CTX)
        report = MailWorker(smtp_url=server.url).run_once()
        assert (len(report.sent), report.retrying) == (5, [])
        assert sorted(a for r in server.of_kind("payment_failed") for a in r.to) == [f"admin{i}@acme.test" for i in range(5)]
        assert len({r.connection for r in server.received}) == 3  # 2 + 2 + 1
    finally:
        server.stop()
