"""The operator commands behind `python -m billing_app` (cli.py keeps only the argument parsing):
grant-operator, revoke-operator and the bulk `reconcile` with its progress bar."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from billing_app.billing.gateway import StripeFailure
from billing_app.errors import AppError
from billing_app.ops import access, reconcile


def set_operator_command(email: str, value: bool) -> int:
    try:
        email = access.set_operator(email, value)
    except AppError as error:
        print(f"{'grant' if value else 'revoke'}-operator failed: {error.message}", file=sys.stderr)
        return 1
    print(f"{email} {'is now an operator' if value else 'is no longer an operator'}.")
    return 0


def bulk_reconcile_command(args) -> int:
    console = Console(stderr=True)
    show = not args.no_progress and console.is_terminal
    bars = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[calls]} Stripe calls"), TimeElapsedColumn(), console=console, disable=not show)
    fetch = bars.add_task("Reading Stripe (objects)", total=None, calls=0)
    apply = bars.add_task("Healing the mirror (customers)", total=None, calls=0, visible=False)

    def progress(p: reconcile.RunView) -> None:
        bars.update(fetch, completed=p.fetched, calls=p.calls)
        if p.phase in (reconcile.APPLY, "done"):
            bars.update(fetch, total=p.fetched)
            bars.update(apply, visible=True, total=p.customers_total, completed=p.customers_done, calls=p.calls)

    def say(text: str) -> None:
        if show:
            bars.console.print(text, markup=False, highlight=False)
        else:
            print(text)

    def changed(org_id: int, customer_id: str, lines: list[str]) -> None:
        for line in lines:
            say(f"  org {org_id} {customer_id}: {line}")

    try:
        with bars:
            job = reconcile.BulkReconcile(incremental=args.incremental, resume=not args.fresh, concurrency=args.concurrency,
                                          progress=progress, on_changes=changed, started_by="command line")
            if job.resumed:
                say(f"Resuming bulk reconcile run {job.run_id}.")
            result = job.run()
    except reconcile.ReconcileBusy as error:
        print(f"reconcile: {error.message}", file=sys.stderr)
        return 1
    except (AppError, StripeFailure) as error:
        print(f"reconcile failed: {getattr(error, 'message', error)} (run it again to resume)", file=sys.stderr)
        return 1
    print(f"Reconciled {result.customers} customer(s) in bulk ({result.mode}, run {result.run_id}): "
          f"{len(result.changes)} change(s), {result.orphans} orphan customer(s), {result.calls} Stripe call(s).")
    return 0
