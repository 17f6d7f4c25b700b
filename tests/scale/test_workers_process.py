"""`python -m billing_app worker`: the workers as a process of their own, and its graceful drain.

Runs on SQLite and, when TEST_DATABASE_URL is set, on PostgreSQL (the `database_url` fixture),
with a real worker process syncing against the sandbox.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

from billing_app.webhooks import eventlog
from tests.scale.worker_helpers import (
    CUSTOMER_READ,
    ROOT,
    RequestLog,
    TcpProxy,
    WorkerProcess,
    sandbox_customers,
    store_burst,
    wait_until,
)
from tests.webhooks.helpers import rows


def test_the_worker_process_syncs_stored_events_and_on_sigterm_finishes_its_sync_gives_the_rest_back_and_exits_0(
    database_url, sandbox, sandbox_server, tmp_path,
):
    customers = sandbox_customers(sandbox, 5)
    store_burst({customer: 4 for customer in customers})
    stripe = RequestLog(sandbox_server.recording)
    # It syncs two customers at once; its Stripe traffic goes through a proxy that holds every customer
    # read: SIGTERM arrives while the first two syncs are under way.
    proxy = TcpProxy(int(sandbox.base_url.rsplit(":", 1)[1]))
    proxy.hold_from(CUSTOMER_READ, 1)
    worker = WorkerProcess(tmp_path / "worker.log", database_url=database_url,
                           stripe_base=f"http://127.0.0.1:{proxy.port}", api_key=sandbox.api_key, WEBHOOK_SYNC_CONCURRENCY="2")
    try:
        worker.wait_started()
        assert proxy.held.wait(30), "the worker never began a sync"
        wait_until(lambda: proxy.seen == 2, 15, "both syncs to reach Stripe")
        assert {r.claimed_by for r in rows()} != {None}  # it holds its batch
        worker.proc.terminate()  # SIGTERM
        wait_until(lambda: "worker.draining" in worker.output(), 15, "the worker to begin draining")
        proxy.release()  # the syncs in flight complete
        assert worker.wait(30) == 0, worker.output()
    finally:
        proxy.close()
        if worker.proc.poll() is None:
            worker.kill()

    synced, given_back = customers[:2], customers[2:]
    assert stripe.customer_reads() == Counter(synced)
    final = rows()
    assert all(r.claimed_by is None and r.claimed_until is None for r in final), "nothing stays leased"
    assert {r.customer_id for r in final if r.state == "processed"} == set(synced)
    back = [r for r in final if r.customer_id in given_back]
    assert len(back) == 12 and all(r.state == "pending" and r.attempts == 0 for r in back), "given back untried"

    # Due at once for the next worker (no lease to wait for).
    successor = WorkerProcess(tmp_path / "successor.log", database_url=database_url, stripe_base=sandbox.base_url,
                              api_key=sandbox.api_key)
    try:
        successor.wait_started()
        wait_until(lambda: eventlog.counts() == {"processed": 20}, 30, "the given-back events processed")
        assert successor.terminate() == 0
    finally:
        if successor.proc.poll() is None:
            successor.kill()
    assert stripe.customer_reads() == Counter(customers)


def test_with_run_workers_in_backend_false_the_backend_starts_neither_worker(tmp_path):
    """The Reflex app as the backend builds it, in a process of its own (the setting is read as the
    app module loads). The default, both workers in the backend, is tests/webhooks/test_lifespan.py's."""
    probe = ("import json; from billing_app.billing_app import app; "
             "print(json.dumps([getattr(t, '__name__', repr(t)) for t in app.get_lifespan_tasks()]))")
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/app.db", "RUN_WORKERS_IN_BACKEND": "false"}
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    tasks = json.loads(done.stdout.splitlines()[-1])
    assert tasks and not {"run_worker", "run_mail_worker"} & set(tasks), tasks  # Reflex's own tasks remain
