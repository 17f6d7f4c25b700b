"""How a page's action ends, as the user sees it: the org's other open pages refresh after a change."""

from __future__ import annotations

import pytest

from billing_app import live
from tests.aio import run_async
from tests.billing.helpers import buy, period_id
from tests.pages import run_event, signed_in_page


@pytest.fixture
def pushes(monkeypatch) -> list[int]:
    """The orgs whose open pages were told to refresh (`live.notify`), in order."""
    told: list[int] = []

    async def notify(org_id: int) -> int:
        told.append(org_id)
        return 0

    monkeypatch.setattr(live, "notify", notify)
    return told


# --- A: a change made from a page reaches the org's other pages ---------------------------------------

def test_a_cancellation_from_the_billing_page_refreshes_the_orgs_other_pages(org, stripe_env, pushes):
    # The action syncs the mirror itself, so the webhook's sync finds nothing new and pushes nothing:
    # the other tab (or admin) kept "Active" and a Cancel button.
    from billing_app.pages.billing import BillingState

    buy(org, sandbox=stripe_env)
    tab = signed_in_page(BillingState, "admin@acme.example")
    run_async(run_event(BillingState.preview_change.fn(tab, str(period_id("pro", "MONTHLY")))))  # a preview: nothing changes
    run_async(run_event(BillingState.open_portal.fn(tab, "")))  # a link to Stripe's portal: nothing changes yet
    assert pushes == []
    run_async(run_event(BillingState.confirm_cancel_flow.fn(tab, {"when": "end"})))
    assert tab.error == tab.flow_error == "" and tab.view.can_reactivate
    assert pushes == [org.id]


def test_a_team_change_from_the_members_page_refreshes_the_orgs_other_pages(org, pushes, roomy_free_tier):
    from billing_app.pages.members import MembersState

    tab = signed_in_page(MembersState, "admin@acme.example")
    run_async(run_event(MembersState.change_role.fn(tab, str(org.member.user_id), "admin")))
    assert tab.error == ""
    assert pushes == [org.id]
