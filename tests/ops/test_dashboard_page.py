"""The /ops dashboard's handlers: its figures are read off the event loop (in a thread), so a
bulk reconcile finishing on one operator's page never stalls every other page of the backend."""

from __future__ import annotations

import asyncio

import pytest

from billing_app import routes
from billing_app.ops import metrics
from billing_app.pages import ops as ops_page
from billing_app.pages.ops import OpsDashboardState
from tests.aio import run_async
from tests.ops.helpers import make_operator
from tests.pages import run_event, signed_in_page


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
