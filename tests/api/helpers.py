"""Factories for the REST API tests: the app as the backend mounts it, tokens and roles, answers,
and the backend's routes under Granian for what only a real server shows (how much of a body it reads).

Billing factories (make_org, period_id, expect, ...) come from tests/billing/helpers.py; the
fixtures (client, tokens) are in conftest.py.
"""

from __future__ import annotations

import contextlib
import select as selector
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
from sqlmodel import select
from starlette.applications import Starlette

from billing_app.api.rest import create_app, mount
from billing_app.auth import accounts, api_tokens
from billing_app.auth.tokens import token_hash
from billing_app.db import session_scope
from billing_app.errors import ErrorCode
from billing_app.models import ApiToken, Membership, Role
from billing_app.serve import PROJECT_ROOT, stop
from tests.billing.helpers import PASSWORD, Org, make_org, period_id
from tests.sandbox_fixture import free_port


def backend_app() -> Starlette:
    """The REST app as the backend serves it: a fresh app mounted at /api."""
    return Starlette(routes=[mount(create_app())])


def token_for(actor) -> str:
    with session_scope() as s:
        return api_tokens.create_token(s, actor, name="test").token


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def set_role(org_id: int, user_id: int, role: Role) -> None:
    with session_scope() as s:
        row = s.exec(select(Membership).where(Membership.org_id == org_id, Membership.user_id == user_id)).one()
        row.role = role.value


def add_membership(org_id: int, user_id: int, role: Role = Role.MEMBER) -> None:
    """Put a user in an org directly, past the seat rules (for setting up a test's state only)."""
    with session_scope() as s:
        s.add(Membership(org_id=org_id, user_id=user_id, role=role.value))


@dataclass
class Tokens:
    """Bearer headers for each role in `org`, plus an admin of another org."""

    org: Org
    other: Org
    admin: dict
    member: dict
    super_admin: dict
    other_admin: dict


def role_tokens(org: Org) -> Tokens:
    """Acme (`org`: admin, member, and a super admin as a third member) and Globex (admin, member), with a token each."""
    other = make_org("Globex", "admin@globex.example", "member@globex.example")
    with session_scope() as s:
        accounts.register(s, email="boss@acme.example", password=PASSWORD, name="Boss", org_name="Boss's own")
    with session_scope() as s:
        boss = accounts.actor_for_session(s, accounts.login(s, email="boss@acme.example", password=PASSWORD))
    # A third member, past the free tier's seats: set up directly (tests/teams tests the seat rules).
    add_membership(org.id, boss.user_id, Role.SUPER_ADMIN)
    with session_scope() as s:
        token = accounts.login(s, email="boss@acme.example", password=PASSWORD)
        super_admin = accounts.switch_org(s, token, org.id)
    assert super_admin.role == Role.SUPER_ADMIN
    return Tokens(
        org, other,
        admin=bearer(token_for(org.admin)),
        member=bearer(token_for(org.member)),
        super_admin=bearer(token_for(super_admin)),
        other_admin=bearer(token_for(other.admin)),
    )


# The role matrix: who calls, from a member to a made-up token.
ROLES = ["member", "admin", "super_admin", "other_org", "no_token", "revoked", "made_up"]
ANONYMOUS = {"no_token", "revoked", "made_up"}


def role_headers(role: str, tokens: Tokens) -> dict:
    """Bearer headers for one role of the role matrix."""
    if role == "no_token":
        return {}
    if role == "made_up":
        return bearer("bapi_" + "x" * 43)
    if role == "revoked":
        token = token_for(tokens.org.admin)
        with session_scope() as s:
            row = s.exec(select(ApiToken).where(ApiToken.token_hash == token_hash(token))).one()
            api_tokens.revoke_token(s, tokens.org.admin, row.id)
        return bearer(token)
    return {"member": tokens.member, "admin": tokens.admin, "super_admin": tokens.super_admin, "other_org": tokens.other_admin}[role]


def ok(response, status=200):
    """A success answer: its status and `success: true`; the body."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is True
    return body


def err(response, status, code=None):
    """An error answer in the one envelope, with this status (and this code, if given); the body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"success", "error_code", "message"} and body["success"] is False and body["message"]
    assert body["error_code"] in ErrorCode.__members__
    if code:
        assert body["error_code"] == code, body
    return body


def buy(client, tokens: Tokens, sandbox, plan="starter", period="MONTHLY", card="pm_card_visa") -> str:
    """Buy through the API as the org's admin, pay on the sandbox and confirm; the Checkout Session id."""
    started = ok(client.post("/api/subscriptions/buy", headers=tokens.admin, json={"subscriptionPeriodId": period_id(plan, period)}))
    sandbox.complete_checkout(started["sessionId"], payment_method=card)
    # What the confirmation page does (no webhook runs in these tests): syncs the mirror.
    assert ok(client.get(f"/api/subscriptions/checkout-session/{started['sessionId']}", headers=tokens.admin))["status"] == "complete"
    return started["sessionId"]


@contextlib.contextmanager
def served_granian(target: str, probe_path: str, *, factory: bool = False, env: dict[str, str] | None = None) -> Iterator[int]:
    """The ASGI app `target` ("module:app") under Granian, as a backend serves it, in a process of its
    own on a loopback port, once `probe_path` answers; yields the port, stops the process by its id."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "granian", "--interface", "asgi", *(["--factory"] if factory else []), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1", target],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}{probe_path}", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"{target} did not start under Granian") from None
                time.sleep(0.1)
        yield port
    finally:
        stop([process])


def served_api():
    """build_api() under Granian (the database from this test's DATABASE_URL); yields the port."""
    return served_granian("billing_app.api:build_api", "/api/health", factory=True)


def stream_until_answered(port: int, path: str, headers: dict[str, str], mebibytes: int = 64) -> tuple[bytes, int]:
    """POST a chunked body (no Content-Length to refuse it by) of up to `mebibytes` MiB, one MiB at a
    time, until the server answers or stops reading; (its status line, the bytes it let us send)."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    chunk = b"%x\r\n" % (1024 * 1024) + b"x" * (1024 * 1024) + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head.encode())
        try:
            for _ in range(mebibytes):
                if selector.select([sock], [], [], 0)[0]:
                    break  # answered
                sock.sendall(chunk)  # times out (5 s) once the server stops reading
                sent += len(chunk)
            else:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass
        answer = sock.recv(65536)
    return answer.split(b"\r\n", 1)[0], sent
