"""The /ops dashboard's handlers: its figures are read off the event loop (in a thread), so a
bulk reconcile finishing on one operator's page never stalls every other page of the backend; and
its loops (a run's progress) follow who is signed in on the tab now, not the gate checked at load."""

from __future__ import annotations

import asyncio

import pytest

from billing_app import routes
from billing_app.ops import metrics, reconcile
from billing_app.ops.access import set_operator
from billing_app.pages import ops as ops_page
from billing_app.pages.ops import OpsDashboardState
from tests.aio import run_async
from tests.ops.helpers import make_operator
from tests.pages import log_out, run_event, sign_in_on, signed_in_page


@pytest.fixture
def figure_reads(monkeypatch) -> list[str]:
    """Where each read of the console's figures ran: "loop" (inside a coroutine) or "thread"."""
    where: list[str] = []
    real = metrics.overview

    def spy(session, now=None):
        try:
            asyncio.get_running_loop()
            where.append("loop")
        except RuntimeError:
            where.append("thread")
        return real(session, now)

    monkeypatch.setattr(metrics, "overview", spy)
    monkeypatch.setattr(ops_page, "PROGRESS_SECONDS", 0.05)
    return where


def test_reconcile_all_reads_the_figures_off_the_event_loop(stripe_env, figure_reads):
    make_operator()
    tab = signed_in_page(OpsDashboardState, "ops@saas.example")
    run_async(run_event(OpsDashboardState.reconcile_all.fn(tab, False)))
    assert tab.message.startswith("Reconciled"), (tab.message, tab.error)
    assert figure_reads == ["thread"]


def test_watching_a_run_end_reads_the_figures_off_the_event_loop(stripe_env, figure_reads):
    make_operator()
    tab = signed_in_page(OpsDashboardState, "ops@saas.example", routes.OPS)
    tab.gate = "ok"
    run_async(run_event(OpsDashboardState.watch_runs.fn(tab)))  # no run is going: it reads the figures once, and stops
    assert (figure_reads, tab.running) == (["thread"], False)


def operators_dashboard(figure_reads):
    """An operator's /ops, loaded: its figures read once (12 months of charts)."""
    make_operator()
    tab = signed_in_page(OpsDashboardState, "ops@saas.example", routes.OPS)
    run_async(run_event(OpsDashboardState.load.fn(tab)))
    assert tab.gate == "ok" and len(tab.status_chart) == 12 and tab.trial_detail and figure_reads == ["thread"]
    figure_reads.clear()
    return tab


def shows_no_figures(tab) -> bool:
    return (tab.revenue, tab.status_chart, tab.mrr_chart, tab.churn_chart, tab.trial_detail, tab.recovery_detail,
            tab.runs) == ([], [], [], [], "", "", [])


def test_a_revoked_operators_open_dashboard_gets_no_more_figures(stripe_env, figure_reads):
    tab = operators_dashboard(figure_reads)
    set_operator("ops@saas.example", False)
    run_async(run_event(OpsDashboardState.watch_runs.fn(tab)))  # following a run: it would read the figures at its end
    assert figure_reads == [] and tab.gate == "404" and shows_no_figures(tab)


def test_after_a_logout_the_next_user_on_the_tab_gets_no_figures(org, figure_reads):
    tab = operators_dashboard(figure_reads)
    log_out(tab)
    assert tab.gate == "" and shows_no_figures(tab)  # nothing left for whoever comes next (nor shown while /ops loads)
    sign_in_on(tab, "admin@acme.example", routes.OPS)  # an org admin, not an operator
    run_async(run_event(OpsDashboardState.watch_runs.fn(tab)))
    assert figure_reads == [] and tab.gate != "ok" and shows_no_figures(tab)


def test_a_reconcile_whose_operator_was_revoked_meanwhile_ends_without_figures(stripe_env, figure_reads, monkeypatch):
    tab = operators_dashboard(figure_reads)
    real_run = reconcile.BulkReconcile.run

    def revoked_meanwhile(job):
        result = real_run(job)
        set_operator("ops@saas.example", False)
        return result

    monkeypatch.setattr(reconcile.BulkReconcile, "run", revoked_meanwhile)
    run_async(run_event(OpsDashboardState.reconcile_all.fn(tab, False)))
    assert figure_reads == [] and tab.gate == "404" and shows_no_figures(tab) and tab.message == ""
