"""Chaos run: N organizations live random, seeded lifecycles while the backend is killed; does every org converge?

Run:  .venv/bin/python benchmarks/chaos.py [--orgs 20] [--seed 1] [--database sqlite|postgresql|both]
                                          [--kills 3] [--down 8] [--steps 8] [--lanes 4]
      (`make chaos` runs it with the defaults; both databases when PostgreSQL answers on 127.0.0.1:5432)

For each database, on 127.0.0.1 and free ports, everything stopped by process group at the end
(also on Ctrl-C or a failure):
- the offline Stripe sandbox (`python -m billing_app.sandbox`) with `--chaos dup,shuffle,delay`
  (each delivery sent twice, reordered and held back 0.2-1 s) and a retry schedule of about two
  minutes (Stripe's three days, compressed), delivering every event to the app's webhook route;
- the app's backend as `reflex run --env prod` serves it (Granian, one worker, the factory
  `billing_app.billing_app:app`, Reflex's skip-compile flag): the REST API, the webhook route and
  the webhook worker, on a fresh database migrated with `python -m billing_app migrate`
  (SQLite: a temporary file; PostgreSQL: a schema of its own, dropped at the end). The catalog
  comes from `python -m billing_app sync-catalog`; organizations, their admins and API tokens
  from the app's own `register` and `create_token_for_email`.

Then N organizations run their lifecycles (benchmarks/chaos_lifecycles.py: buys paid at the
sandbox, two or three buys at once, plan changes, cancellations, reactivations, keep the current
plan, late payments,
and dashboard changes straight at Stripe: cancel now, cancel_at_period_end, refunds, a paid
Checkout made behind the app's back) from `--lanes` threads. Meanwhile the backend is killed
with SIGKILL `--kills` times at random moments and restarted at once, and taken down once
(SIGTERM) for `--down` seconds while the sandbox keeps retrying its deliveries.

Afterwards every org's view (GET /api/subscriptions/my and the mirror tables) is compared with
Stripe's truth (benchmarks/chaos_check.py) until all agree or `--timeout` passes, and the run
prints, per database, one `name=value` per line:

  orgs_converged                 orgs whose view equals Stripe's truth / N
  time_to_converge_s             from the last chaos step (backend up) until every org agreed
  events_lost                    events the sandbox made that are not in the event log
                                 (acknowledged with a 2xx but missing, or never delivered)
  duplicate_live_subscriptions   plans held at once beyond one per org at Stripe (live
                                 subscriptions + unrefunded lifetime purchases), summed
  p99_stored_to_processed_s      event log: received_at -> processed_at, events the worker handled
  http_5xx                       5xx answers the REST clients saw

and a few lines more (answers by error code, dropped connections, payments, dashboard steps).
The exit status is 1 when an org did not converge, an event was lost, a duplicate is live or a
5xx was seen. The work directory (logs, every org's steps) is kept then, and its path printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Self

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]  # run as a script: billing_app and the helper modules import

from chaos_check import Mirror, differences, event_figures, read_truth
from chaos_lifecycles import (
    Clock,
    Org,
    Period,
    Stats,
    World,
    draw_plan,
    run_lifecycles,
    stripe_client,
)

API_KEY = "sk_test_sandbox"
SECRET = "whsec_chaos"
CHAOS = "dup,shuffle,delay"
RETRY_SCHEDULE = "0.5,1,2,4,8,15,30,60"  # about two minutes of retries
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PASSWORD = "chaos-password-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_answers() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), 1).close()
        return True
    except OSError:
        return False


# --- organizations (run inside a subprocess that has the run's DATABASE_URL) ---------------------

def provision(count: int) -> int:
    """Register `count` organizations with an admin each, and one API token per admin; print them as JSON."""
    from sqlmodel import select

    from billing_app.auth.accounts import register
    from billing_app.auth.api_tokens import create_token_for_email
    from billing_app.db import session_scope
    from billing_app.models import Membership

    made = []
    for index in range(count):
        email = f"admin{index:03d}@chaos.test"
        with session_scope() as session:
            user = register(session, email=email, password=PASSWORD, name=f"Chaos admin {index}", org_name=f"Chaos {index:03d}")
            org_id = session.exec(select(Membership.org_id).where(Membership.user_id == user.id)).one()
        made.append({"index": index, "org_id": org_id, "email": email, "token": create_token_for_email(email, None, "chaos")})
    print(json.dumps(made))
    return 0


# --- processes -----------------------------------------------------------------------------------

def start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen | None, grace: float = 15.0) -> None:
    """SIGTERM the process's group, SIGKILL it after `grace` seconds (as `serve` stops what it started),
    then SIGKILL whatever of the group outlived its leader."""
    if proc is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(proc.args[:4])} exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s; see {log}")


@contextlib.contextmanager
def uninterrupted():
    """Clean-up that a second Ctrl-C (or SIGTERM) must not cut short, leaving servers or a schema behind."""
    handlers = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name: [state, ppid, pgrp, ...] (None when the pid is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def group_pids(pgid: int) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and (_stat(int(p.name)) or [0, 0, -1])[2] == str(pgid)]


def zombies(pids: list[int]) -> list[int]:
    """Those of `pids` that died but are not reaped yet (a restarted worker's `kill(pid, 0)` still finds them)."""
    return [pid for pid in pids if (_stat(pid) or ["?"])[0] == "Z"]


class Backend:
    """The app's backend, which the chaos kills and restarts; `ready` is set while it serves."""

    def __init__(self, env: dict, port: int, log: Path):
        self.env, self.port, self.log = env, port, log
        self.ready = threading.Event()
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()
        self.closed = False  # once closed (the run ends, or Ctrl-C), nothing starts it again

    def start(self) -> float:
        began = time.monotonic()
        command = [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(self.port),
                   "--workers", "1", "--log-level", "warning", "--no-ws", "--factory", "billing_app.billing_app:app"]
        with self.lock:
            if self.closed:
                raise RuntimeError("the run is over")
            self.proc = start(command, self.env, self.log)
        wait_until_up(f"http://127.0.0.1:{self.port}/api/health", self.proc, self.log)
        self.ready.set()
        return time.monotonic() - began

    def kill(self) -> list[int]:
        """SIGKILL the whole process group, mid-whatever it was doing; returns the group's pids."""
        self.ready.clear()  # first: a client whose connection drops now waits for the restart
        with self.lock:
            pids = group_pids(self.proc.pid)
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        return pids

    def stop(self, *, close: bool = False) -> str:
        """SIGTERM (SIGKILL after 15 s; 3 s when closing at the end); says how long it took and how it ended."""
        self.ready.clear()
        began = time.monotonic()
        with self.lock:
            self.closed = self.closed or close
            if self.proc is None:
                return "not running"
            stop(self.proc, grace=3.0 if close else 15.0)
            how = "needed SIGKILL" if self.proc.returncode == -signal.SIGKILL else "exited"
        return f"{how} after {time.monotonic() - began:.1f} s"


def chaos(backend: Backend, rng: random.Random, kills: int, down: float, clock: Clock, timeline: list[str],
          progress, total: int) -> None:
    """SIGKILL the backend `kills` times and take it down once for `down` seconds, at random moments.

    A moment is a point in the lifecycles' progress (after a random share of all steps, between
    5 % and 90 %), so the disruptions land among the requests however fast the machine is.
    """
    try:
        _disrupt(backend, rng, kills, down, clock, timeline, progress, total)
    except Exception as error:  # noqa: BLE001 - the clients wait for `ready`: tell the main thread, never leave them hanging
        timeline.append(f"chaos failed: {type(error).__name__}: {error}")


def _disrupt(backend: Backend, rng: random.Random, kills: int, down: float, clock: Clock, timeline: list[str],
             progress, total: int) -> None:
    plan = ["kill"] * kills + (["down"] if down > 0 else [])
    rng.shuffle(plan)
    moments = sorted(rng.uniform(0.05, 0.9) * total for _ in plan)
    for what, moment in zip(plan, moments):
        while progress() < moment:
            time.sleep(0.02)
        if what == "kill":
            at = clock.now()
            killed = backend.kill()
            took = backend.start()
            # The killed processes may linger as zombies until PID 1 reaps them; say so, it explains slow recoveries.
            unreaped = zombies(killed)
            timeline.append(f"{at:7.2f}s after {progress()} steps: kill -9 of the backend (pids {killed}); serving again after "
                            f"{took:.1f} s{f', pids {unreaped} still unreaped zombies then' if unreaped else ''}")
        else:
            at = clock.now()
            stopped = backend.stop()
            time.sleep(down)
            took = backend.start()
            timeline.append(f"{at:7.2f}s after {progress()} steps: backend stopped with SIGTERM ({stopped}), webhook target "
                            f"down {down:.0f} s more; serving again {took:.1f} s after the restart")


# --- one database ----------------------------------------------------------------------------------

class Database:
    """A fresh database for one run: a SQLite file in the work directory, or a PostgreSQL schema of our own."""

    def __init__(self, kind: str, work: Path):
        self.kind = kind
        self.schema = f"chaos_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        if kind == "sqlite":
            self.url = f"sqlite:///{work / 'chaos.db'}"
        else:
            self.url = f"{PG_URL}?options=-csearch_path%3D{self.schema}"

    def __enter__(self) -> Self:
        if self.kind == "postgresql":
            self._admin(f"CREATE SCHEMA {self.schema}")
        return self

    def __exit__(self, *_exc) -> None:
        if self.kind == "postgresql":
            with uninterrupted():
                self._admin(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")

    @staticmethod
    def _admin(statement: str) -> None:
        from sqlalchemy import create_engine, text

        engine = create_engine(PG_URL)
        with engine.begin() as connection:
            connection.execute(text(statement))
        engine.dispose()


def run_database(kind: str, args, work: Path) -> tuple[dict, bool]:
    log = work / "servers.log"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "DATABASE_URL", "REFLEX_", "APP_URL"))}
    sandbox_port, backend_port = free_port(), free_port()
    with Database(kind, work) as database:
        env = dict(
            base_env, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", DATABASE_URL=database.url,
            STRIPE_SECRET_KEY=API_KEY, STRIPE_API_BASE=f"http://127.0.0.1:{sandbox_port}", STRIPE_WEBHOOK_SECRET=SECRET,
            APP_URL=f"http://127.0.0.1:{backend_port}",
            # As `reflex run --env prod` starts its backend: no compile; Reflex's work directories private to the run.
            __REFLEX_SKIP_COMPILE="true", REFLEX_ENV_MODE="prod",
            REFLEX_WEB_WORKDIR=str(work / "web"), REFLEX_STATES_WORKDIR=str(work / "states"),
        )
        cli = [sys.executable, "-m", "billing_app"]
        with log.open("ab") as out:
            subprocess.run(cli + ["migrate"], cwd=ROOT, env=env, check=True, stdout=out, stderr=subprocess.STDOUT)
        made = subprocess.run([sys.executable, __file__, "--provision", str(args.orgs)], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=False)
        if made.returncode != 0:
            raise RuntimeError(f"provisioning the organizations failed:\n{made.stderr[-2000:]}")
        provisioned = json.loads(made.stdout.strip().splitlines()[-1])

        sandbox = backend = None
        mirror = Mirror(database.url)
        try:
            sandbox = start(
                [sys.executable, "-m", "billing_app.sandbox", "--port", str(sandbox_port),
                 "--webhook-url", f"http://127.0.0.1:{backend_port}/api/stripe/webhook", "--webhook-secret", SECRET,
                 "--chaos", CHAOS, "--webhook-retry", RETRY_SCHEDULE], env, log,
            )
            wait_until_up(f"http://127.0.0.1:{sandbox_port}/_sandbox/health", sandbox, log)
            backend = Backend(env, backend_port, log)
            backend.start()
            with log.open("ab") as out:
                subprocess.run(cli + ["sync-catalog"], cwd=ROOT, env=env, check=True, stdout=out, stderr=subprocess.STDOUT)
            return _exercise(args, work, sandbox_port, backend, mirror, provisioned)
        finally:
            with uninterrupted():
                mirror.close()
                if backend is not None:
                    backend.stop(close=True)
                stop(sandbox, grace=5.0)


