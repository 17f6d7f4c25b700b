"""The mail worker: sends the outbox over SMTP, with retries and backoff.

`MailWorker.run_once()` is one synchronous pass (tests drive it); `run_mail_worker()` is the loop
the backend starts as a Reflex lifespan task. A pass claims due rows with a short lease (a
conditional UPDATE, so two processes never send the same row), renews a row's lease just before
sending it (a long pass must not send a row whose lease lapsed and another process took), sends
each outside any transaction, then records the outcome if the row is still its own: `sent` (the body cleared: it may hold a reset link or an
invitation token), or another attempt after a backoff (30 s doubling,
capped at 1 h), or `failed` after MAX_ATTEMPTS with the last error kept on the row and the body
cleared too (an invitation link stays valid for days; a failed row must not hold it).

Without SMTP_URL nothing leaves the machine: pending rows become `kept`, body and all (shown at
/dev/mail).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import EllipsisType

import structlog
from sqlalchemy import and_, or_, update
from sqlmodel import select

from billing_app.db import session_scope
from billing_app.models import Notification, utcnow
from billing_app.notifications import mailer
from billing_app.notifications.mailer import Rendered
from billing_app.passes import Backoff, PassWorker
from billing_app.settings import get_settings

log = structlog.get_logger("billing_app.notifications")

# canceled: withdrawn before it went (an invitation revoked meanwhile; outbox.cancel)
PENDING, SENT, FAILED, KEPT, CANCELED = "pending", "sent", "failed", "kept", "canceled"
BATCH_SIZE = 50
LEASE_SECONDS = 120.0
MAX_ATTEMPTS = 8
BACKOFF_BASE_SECONDS = 30.0
BACKOFF_CAP_SECONDS = 3600.0
POLL_SECONDS = 2.0
ERROR_MAX_CHARS = 2000
# What a sent or failed row keeps: kind, recipients, subject, timestamps, state (and error), no body.
CLEARED_BODY = {"text_body": "", "html_body": ""}

Sender = Callable[[str, object], None]


@dataclass
class MailReport:
    claimed: int = 0
    sent: list[str] = field(default_factory=list)  # keys
    kept: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class MailWorker(PassWorker):
    def __init__(
        self, *, smtp_url: str | None | EllipsisType = ..., send: Sender | None = None,
        batch_size: int = BATCH_SIZE, max_attempts: int = MAX_ATTEMPTS,
        backoff_base: float = BACKOFF_BASE_SECONDS, backoff_cap: float = BACKOFF_CAP_SECONDS,
        clock: Callable[[], datetime] = utcnow,
    ):
        self._smtp_url = smtp_url
        self.send = send  # None: SMTP, one connection per pass (mailer.SmtpConnection); tests pass their own
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.clock = clock

    @property
    def smtp_url(self) -> str | None:
        """The worker's own (tests), else SMTP_URL as configured now."""
        return get_settings().smtp_url if self._smtp_url is ... else self._smtp_url

    def backoff(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.backoff_cap, self.backoff_base * 2 ** max(0, attempts - 1)))

    def _claim(self, now: datetime) -> tuple[list[Notification], datetime]:
        """Due rows, leased to this pass until the returned time (the lease is also the pass's mark)."""
        due = and_(
            Notification.state == PENDING,
            or_(Notification.next_attempt_at.is_(None), Notification.next_attempt_at <= now),
            or_(Notification.claimed_until.is_(None), Notification.claimed_until < now),
        )
        with session_scope() as session:
            ids = session.exec(select(Notification.id).where(due).order_by(Notification.id).limit(self.batch_size)).all()
            until = now + timedelta(seconds=LEASE_SECONDS)
            if not ids:
                return [], until
            # Conditional: a row another process claimed meanwhile no longer matches `due`.
            claimed = session.execute(
                update(Notification).where(Notification.id.in_(ids), due)
                .values(claimed_until=until, attempts=Notification.attempts + 1)
                .returning(Notification.id)
            ).scalars().all()
        if not claimed:
            return [], until
        with session_scope() as session:
            rows = session.exec(select(Notification).where(Notification.id.in_(claimed)).order_by(Notification.id)).all()
            return list(rows), until

    def _hold(self, row_id: int, lease: datetime) -> datetime | None:
        """Renew this pass's lease on a row just before sending it: the new lease, or None when the
        lease lapsed during the pass's earlier sends and another process has claimed the row since."""
        renewed = self.clock() + timedelta(seconds=LEASE_SECONDS)
        with session_scope() as session:
            held = session.execute(
                update(Notification)
                .where(Notification.id == row_id, Notification.state == PENDING, Notification.claimed_until == lease)
                .values(claimed_until=renewed).returning(Notification.id)
            ).first()
        return renewed if held else None

    def run_once(self) -> MailReport:
        # A send may take half the lease `_hold` just renewed (the rest records the outcome), so no
        # other process claims a row while its send is in flight.
        with mailer.SmtpConnection(deadline_seconds=LEASE_SECONDS / 2) as connection:
            return self._pass(self.send or connection.send)

    def _pass(self, send: Sender) -> MailReport:
        report = MailReport()
        now = self.clock()
        rows, lease = self._claim(now)
        report.claimed = len(rows)
        smtp_url = self.smtp_url
        for row in rows:
            if smtp_url is None:
                self._finish(row.id, lease, state=KEPT, attempts=row.attempts - 1)
                report.kept.append(row.key)
                continue
            held = self._hold(row.id, lease)
            if held is None:
                log.warning("mail.lease_lost", key=row.key)  # another process sends it
                continue
            try:  # building too: a row that cannot become a message fails alone, not the pass
                message = mailer.build_message(row.to, Rendered(row.subject, row.text_body, row.html_body), message_id_key=row.key)
                send(smtp_url, message)
            except Exception as error:  # any failure is retried; the text is kept for whoever looks
                text = f"{type(error).__name__}: {error}"[:ERROR_MAX_CHARS]
                if row.attempts >= self.max_attempts:
                    # Given up: nobody will read this body, and it may hold a live invitation link.
                    self._finish(row.id, held, state=FAILED, last_error=text, **CLEARED_BODY)
                    report.failed.append(row.key)
                    log.error("mail.failed", key=row.key, attempts=row.attempts, error=text)
                else:
                    self._finish(row.id, held, state=PENDING, last_error=text, next_attempt_at=self.clock() + self.backoff(row.attempts))
                    report.retrying.append(row.key)
                    log.warning("mail.retrying", key=row.key, attempts=row.attempts, error=text)
                continue
            # Delivered: the body (reset links, invitation tokens) is the recipient's now, not ours to keep.
            self._finish(row.id, held, state=SENT, sent_at=self.clock(), last_error=None, **CLEARED_BODY)
            report.sent.append(row.key)
        if rows:
            log.info("mail.pass", claimed=report.claimed, sent=len(report.sent), kept=len(report.kept),
                     retrying=len(report.retrying), failed=len(report.failed))
        return report

    @staticmethod
    def _finish(row_id: int, lease: datetime, **values) -> None:
        """Record a row's outcome, only while the row is still this pass's (its lease unchanged)."""
        with session_scope() as session:
            done = session.execute(
                update(Notification).where(Notification.id == row_id, Notification.claimed_until == lease)
                .values(claimed_until=None, **values).returning(Notification.id)
            ).first()
        if done is None:
            log.warning("mail.outcome_not_recorded", id=row_id, outcome=values.get("state"))


async def run_mail_worker(*, poll_seconds: float = POLL_SECONDS, worker: MailWorker | None = None) -> None:
    """Send the outbox until cancelled (the backend's lifespan ends)."""
    worker = worker or MailWorker()
    log.info("mail.worker_started", smtp=bool(worker.smtp_url))
    backoff = Backoff(poll_seconds, log, "mail.worker_error")
    try:
        while True:
            report = await backoff.run(worker.run_once)
            if report is None:
                continue
            if report.claimed >= worker.batch_size:
                continue
            await asyncio.sleep(poll_seconds)
    finally:
        log.info("mail.worker_stopped")
