"""The sending hooks other features call: password reset links and invitations.

`install()` (at start-up, billing_app/billing_app.py) registers `send_password_reset` with
billing_app/auth/reset.py. The invitations feature calls `send_invitation` with the link it
shows once; both go to one person only, never to the org's billing contacts.
"""

from __future__ import annotations

import hashlib

from billing_app.db import session_scope
from billing_app.notifications import outbox
from billing_app.notifications.kinds import Kind


def _key(url: str) -> str:
    # The link holds a secret token; the key holds only a digest of it.
    return hashlib.sha256(url.encode()).hexdigest()


def send_password_reset(email: str, url: str) -> None:
    with session_scope() as session:
        outbox.enqueue(session, Kind.PASSWORD_RESET, _key(url), [email], {"email": email, "url": url})


def send_invitation(
    email: str, url: str, *, org_name: str, inviter: str, org_id: int | None = None, session=None, key: str | None = None,
) -> None:
    """Queue the invitation email; pass the caller's `session` to write it with the invitation itself,
    and its `key` (the token's hash) so that withdrawing the invitation can cancel the email."""
    context = {"url": url, "org_name": org_name, "inviter": inviter or "An admin"}
    key = key or _key(url)
    if session is not None:
        outbox.enqueue(session, Kind.INVITATION, key, [email], context, org_id=org_id)
        return
    with session_scope() as own:
        outbox.enqueue(own, Kind.INVITATION, key, [email], context, org_id=org_id)


def cancel_invitation(session, email: str, key: str) -> None:
    """The invitation was withdrawn: its email is not to go if it has not yet (in the caller's transaction)."""
    outbox.cancel(session, Kind.INVITATION, key, email)


def install() -> None:
    from billing_app.auth import reset

    reset.set_sender(send_password_reset)
