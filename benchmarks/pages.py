"""Page speed on a production build: navigation to content visible, and state bytes sent.

Starts the app as `python -m billing_app serve --prod` does (sandbox included) on free
loopback ports with a fresh SQLite file, gives one organization a subscription and
100,000 payments, then opens pricing, billing and payments in Debian's Chromium.
For each page it prints the cold time (first visit), the median of warm visits, and
the bytes the server sent over the websocket for that page load (the state).

    .venv/bin/python benchmarks/pages.py [--payments 100000] [--visits 5]

Targets on this machine: content visible in under 1 s; payments state under 100 KB.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def add_payments(database_url: str, org_id: int, count: int) -> None:
    from sqlalchemy import create_engine, insert

    from billing_app.models import Payment, utcnow

    engine = create_engine(database_url)
    start = utcnow() - timedelta(days=count // 50)
    statuses = ["COMPLETED"] * 8 + ["FAILED", "REFUNDED"]
    with engine.begin() as connection:
        for first in range(0, count, 10_000):
            connection.execute(insert(Payment), [
                {"org_id": org_id, "stripe_id": f"in_bench_{i}", "status": statuses[i % 10], "amount": 900 + i % 1000,
                 "currency": "usd", "created": start + timedelta(minutes=29 * i), "description": f"Invoice {i}",
                 "invoice_url": None, "receipt_url": None, "pdf_url": None}
                for i in range(first, min(first + 10_000, count))
            ])
    engine.dispose()


def measure(page, url: str, selector: str) -> tuple[float, int]:
    received = []

    def on_socket(ws):
        ws.on("framereceived", lambda payload: received.append(len(payload if isinstance(payload, (bytes, str)) else str(payload))))

    page.on("websocket", on_socket)
    started = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(selector, state="visible", timeout=30_000)
    elapsed = time.perf_counter() - started
    page.wait_for_timeout(300)  # let the last deltas of this load arrive before counting
    page.remove_listener("websocket", on_socket)
    return elapsed, sum(received)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=100_000)
    parser.add_argument("--visits", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-pages-"))
    database_url = f"sqlite:///{work}/bench.db"
    os.environ["DATABASE_URL"] = database_url
    os.environ.pop("STRIPE_SECRET_KEY", None)

    from playwright.sync_api import sync_playwright

    from billing_app import serve
    from tests.browser.helpers import pay_on_sandbox_checkout, register, start_purchase
    from tests.conftest import CHROMIUM, CHROMIUM_ARGS

    port, sandbox_port = free_port(), free_port()
    log = open(work / "app.log", "w")
    begun = time.perf_counter()
    processes = serve.start(prod=True, port=port, backend_port=free_port(), sandbox_port=sandbox_port, data_dir=work, use_sandbox=True, log=log)
    print(f"app (prod build) ready in {time.perf_counter() - begun:.1f} s")

    class App:
        url = f"http://127.0.0.1:{port}"

    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            register(page, App, email="bench@example.com", org="Bench Org")
            page.wait_for_selector("#whoami")
            start_purchase(page, App, "starter")
            pay_on_sandbox_checkout(page)
            page.wait_for_selector("text=Payment successful")

            from sqlalchemy import create_engine, text

            engine = create_engine(database_url)
            with engine.connect() as connection:
                org_id = connection.execute(text("SELECT id FROM organization WHERE name = 'Bench Org'")).scalar_one()
            engine.dispose()
            began = time.perf_counter()
            add_payments(database_url, org_id, args.payments)
            print(f"inserted {args.payments:,} payments in {time.perf_counter() - began:.1f} s")

            pages = [
                ("pricing", "/pricing", ".plan-card"),
                ("billing", "/billing", "#status-badge"),
                ("payments", "/billing/payments", ".payment-row"),
            ]
            print(f"{'page':<10}{'cold s':>9}{'warm p50 s':>12}{'warm max s':>12}{'state KB':>10}")
            worst = 0.0
            payments_kb = 0.0
            for name, path, selector in pages:
                cold, _ = measure(page, App.url + path, selector)
                warm, sizes = [], []
                for _ in range(args.visits):
                    elapsed, size = measure(page, App.url + path, selector)
                    warm.append(elapsed)
                    sizes.append(size)
                kb = statistics.median(sizes) / 1024
                worst = max(worst, max(warm))
                if name == "payments":
                    payments_kb = kb
                print(f"{name:<10}{cold:>9.3f}{statistics.median(warm):>12.3f}{max(warm):>12.3f}{kb:>10.1f}")
            browser.close()
    finally:
        serve.stop(processes)
        log.close()
    print(f"target: content visible < 1 s (worst warm visit {worst:.3f} s): {'met' if worst < 1 else 'NOT met'}")
    print(f"target: payments state < 100 KB ({payments_kb:.1f} KB): {'met' if payments_kb < 100 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
