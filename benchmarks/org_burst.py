"""One organization's burst of buys against another organization's reads, with and without turns, in one run.

Run:  .venv/bin/python benchmarks/org_burst.py [--burst 60] [--stripe-ms 300] [--rounds 2]

Setup (127.0.0.1, free ports, everything stopped by pid at the end): the offline Stripe sandbox
as a subprocess, a fresh migrated SQLite database with the catalog synced, and the REST API
served by uvicorn in this process with its real thread pool (40 threads). The sandbox answers in
milliseconds, so every Stripe call is made `--stripe-ms` slower here, as real Stripe is.

Each arm uses an org of its own: its admin sends `--burst` concurrent `POST /api/subscriptions/buy`
(they queue on the org's purchase claim) while another org's admin reads
`GET /api/subscriptions/my` every 100 ms. Printed per arm: that reader's p50 / p99 / max latency
during the burst, the buys' outcomes (a burst is only comparable when all of them succeeded) and
how long it took; after a warm-up burst, the arms alternate which runs first; then the ratios over
all rounds. "without turns" replaces the REST
dependency's turn (billing/turns.py) with no wait at all, which is what the code did before.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # run as a script: billing_app and reconcile's helpers import
from reconcile import free_port, offline_billing


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def admin_token(email: str) -> str:
    from billing_app.auth import accounts, api_tokens
    from billing_app.db import session_scope

    with session_scope() as s:
        accounts.register(s, email=email, password="a-long-password-1", name="Admin", org_name=email)
    with session_scope() as s:
        actor = accounts.actor_for_session(s, accounts.login(s, email=email, password="a-long-password-1"))
        return api_tokens.create_token(s, actor, name="bench").token


def arm(url: str, burst: int, buyer: str, reader: str, period_id: int) -> tuple[list[float], Counter, float]:
    import httpx

    done = threading.Event()
    latencies: list[float] = []

    def read_meanwhile():
        with httpx.Client(timeout=120) as client:
            while not done.is_set():
                started = time.perf_counter()
                client.get(f"{url}/api/subscriptions/my", headers={"Authorization": f"Bearer {reader}"}).raise_for_status()
                latencies.append(time.perf_counter() - started)
                time.sleep(0.1)

    def buy(_):
        response = httpx.post(f"{url}/api/subscriptions/buy", headers={"Authorization": f"Bearer {buyer}"},
                              json={"subscriptionPeriodId": period_id}, timeout=120)
        return response.status_code

    reading = threading.Thread(target=read_meanwhile)
    reading.start()
    time.sleep(0.5)
    started = time.perf_counter()
    with ThreadPoolExecutor(burst) as pool:
        outcomes = Counter(pool.map(buy, range(burst)))
    took = time.perf_counter() - started
    done.set()
    reading.join()
    return latencies, outcomes, took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--burst", type=int, default=60, help="concurrent buys of one org")
    parser.add_argument("--stripe-ms", type=float, default=300, help="added to every Stripe call")
    parser.add_argument("--rounds", type=int, default=2, help="each arm this many times, in alternating order")
    args = parser.parse_args()

    with offline_billing("bench-burst-"):
        run(args)


def run(args) -> None:
    import uvicorn
    from sqlmodel import select
    from starlette.applications import Starlette

    from billing_app.api.rest import create_app, deps, mount
    from billing_app.billing import gateway
    from billing_app.db import session_scope
    from billing_app.models import PlanPeriod

    with session_scope() as s:
        period_id = s.exec(select(PlanPeriod.id).where(PlanPeriod.lookup_key == "starter_monthly_v1")).one()

    real_call = gateway.call

    def call_at_stripes_pace(*a, **k):
        time.sleep(args.stripe_ms / 1000)
        return real_call(*a, **k)

    gateway.call = call_at_stripes_pace
    api_port = free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[mount(create_app())]), host="127.0.0.1", port=api_port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    url = f"http://127.0.0.1:{api_port}"
    reader = admin_token("reader@bench.example")
    real_turn = deps._turn
    arms = {"without turns": lambda request, actor: contextlib.nullcontext(), "with turns": real_turn}
    results: dict[str, list[float]] = {name: [] for name in arms}
    buyers = iter(range(1_000_000))
    deps._turn = real_turn
    arm(url, min(args.burst, 10), admin_token("warm-up@bench.example"), reader, period_id)  # not counted
    # Alternating order, so neither arm always runs first (on a warmer or a colder server).
    for round_ in range(args.rounds):
        for name in (list(arms) if round_ % 2 == 0 else list(reversed(arms))):
            deps._turn = arms[name]
            latencies, outcomes, took = arm(url, args.burst, admin_token(f"buyer-{next(buyers)}@bench.example"), reader, period_id)
            results[name] += latencies
            print(f"round {round_ + 1}, {name}: other org's read p50 {statistics.median(latencies):.3f} s, "
                  f"p99 {percentile(latencies, 0.99):.3f} s, max {max(latencies):.3f} s over {len(latencies)} reads; "
                  f"buys {dict(sorted(outcomes.items()))} in {took:.1f} s")
    deps._turn = real_turn
    server.should_exit = True
    before, after = results["without turns"], results["with turns"]
    for name, latencies in results.items():
        print(f"{name}, all rounds: p50 {statistics.median(latencies):.3f} s, p99 {percentile(latencies, 0.99):.3f} s, "
              f"max {max(latencies):.3f} s over {len(latencies)} reads")
    print(f"p50_ratio_with_over_without={statistics.median(after) / statistics.median(before):.3f} "
          f"p99_ratio_with_over_without={percentile(after, 0.99) / percentile(before, 0.99):.3f} "
          f"max_ratio_with_over_without={max(after) / max(before):.3f}")


if __name__ == "__main__":
    main()