def _catalog(backend_port: int, mirror: Mirror) -> list[Period]:
    price_of = {pid: price for price, pid in mirror.period_by_price().items()}
    plans = httpx.get(f"http://127.0.0.1:{backend_port}/api/subscriptions", timeout=30).json()["plans"]
    return [Period(p["id"], plan["key"], p["periodType"], price_of[p["id"]]) for plan in plans for p in plan["periods"]]


def _exercise(args, work: Path, sandbox_port: int, backend: Backend, mirror: Mirror, provisioned: list[dict]) -> tuple[dict, bool]:
    clock, stats = Clock(), Stats()
    sandbox_base = f"http://127.0.0.1:{sandbox_port}"
    world = World(
        api_base=f"http://127.0.0.1:{backend.port}", sandbox_base=sandbox_base, api_key=API_KEY, ready=backend.ready,
        periods=_catalog(backend.port, mirror), customer_of=mirror.customer_of, stats=stats, clock=clock,
    )
    orgs = [Org(p["index"], p["org_id"], p["email"], p["token"], draw_plan(args.seed, p["index"], args.steps)) for p in provisioned]

    timeline: list[str] = []
    total = sum(len(o.plan) for o in orgs)
    chaos_thread = threading.Thread(
        target=chaos, args=(backend, random.Random(f"{args.seed}:chaos"), args.kills, args.down, clock, timeline,
                            lambda: stats.steps_done, total), daemon=True,
    )
    chaos_thread.start()
    run_lifecycles(world, orgs, args.lanes)
    while chaos_thread.is_alive():
        chaos_thread.join(0.5)
    failed = [t for t in timeline if t.startswith("chaos failed")]
    if failed or not backend.ready.wait(120):
        raise RuntimeError(failed[0] if failed else "the backend did not come back after the last disruption")
    lifecycle_s = clock.now()

    # Convergence: poll every org until its view equals Stripe's truth.
    client = stripe_client(sandbox_base, API_KEY)
    period_by_price = mirror.period_by_price()

    def check(org: Org):
        truth = read_truth(client, org.org_id, mirror.customer_of(org.org_id))
        response = world.rest(org, "GET", "/subscriptions/my")
        mine = response.json()["subscription"] if response is not None and response.status_code == 200 else None
        diffs = differences(truth, mirror.rows_of(org.org_id), mine, period_by_price, mirror.payments_of(org.org_id))
        if response is None or response.status_code != 200:
            diffs.append(f"/my answered {response.status_code if response is not None else 'nothing'}")
        return diffs, truth

    waiting = {org.index: org for org in orgs}
    first: dict[int, list[str]] = {}  # what differed at the first look, for orgs that needed time
    agreed: dict[int, float] = {}  # when each org agreed, seconds after the lifecycles ended
    converged_at = None
    deadline = time.monotonic() + args.timeout
    while waiting and time.monotonic() < deadline:
        for index, org in list(waiting.items()):
            diffs, _ = check(org)
            if diffs:
                first.setdefault(index, diffs)
            else:
                agreed[index] = clock.now() - lifecycle_s
                del waiting[index]
        if waiting:
            time.sleep(1.0)
    if not waiting:
        converged_at = clock.now()

    # Let the sandbox finish its deliveries and the worker its events, then the final check of every org.
    _settle(sandbox_base, mirror, deadline=time.monotonic() + args.timeout)
    final: dict[int, list[str]] = {}
    duplicates = 0
    for org in orgs:
        diffs, truth = check(org)
        duplicates += truth.duplicates
        if diffs:
            final[org.index] = diffs
    events = event_figures(client, mirror)
    ok_orgs = len(orgs) - len(final)

    figures = {
        "orgs_converged": f"{ok_orgs}/{len(orgs)}",
        "time_to_converge_s": (f"{converged_at - lifecycle_s:.1f}" if converged_at is not None and not final
                               else f"timeout>{args.timeout:.0f}" if converged_at is None else "diverged_after_converging"),
        "events_lost": events.lost,
        "duplicate_live_subscriptions": duplicates,
        "p99_stored_to_processed_s": f"{events.percentile(0.99):.2f}",
        "http_5xx": stats.http_5xx,
    }
    info = _info(stats, events, timeline, lifecycle_s, orgs, mirror)
    healthy = not final and events.lost == 0 and duplicates == 0 and stats.http_5xx == 0 and not stats.driver_errors
    _write_report(work, orgs, final, first, agreed, events, stats, timeline)
    if final:
        for index, diffs in sorted(final.items()):
            org = orgs[index]
            print(f"  org {index} (id {org.org_id}) did not converge:")
            for line in diffs[:8]:
                print(f"    {line}")
    return {"figures": figures, "info": info}, healthy


