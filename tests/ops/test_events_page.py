"""/ops/events: its live counts follow who is signed in on the tab now, not the gate checked when the
page loaded. A revoked operator, or whoever signs in next on the same tab, gets no more figures."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from billing_app import routes
from billing_app.db import session_scope
from billing_app.models import WebhookEvent
from billing_app.ops import events
from billing_app.ops.access import set_operator
from billing_app.pages import ops_events
from billing_app.pages.ops_events import OpsEventsState
from tests.aio import run_async
from tests.ops.helpers import make_operator
from tests.pages import log_out, run_event, sign_in_on, signed_in_page

NO_COUNTS = {state: 0 for state in events.STATES}
_ids = itertools.count(1)


@pytest.fixture(autouse=True)
def quick_rounds(monkeypatch):
    monkeypatch.setattr(ops_events, "LIVE_SECONDS", 0.01)
    monkeypatch.setattr(ops_events, "LIVE_MAX_MINUTES", 0.05)  # 300 rounds: 3 s at most


def add_event(state: str) -> None:
    with session_scope() as s:
        s.add(WebhookEvent(stripe_event_id=f"evt_{next(_ids)}", type="invoice.paid", customer_id="cus_x",
                           state=state, attempts=1, payload="{}"))


def operators_tab():
    """An operator's /ops/events, loaded: one processed event listed and counted."""
    make_operator()
    add_event("processed")
    tab = signed_in_page(OpsEventsState, "ops@saas.example", routes.OPS_EVENTS)
    run_async(run_event(OpsEventsState.load.fn(tab)))
    assert tab.gate == "ok" and len(tab.rows) == 1 and tab.counts["processed"] == 1
    return tab


def shows_nothing(tab) -> bool:
    return tab.rows == [] and tab.counts == NO_COUNTS and tab.types == ["all"]


def test_a_revoked_operator_gets_no_more_counts(database_url):
    tab = operators_tab()
    set_operator("ops@saas.example", False)
    add_event("failed")
    run_async(run_event(OpsEventsState.keep_counts_live.fn(tab, tab._live)))
    assert tab.gate == "404" and shows_nothing(tab)


def test_counts_stay_live_for_an_operator_and_stop_the_round_they_are_revoked(database_url):
    tab = operators_tab()

    async def scenario():
        loop = asyncio.ensure_future(run_event(OpsEventsState.keep_counts_live.fn(tab, tab._live)))
        await asyncio.to_thread(add_event, "failed")
        for _ in range(200):
            if tab.counts["failed"] == 1:
                break
            await asyncio.sleep(0.01)
        live = dict(tab.counts)
        await asyncio.to_thread(set_operator, "ops@saas.example", False)
        await asyncio.to_thread(add_event, "failed")
        await asyncio.wait_for(loop, timeout=1)  # stopped, long before its 300 rounds
        return live

    assert run_async(scenario()) == {**NO_COUNTS, "processed": 1, "failed": 1}
    assert tab.gate == "404" and shows_nothing(tab)


def test_after_a_logout_the_next_user_on_the_tab_gets_nothing(org):
    tab = operators_tab()
    visit = tab._live
    log_out(tab)
    assert tab.gate == "" and shows_nothing(tab)  # nothing left in the tab for whoever comes next
    sign_in_on(tab, "admin@acme.example", routes.OPS_EVENTS)  # not an operator
    add_event("failed")
    run_async(run_event(OpsEventsState.keep_counts_live.fn(tab, visit)))  # the loop of the operator's visit
    assert tab.gate != "ok" and shows_nothing(tab)



REFETCHES = {  # each handler that reads the list again
    "filters": lambda tab: OpsEventsState.apply_filters.fn(tab, {"state": "failed"}),
    "show_failed": lambda tab: OpsEventsState.show_failed.fn(tab),
    "next_page": lambda tab: OpsEventsState.next_page.fn(tab),
}


@pytest.mark.parametrize("action", list(REFETCHES))
def test_a_revoked_operators_filters_or_pages_leave_no_figures(database_url, action):
    # Refused there, the page set only its gate and rows: the counts, types and cursors stayed in the tab.
    tab = operators_tab()
    tab.next_cursor = "1000"  # as if there were a next page
    set_operator("ops@saas.example", False)
    run_async(run_event(REFETCHES[action](tab)))
    assert tab.gate == "404" and shows_nothing(tab) and (tab.cursors, tab.next_cursor) == ([], "")


def test_a_live_loop_from_before_a_logout_is_not_taken_for_the_next_visits(database_url):
    """Logout resets the tab's states, the visit mark included: the next visit's mark must still differ
    from the one a loop from before the logout holds, or that loop runs on beside the new one."""
    make_operator()
    tab = signed_in_page(OpsEventsState, "ops@saas.example", routes.OPS_EVENTS)
    run_async(run_event(OpsEventsState.load.fn(tab)))
    old_visit = tab._live  # the loop started for this visit is sleeping
    log_out(tab)
    sign_in_on(tab, "ops@saas.example", routes.OPS_EVENTS)  # signs back in, opens /ops/events again
    run_async(run_event(OpsEventsState.load.fn(tab)))
    assert tab._live != old_visit
