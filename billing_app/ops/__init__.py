"""The operator console's services: the people who run this SaaS, not an org's admins.

    access.py     who is an operator: the one server-side check every /ops page and /api/ops route uses
    audit.py      every operator action (who, what, when, target), shown at /ops/audit
    metrics.py    MRR, ARR, status counts, churn, conversion and recovery, from the mirror only
    orgs.py       every organization (search, filter, sort, keyset pages, CSV) and one org in full
    events.py     the webhook event log with filters, live counts and replay
    reconcile.py  bulk reconcile: list calls across all customers, resumable, orphans discovered
    orphans.py    Stripe customers no organization is tied to, and attaching one on purpose

Pages (billing_app/pages/ops*.py) and the REST routes (api/rest/routes/ops.py) call these; none of
these import a page or a route.
"""

from __future__ import annotations

from collections.abc import Sequence

from billing_app.errors import AppError, ErrorCode


def filter_choice(value: str | None, choices: Sequence[str], what: str) -> str:
    """A list filter's value: "" for all (sent empty or as "all"), else one of `choices`; anything else is refused."""
    value = (value or "").strip().lower()
    if value in ("", "all"):
        return ""
    if value not in choices:
        raise AppError(ErrorCode.VALIDATION_ERROR, f"Unknown {what} {value!r}; use one of {', '.join(choices)}.")
    return value