def _settle(sandbox_base: str, mirror: Mirror, deadline: float) -> None:
    """Wait until no delivery is queued at the sandbox and no stored event is pending (or the deadline)."""
    while time.monotonic() < deadline:
        queued = httpx.get(f"{sandbox_base}/_sandbox/deliveries", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10).json()["pending"]
        pending = sum(1 for r in mirror.events() if r["state"] == "pending")
        if queued == 0 and pending == 0:
            return
        time.sleep(1.0)


def _info(stats: Stats, events, timeline: list[str], lifecycle_s: float, orgs: list[Org], mirror: Mirror) -> dict:
    codes = Counter()
    for (_, status, code), n in stats.answers.items():
        if status >= 400:
            codes[f"{status}:{code}"] += n
    undone = sum(1 for r in mirror.events() if r["type"] == "app.duplicate_purchase_undone")
    return {
        "steps": sum(len(o.plan) for o in orgs),
        "lifecycle_s": f"{lifecycle_s:.1f}",
        "disruptions": len(timeline),
        "requests": sum(stats.answers.values()),
        "refusals": ",".join(f"{k}x{n}" for k, n in codes.most_common()) or "none",
        "connections_dropped": sum(stats.dropped.values()),
        "payments": ",".join(f"{k}x{n}" for k, n in sorted(stats.payments.items())),
        "dashboard_steps": sum(stats.dashboard.values()),
        "duplicate_purchases_undone": undone,
        "events_created": events.created,
        "events_stored": events.stored,
        "events_unprocessed": len(events.unprocessed),
        "p50_stored_to_processed_s": f"{events.percentile(0.5):.2f}",
        "max_stored_to_processed_s": f"{max(events.latencies, default=float('nan')):.2f}",
        "driver_errors": len(stats.driver_errors),
    }


