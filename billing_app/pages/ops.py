"""/ops: revenue at a glance (MRR, ARR, statuses, churn, conversion, recovery), 12 months of charts,
and the bulk reconcile with its progress bar."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import reflex as rx

from billing_app import routes
from billing_app.components.layout import error_callout, info_callout
from billing_app.db import session_scope
from billing_app.errors import AppError
from billing_app.formatting import format_amount, format_date
from billing_app.ops import metrics, reconcile
from billing_app.pages.ops_common import OpsState, field, ops_page, stat
from billing_app.state import in_a_thread

PROGRESS_SECONDS = 1.0
PROGRESS_MAX_MINUTES = 120


@dataclass
class Revenue:
    currency: str = ""
    mrr: str = ""
    arr: str = ""


@dataclass
class RunRow:
    id: int = 0
    mode: str = ""
    state: str = ""
    phase: str = ""
    started: str = ""
    progress: str = ""
    percent: int = 0
    calls: int = 0
    changes: int = 0
    orphans: int = 0
    error: str = ""


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


class OpsDashboardState(OpsState):
    revenue: list[Revenue] = []
    counts: dict[str, int] = {status: 0 for status in metrics.COUNTED_STATUSES}
    new_this_month: int = 0
    churned_this_month: int = 0
    trial_conversion: str = ""
    trial_detail: str = ""
    recovery_rate: str = ""
    recovery_detail: str = ""
    currencies: list[str] = []
    chart_currency: str = ""
    mrr_chart: list[dict] = []
    status_chart: list[dict] = []
    churn_chart: list[dict] = []
    runs: list[RunRow] = []
    running: bool = False
    error: str = ""
    message: str = ""
    _mrr_by_currency: dict[str, list[dict]] = {}
    _watching: bool = False

    def _load(self) -> None:
        with session_scope() as session:
            result = metrics.overview(session)
            series = metrics.months(session)
            runs = reconcile.latest_runs(session)
        self.revenue = [Revenue(c.upper(), format_amount(v, c), format_amount(result.arr[c], c)) for c, v in result.mrr.items()]
        self.counts = result.counts
        self.new_this_month, self.churned_this_month = result.new_this_month, result.churned_this_month
        self.trial_conversion = _percent(result.trial_conversion)
        self.trial_detail = f"{result.trials_converted} of {result.trials_ended} trials ended in the last 12 months"
        self.recovery_rate = _percent(result.recovery_rate)
        self.recovery_detail = f"{result.recovered_payments} of {result.failed_payments} failed invoices paid after all"
        currencies = sorted({c for m in series for c in m.mrr}, key=lambda c: -result.mrr.get(c, 0))
        self._mrr_by_currency = {
            c: [{"month": m.label, "mrr": metrics.major_units(m.mrr.get(c, 0), c)} for m in series] for c in currencies
        }
        self.currencies = [c.upper() for c in currencies]
        if self.chart_currency not in self.currencies:
            self.chart_currency = self.currencies[0] if self.currencies else ""
        self.mrr_chart = self._mrr_by_currency.get(self.chart_currency.lower(), [])
        self.status_chart = [{"month": m.label, "Trialing": m.trialing, "Active": m.active, "Canceled": m.canceled} for m in series]
        self.churn_chart = [{"month": m.label, "New": m.new, "Churned": m.churned} for m in series]
        self._show_runs(runs)

    def _show_runs(self, runs: list[reconcile.RunView]) -> None:
        self.runs = [
            RunRow(
                id=r.id, mode=r.mode, state="interrupted" if r.stale else r.state, phase=r.phase, started=format_date(r.started_at),
                progress=(f"{r.customers_done:,} of {r.customers_total:,} customers" if r.phase in ("apply", "done")
                          else f"{r.fetched:,} objects read"),
                percent=r.percent, calls=r.calls, changes=r.changes, orphans=r.orphans, error=r.error,
            )
            for r in runs
        ]
        self.running = any(r.state == "running" and not r.stale for r in runs)

    @in_a_thread
    def load(self):
        self.error = self.message = ""
        if self._gate() is None:
            return
        self._load()
        if self.running:
            return OpsDashboardState.watch_runs

    @in_a_thread
    def choose_currency(self, currency: str):
        if self._gate() is None:
            return
        self.chart_currency = currency
        self.mrr_chart = self._mrr_by_currency.get(currency.lower(), [])

    @rx.event(background=True)
    async def reconcile_all(self, incremental: bool = False):
        operator = await self._operator_in_background()
        if operator is None:
            return
        async with self:
            self.error = self.message = ""
            self.running = True
        try:
            job = await asyncio.to_thread(reconcile.start_for_operator, operator, incremental=incremental)
        except AppError as error:
            async with self:
                self.error, self.running = error.message, False
            return
        task = asyncio.ensure_future(asyncio.to_thread(job.run))
        task.add_done_callback(lambda done: done.cancelled() or done.exception())  # a failure is on the run itself
        while not task.done():
            await asyncio.sleep(PROGRESS_SECONDS)
            if not await self._still_operator():
                return  # the run goes on; this tab, no longer an operator's, stops following it
            await self._refresh_runs()
        error, message = "", ""
        try:
            result = task.result()
        except Exception as failure:  # recorded on the run; it resumes next time
            error = f"The reconcile stopped: {getattr(failure, 'message', failure)}. Run it again to resume."
        else:
            message = (f"Reconciled {result.customers:,} customers: {len(result.changes):,} changes, "
                       f"{result.orphans:,} orphan customers, {result.calls:,} Stripe calls.")
        if not await self._still_operator():
            return
        async with self:
            self.error, self.message = error, message
            await asyncio.to_thread(self._load)  # database reads: off the event loop

    async def _refresh_runs(self) -> None:
        runs = await asyncio.to_thread(_latest_runs)
        async with self:
            self._show_runs(runs)

    @rx.event(background=True)
    async def watch_runs(self):
        """A run started elsewhere (the command line, another operator): follow its progress."""
        async with self:
            if self._watching:
                return
            self._watching = True
        try:
            for _ in range(int(PROGRESS_MAX_MINUTES * 60 / PROGRESS_SECONDS)):
                await asyncio.sleep(PROGRESS_SECONDS)
                async with self:
                    if not self.router.url.path.rstrip("/").endswith(routes.OPS) or self.gate != "ok":
                        return
                if not await self._still_operator():  # revoked, or another user on this tab since the load
                    return
                await self._refresh_runs()
                async with self:
                    if not self.running:
                        await asyncio.to_thread(self._load)  # database reads: off the event loop
                        return
        finally:
            async with self:
                self._watching = False


def _latest_runs() -> list[reconcile.RunView]:
    with session_scope() as session:
        return reconcile.latest_runs(session)


S = OpsDashboardState


def _stats() -> rx.Component:
    return rx.vstack(
        rx.grid(
            rx.foreach(S.revenue, lambda r: rx.card(
                rx.vstack(
                    rx.text("MRR · ", r.currency, size="1", color_scheme="gray", weight="medium"),
                    rx.text(r.mrr, size="6", weight="bold", class_name="mrr-value"),
                    rx.text("ARR ", r.arr, size="1", color_scheme="gray", class_name="arr-value"),
                    spacing="1",
                ),
                width="100%",
            )),
            rx.cond(S.revenue.length() == 0, stat("MRR", "$0.00", id="mrr-none", hint="No paying subscriptions")),
            columns=rx.breakpoints(initial="1", sm="2", md="4"),
            spacing="3",
            width="100%",
            id="revenue",
        ),
        rx.grid(
            stat("Active", S.counts["active"].to_string(), id="count-active"),
            stat("Trialing", S.counts["trialing"].to_string(), id="count-trialing"),
            stat("Past due", S.counts["past_due"].to_string(), id="count-past-due"),
            stat("Paused", S.counts["paused"].to_string(), id="count-paused"),
            stat("Canceled", S.counts["canceled"].to_string(), id="count-canceled"),
            stat("New this month", S.new_this_month.to_string(), id="new-this-month"),
            stat("Churned this month", S.churned_this_month.to_string(), id="churned-this-month"),
            stat("Trial conversion", S.trial_conversion, id="trial-conversion", hint=S.trial_detail),
            stat("Failed-payment recovery", S.recovery_rate, id="recovery-rate", hint=S.recovery_detail),
            columns=rx.breakpoints(initial="2", sm="3", md="5"),
            spacing="3",
            width="100%",
        ),
        spacing="3",
        width="100%",
    )


def _chart_card(title: str, chart: rx.Component, *extra: rx.Component, id: str) -> rx.Component:
    return rx.card(
        rx.vstack(rx.hstack(rx.heading(title, size="4", as_="h2"), rx.spacer(), *extra, width="100%", align="center", wrap="wrap"),
                  chart, spacing="3", width="100%"),
        width="100%",
        id=id,
    )


def _charts() -> rx.Component:
    axes = (rx.recharts.cartesian_grid(stroke_dasharray="3 3"), rx.recharts.x_axis(data_key="month"),
            rx.recharts.y_axis(), rx.recharts.graphing_tooltip(), rx.recharts.legend())
    return rx.grid(
        _chart_card(
            "MRR, last 12 months",
            rx.recharts.line_chart(rx.recharts.line(data_key="mrr", name="MRR", stroke="var(--accent-9)", type_="monotone"),
                                   *axes, data=S.mrr_chart, width="100%", height=260),
            rx.cond(S.currencies.length() > 1, field("Currency", rx.select(S.currencies, value=S.chart_currency,
                                                                         on_change=S.choose_currency, id="chart-currency"),
                                                     id="chart-currency")),
            id="chart-mrr",
        ),
        _chart_card(
            "Subscriptions by status",
            rx.recharts.bar_chart(rx.recharts.bar(data_key="Active", stack_id="s", fill="var(--green-9)"),
                                  rx.recharts.bar(data_key="Trialing", stack_id="s", fill="var(--blue-9)"),
                                  rx.recharts.bar(data_key="Canceled", stack_id="s", fill="var(--gray-9)"),
                                  *axes, data=S.status_chart, width="100%", height=260),
            id="chart-status",
        ),
        _chart_card(
            "New vs churned",
            rx.recharts.bar_chart(rx.recharts.bar(data_key="New", fill="var(--green-9)"),
                                  rx.recharts.bar(data_key="Churned", fill="var(--red-9)"),
                                  *axes, data=S.churn_chart, width="100%", height=260),
            id="chart-churn",
        ),
        columns=rx.breakpoints(initial="1", lg="2"),
        spacing="3",
        width="100%",
    )


def _reconcile() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.heading("Reconcile every customer", size="4", as_="h2"),
                rx.spacer(),
                rx.button("Reconcile all", on_click=S.reconcile_all(False), loading=S.running, id="reconcile-all"),
                rx.button("Only what changed", variant="soft", on_click=S.reconcile_all(True), disabled=S.running,
                          id="reconcile-incremental"),
                width="100%", align="center", wrap="wrap",
            ),
            rx.text("Reads every customer's subscriptions, invoices, charges and checkouts with list calls (100 a page) "
                    "and heals the mirror; customers Stripe has and no organization holds appear under Orphans.",
                    size="2", color_scheme="gray"),
            error_callout(S.error),
            info_callout(S.message),
            rx.foreach(S.runs, lambda run: rx.vstack(
                rx.hstack(
                    rx.text("Run ", run.id, " · ", run.mode, " · ", run.started, size="2", weight="medium"),
                    rx.badge(run.state, color_scheme=rx.match(run.state, ("done", "green"), ("running", "blue"), "red"),
                             variant="soft"),
                    rx.text(run.progress, " · ", run.calls, " Stripe calls · ", run.changes, " changes · ",
                            run.orphans, " orphans", size="1", color_scheme="gray"),
                    wrap="wrap", align="center", spacing="2",
                ),
                rx.cond(run.state == "running",
                        rx.progress(value=run.percent, max=100, width="100%", aria_label="Reconcile progress",
                                    class_name="reconcile-progress")),
                rx.cond(run.error != "", rx.text(run.error, size="1", color_scheme="red")),
                spacing="1", width="100%", class_name="reconcile-run",
            )),
            spacing="3",
            width="100%",
        ),
        width="100%",
        id="reconcile",
    )


@rx.page(route=routes.OPS, title="Billing", on_load=OpsDashboardState.load)
def ops_dashboard() -> rx.Component:
    return ops_page("Overview", _stats(), _charts(), _reconcile())
