"""A row's button sends its id back to the server, and an event can be hand-crafted: every page
handler that takes an id refuses anything but an id with that page's own clear message (before:
a number too large for the database raised inside the handler, a list raised on `.isdigit()`)."""

from __future__ import annotations

import pytest

from billing_app.errors import AppError
from billing_app.models import MAX_ID
from billing_app.state import id_from_page
from tests.aio import run_async
from tests.billing.helpers import make_org
from tests.ops.helpers import make_operator
from tests.pages import run_event, signed_in_page

FORGED = ["", "seven", "1 OR 1=1", "1.5", str(MAX_ID + 1), "99999999999999999999999", "0", "-3", " 7", "+7", "4_2", "\u0667",
          None, True, 1.5, float("inf"), MAX_ID + 1, ["1"], {"id": 1}]


def _handlers():
    """(state, its handler called with the forged id, the message the page shows)."""
    from billing_app.pages.account import AccountState
    from billing_app.pages.billing import BillingState
    from billing_app.pages.members import MembersState
    from billing_app.pages.ops_events import OpsEventsState
    from billing_app.pages.pricing import PricingState
    from billing_app.pages.tokens import TokensState

    return [
        (AccountState, lambda page, x: AccountState.end_session.fn(page, x), "No such session."),
        (TokensState, lambda page, x: TokensState.revoke.fn(page, x), "No such API token."),
        (MembersState, lambda page, x: MembersState.revoke.fn(page, x), "No such invitation."),
        (MembersState, lambda page, x: MembersState.remove.fn(page, x), "Unknown member."),
        (MembersState, lambda page, x: MembersState.change_role.fn(page, x, "member"), "Unknown member or role."),
        (BillingState, lambda page, x: BillingState.preview_change.fn(page, x), "Choose a plan."),
        (PricingState, lambda page, x: PricingState.subscribe.fn(page, x), "Unknown plan."),
        (OpsEventsState, lambda page, x: OpsEventsState.replay.fn(page, x), "No such event."),
    ]


@pytest.mark.parametrize("forged", FORGED, ids=repr)
def test_a_forged_id_gets_the_pages_own_message(db, forged):
    from billing_app.state import AuthState

    make_org("Acme", "admin@acme.example", "member@acme.example")
    make_operator("ops@saas.example")
    for state_cls, call, message in _handlers():
        email = "ops@saas.example" if state_cls.__name__.startswith("Ops") else "admin@acme.example"
        page = signed_in_page(state_cls, email)
        run_async(run_event(call(page, forged)))
        assert page.error == message, (state_cls, message, forged)
    # The organization switcher answers with a toast, and the user stays where they are.
    page = signed_in_page(AuthState, "admin@acme.example")
    answer = run_async(run_event(AuthState.switch_org.fn(page, forged)))
    assert "Unknown organization." in str(answer.args) and page._actor().org_name == "Acme"


def test_an_organization_id_typed_for_an_orphan_is_read_as_the_other_ids_are(db):
    from billing_app.pages.ops_orphans import OpsOrphansState

    make_operator("ops@saas.example")
    for forged in FORGED:
        if isinstance(forged, str) and forged.strip() != forged:
            continue  # a typed field: surrounding spaces are the typist's, and go
        page = signed_in_page(OpsOrphansState, "ops@saas.example")
        run_async(run_event(OpsOrphansState.attach.fn(page, {"customer_id": "cus_orphan", "org_id": forged})))
        assert page.error == "Enter the id of the organization to attach it to (see Organizations).", forged


def test_a_real_id_passes_and_the_edges_hold():
    assert id_from_page("42", "x") == 42 and id_from_page(7, "x") == 7 and id_from_page(str(MAX_ID), "x") == MAX_ID
    assert id_from_page("0042", "x") == 42
    for forged in FORGED:
        with pytest.raises(AppError) as refused:
            id_from_page(forged, "No such thing.")
        assert refused.value.message == "No such thing."


def test_the_dev_mailbox_ignores_a_forged_message_id(db, monkeypatch):
    from billing_app.notifications import mailbox
    from billing_app.notifications.mailbox import MailDetail
    from billing_app.pages.dev_mail import DevMailState

    monkeypatch.setattr(mailbox, "dev_mail_enabled", lambda: True)
    make_org("Acme", "admin@acme.example", "member@acme.example")
    for forged in FORGED:
        page = signed_in_page(DevMailState, "admin@acme.example")
        run_async(DevMailState.open_message.fn(page, forged))
        assert page.selected == MailDetail()
