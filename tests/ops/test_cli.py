"""The operator commands: grant-operator, revoke-operator, and reconcile in bulk (the default)."""

from __future__ import annotations

from sqlmodel import select

from billing_app.cli import main
from billing_app.db import session_scope
from billing_app.models import OperatorAudit, User
from tests.billing.helpers import buy


def is_operator(email: str) -> bool:
    with session_scope() as s:
        return s.exec(select(User.is_operator).where(User.email == email)).one()


def test_grant_and_revoke_operator_on_the_command_line(org, capsys):
    assert not is_operator("admin@acme.example")
    assert main(["grant-operator", "Admin@Acme.example"]) == 0
    assert "admin@acme.example is now an operator." in capsys.readouterr().out
    assert is_operator("admin@acme.example")
    assert main(["revoke-operator", "admin@acme.example"]) == 0
    assert not is_operator("admin@acme.example")
    assert main(["grant-operator", "nobody@acme.example"]) == 1
    assert "No account uses nobody@acme.example" in capsys.readouterr().err
    with session_scope() as s:
        lines = [(a.operator_email, a.action, a.detail) for a in s.exec(select(OperatorAudit).order_by(OperatorAudit.id))]
    assert lines == [("command line", "grant_operator", "admin@acme.example"), ("command line", "revoke_operator", "admin@acme.example")]


def test_reconcile_is_bulk_by_default_and_per_customer_on_request(org, stripe_env, capsys):
    _, status = buy(org, "starter", "MONTHLY", sandbox=stripe_env)
    stripe_env.client.v1.subscriptions.cancel(status.subscription_id)

    assert main(["reconcile", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"subscription {status.subscription_id}: status 'active' -> 'canceled'" in out
    assert "Reconciled 1 customer(s) in bulk (full, run 1): " in out and "0 orphan customer(s)" in out

    assert main(["reconcile", "--per-customer"]) == 0
    assert "Reconciled 1 of 1 customer(s)." in capsys.readouterr().out
    assert main(["reconcile", "--org", str(org.id)]) == 0
    assert "Reconciled 1 of 1 customer(s)." in capsys.readouterr().out