def _write_report(work: Path, orgs, final, first, agreed, events, stats: Stats, timeline) -> None:
    with (work / "report.txt").open("w") as out:
        out.write("disruptions:\n" + "".join(f"  {t}\n" for t in timeline))
        for title, lines in (("5xx answers", stats.server_errors), ("driver errors", stats.driver_errors),
                             ("events lost after a 2xx", events.lost_after_200), ("events never delivered", events.never_delivered),
                             ("events stored but not processed", events.unprocessed)):
            out.write(f"{title}: {len(lines)}\n" + "".join(f"  {line}\n" for line in lines))
        out.write("dashboard steps:\n" + "".join(f"  {a}: {o} x{n}\n" for (a, o), n in sorted(stats.dashboard.items())))
        for org in orgs:
            state = "NOT converged" if org.index in final else f"converged {agreed.get(org.index, float('nan')):.1f} s after the lifecycles"
            out.write(f"\norg {org.index} (id {org.org_id}, {org.email}): {state}\n")
            for line in final.get(org.index, []):
                out.write(f"  ! {line}\n")
            for line in first.get(org.index, []) if org.index not in final else []:
                out.write(f"  (at first: {line})\n")
            for line in org.log:
                out.write(f"  {line}\n")


# --- main ------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=20, help="organizations (default 20)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"],
                        help="default: both when PostgreSQL answers on 127.0.0.1:5432, else sqlite")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs of the backend at random moments (default 3)")
    parser.add_argument("--down", type=float, default=8.0, help="seconds the webhook target is down once (0: never)")
    parser.add_argument("--steps", type=int, default=8, help="steps per organization (default 8)")
    parser.add_argument("--lanes", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for convergence")
    parser.add_argument("--keep", action="store_true", help="keep the work directory even when all is well")
    parser.add_argument("--provision", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.provision is not None:
        return provision(args.provision)

    if args.database is None:
        args.database = "both" if postgres_answers() else "sqlite"
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    if "postgresql" in kinds and not postgres_answers():
        print("PostgreSQL does not answer on 127.0.0.1:5432", file=sys.stderr)
        return 2

    def _terminate(_signum, _frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _terminate)

    healthy = True
    print(f"chaos seed={args.seed} orgs={args.orgs} steps={args.steps} kills={args.kills} down_s={args.down:.0f} "
          f"sandbox_chaos={CHAOS}", flush=True)
    for kind in kinds:
        work = Path(tempfile.mkdtemp(prefix=f"chaos-{kind}-"))
        try:
            result, ok = run_database(kind, args, work)
        except KeyboardInterrupt:
            print(f"interrupted; logs in {work}", file=sys.stderr)
            return 130
        except Exception as error:  # noqa: BLE001 - say which database failed, still run the other
            print(f"database={kind} failed: {type(error).__name__}: {error}; logs in {work}", file=sys.stderr)
            healthy = False
            continue
        print(f"database={kind} seed={args.seed} orgs={args.orgs}")
        for name, value in result["figures"].items():
            print(f"{name}={value}")
        print("  " + " ".join(f"{name}={value}" for name, value in result["info"].items()), flush=True)
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"  details: {work / 'report.txt'}")
        healthy = healthy and ok
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
