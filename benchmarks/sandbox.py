"""Benchmark the offline Stripe sandbox: start-up time and API requests per second.

Run:  .venv/bin/python benchmarks/sandbox.py [--seconds 4] [--threads 4]

Starts `python -m billing_app.sandbox` on a free loopback port, times how long until
it answers an authenticated API call, then drives it with keep-alive connections
from a few threads for a fixed time (a mix of retrieve, list and create calls, as
the app makes them).  The same load runs against a bare Starlette "hello" route
under uvicorn, measured in the same run, so the ratio says what the sandbox's own
work costs on this machine.  Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make billing_app importable
AUTH = {"Authorization": "Bearer sk_test_bench"}

BARE_APP = """
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def hello(request):
    return JSONResponse({"hello": "world"})

app = Starlette(routes=[Route("/hello", hello)])
uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, path: str, headers: dict, proc: subprocess.Popen, timeout: float = 20.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", path, headers=headers)
            if conn.getresponse().status == 200:
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.01)
    raise SystemExit("server did not start")


def stop(proc: subprocess.Popen) -> None:
    from billing_app.serve import stop as stop_processes

    stop_processes([proc])


def load(port: int, requests: list, seconds: float, threads: int) -> float:
    """Requests/s over ``seconds`` with ``threads`` keep-alive clients cycling through ``requests``."""
    counts = [0] * threads
    errors = [0] * threads
    stop_at = time.monotonic() + seconds

    def worker(i):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        n = i
        while time.monotonic() < stop_at:
            method, path, body, headers = requests[n % len(requests)]
            n += 1
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                errors[i] += 1
            counts[i] += 1
        conn.close()

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.monotonic() - t0
    if sum(errors):
        raise SystemExit(f"{sum(errors)} requests failed")
    return sum(counts) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()

    # The sandbox.
    port = free_port()
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "billing_app.sandbox", "--port", str(port)], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(port, "/v1/products", AUTH, proc)
        startup = time.monotonic() - t0

        def call(method, path, params=None):
            conn = http.client.HTTPConnection("127.0.0.1", port)
            body = urlencode(params or {})
            conn.request(method, path, body=body, headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"})
            return json.loads(conn.getresponse().read())

        prod = call("POST", "/v1/products", {"name": "Bench"})
        price = call("POST", "/v1/prices", {"product": prod["id"], "currency": "usd", "unit_amount": 1000, "recurring[interval]": "month"})
        cust = call("POST", "/v1/customers", {"email": "bench@x.test"})
        form = {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}
        mix = [
            ("GET", f"/v1/prices/{price['id']}", None, AUTH),
            ("GET", f"/v1/customers/{cust['id']}", None, AUTH),
            ("GET", "/v1/prices?lookup_keys[0]=none&limit=10&expand[0]=data.product", None, AUTH),
            ("GET", f"/v1/products/{prod['id']}", None, AUTH),
            ("POST", "/v1/customers", "email=new%40x.test&metadata[user_id]=1", form),
        ]
        load(port, mix, 0.5, args.threads)  # warm-up (lazy params schemas, connections)
        sandbox_rps = load(port, mix, args.seconds, args.threads)
    finally:
        stop(proc)

    # A bare Starlette route under the same uvicorn, for scale.
    bport = free_port()
    bare = subprocess.Popen([sys.executable, "-c", BARE_APP.replace("{port}", str(bport))], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(bport, "/hello", {}, bare)
        load(bport, [("GET", "/hello", None, {})], 0.5, args.threads)
        bare_rps = load(bport, [("GET", "/hello", None, {})], args.seconds, args.threads)
    finally:
        stop(bare)

    print(f"startup_seconds={startup:.3f}")
    print(f"requests_per_second={sandbox_rps:.0f}")
    print(f"bare_starlette_requests_per_second={bare_rps:.0f}")
    print(f"ratio_vs_bare_starlette={sandbox_rps / bare_rps:.2f}")
    print(f"cores={os.cpu_count()} threads={args.threads} seconds={args.seconds}")


if __name__ == "__main__":
    main()
