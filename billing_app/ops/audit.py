"""The operator audit log: who did what, when, to which target. Written in the action's own
transaction where there is one, so an action is never without its line."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from billing_app.models import OperatorAudit
from billing_app.text import refuse_control_characters

# What operators do (the `action` column).
REPLAY = "replay"
REPLAY_ALL_FAILED = "replay_all_failed"
RECONCILE = "reconcile"
BULK_RECONCILE = "bulk_reconcile"
ATTACH_ORPHAN = "attach_orphan"
IMPERSONATE_READ = "impersonate_read"
EXPORT = "export"
GRANT = "grant_operator"
REVOKE = "revoke_operator"
COMMAND_LINE = "command line"

PAGE_SIZE = 50


def record(session: Session, operator, action: str, target: str, detail: str = "") -> None:
    """Add one line; `operator` is an access.Operator, or None for the command line."""
    session.add(OperatorAudit(
        operator_id=operator.user_id if operator else None,
        operator_email=operator.email if operator else COMMAND_LINE,
        action=action, target=target[:255], detail=detail[:2000],
    ))


@dataclass
class AuditLine:
    id: int = 0
    at: datetime | None = None
    operator: str = ""
    action: str = ""
    target: str = ""
    detail: str = ""


def recent(session: Session, *, action: str | None = None, before_id: int | None = None, limit: int = PAGE_SIZE) -> list[AuditLine]:
    """Newest first, `limit` lines older than `before_id` (keyset on the primary key)."""
    query = select(OperatorAudit).order_by(OperatorAudit.id.desc()).limit(limit)
    if action:
        query = query.where(OperatorAudit.action == refuse_control_characters(action, "The action"))  # PostgreSQL refuses a NUL
    if before_id:
        query = query.where(OperatorAudit.id < before_id)
    return [AuditLine(r.id, r.at, r.operator_email, r.action, r.target, r.detail) for r in session.exec(query)]
