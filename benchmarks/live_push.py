"""Live push across backends: K open billing pages, webhook changes for their orgs, 1 vs 2 backends.

Run:  .venv/bin/python benchmarks/live_push.py [--pages 200] [--orgs 50] [--rounds 3] [--ingest 2000] [--workers 1]
                                             [--spread 0,10]
      (needs PostgreSQL, TEST_DATABASE_URL or postgresql+psycopg://postgres@127.0.0.1:5432/test, and
      Redis, TEST_REDIS_URL or redis://127.0.0.1:6379/0; a schema and a key prefix of its own)

What runs (127.0.0.1, free ports, stopped by process group at the end): the offline Stripe
sandbox, then twice the topology of `python -m billing_app serve --prod --backends N` (the same
`serve.start_scaled`: static frontend, N backends with Reflex's Redis state manager, the
balancer, `--workers` worker processes, or with 0 the worker inside each backend), N = 1 then
N = 2, on the same database.

The pages: `--orgs` organizations, each an admin with a Starter subscription bought through
Checkout at the sandbox; `--pages` clients spread evenly over them, each a websocket to the
balancer speaking Reflex's protocol (Engine.IO 4 / Socket.IO 5, the hydrate event in the
CONNECT packet, a session cookie of the org's admin, one session per page as separate browsers
have) exactly as a browser tab on /billing does, so each page's on_load registers it for live
updates on the backend its socket landed on.

A round: every subscription is flipped at the sandbox (cancel_at_period_end; the sandbox's own
deliveries are switched off), then one signed `customer.subscription.updated` per org is posted
through the balancer: all at once (spread 0, a burst: every org changes in the same instant), or
one after another evenly over S seconds (changes arriving at a steady rate); `--spread` lists the
ways to measure, each on the same topology (default: a burst, then over 10 s).
Measured per page: from its org's webhook POST to the first state delta on its socket, over
`--rounds` rounds after one warm-up round that is not counted.
Printed per N and spread: p50, p99, max, deltas/s over the round, and pages that got nothing.
Then webhook ingestion: `--ingest` signed events (a type the worker stores and does not sync)
posted through the balancer by 16 clients: events/s. The last lines are the ratios
2 backends / 1 backend. Not a test: figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make billing_app and tests importable

PASSWORD = "a-long-password-1"
STATE = "reflex___state____state"
HYDRATE = f"{STATE}.hydrate_and_load"
BILLING_STATE_MARK = "billing____billing_state"  # the page state's name inside a delta


def sign(payload: bytes, secret: str) -> str:
    timestamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


# --- a page: Reflex's socket protocol over a plain websocket (wsproto) ---------------------

class Page:
    """One open /billing tab: the event socket, hydrated and loaded; records when deltas arrive."""

    def __init__(self, host: str, port: int, cookie: str, org_id: int):
        self.host, self.port, self.cookie, self.org_id = host, port, cookie, org_id
        self.token = str(uuid.uuid4())
        self.loaded = asyncio.Event()
        self._seen = 0  # billing-state deltas so far: the hydrate's, then on_load's
        self.deltas: list[float] = []  # arrival times of billing-state deltas after loading
        self.task: asyncio.Task | None = None

    async def run(self) -> None:
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import AcceptConnection, CloseConnection, Ping, Request, TextMessage

        reader, writer = await asyncio.open_connection(self.host, self.port)
        ws = WSConnection(ConnectionType.CLIENT)
        origin = f"http://{self.host}:{self.port}"
        writer.write(ws.send(Request(
            host=f"{self.host}:{self.port}", target=f"/_event/?EIO=4&transport=websocket&token={self.token}",
            extra_headers=[(b"cookie", f"billing_session={self.cookie}".encode()), (b"origin", origin.encode())],
        )))
        buffer = ""
        try:
            while data := await reader.read(65536):
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, Ping):
                        writer.write(ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        return
                    elif isinstance(event, TextMessage):
                        buffer += event.data
                        if event.message_finished:
                            self._on_message(buffer, ws, writer)
                            buffer = ""
                    elif isinstance(event, AcceptConnection):
                        pass
                await writer.drain()
        finally:
            writer.close()

    def _on_message(self, message: str, ws, writer) -> None:
        from wsproto.events import TextMessage

        def send(text: str) -> None:
            writer.write(ws.send(TextMessage(data=text)))

        if message.startswith("0"):  # Engine.IO open: connect to the namespace, the hydrate riding along
            boot = {"name": HYDRATE, "router_data": {"pathname": "/billing", "asPath": "/billing", "query": {}}}
            send("40/_event," + json.dumps({"event": boot}))
        elif message == "2":  # Engine.IO ping
            send("3")
        elif message.startswith("42/_event,"):
            if BILLING_STATE_MARK not in message:
                return
            if self.loaded.is_set():
                self.deltas.append(time.monotonic())
                return
            self._seen += 1
            if self._seen >= 2:
                self.loaded.set()


# --- setup ------------------------------------------------------------------------------

def make_orgs(count: int, sessions: int) -> list[tuple[int, list[str], str]]:
    """`count` orgs, each an admin with Starter bought at the sandbox: (org id, `sessions` session
    tokens of that admin, customer). Each page gets a session of its own, as separate browsers do."""
    import stripe

    from billing_app.auth import accounts, passwords
    from billing_app.billing.checkout import checkout_status, start_checkout
    from billing_app.db import session_scope
    from billing_app.models import BillingCustomer, Plan, PlanPeriod
    from billing_app.settings import get_settings
    from sqlmodel import select

    settings = get_settings()
    client = stripe.StripeClient(settings.stripe_secret_key, base_addresses={"api": str(settings.stripe_api_base)})
    hashed = passwords.hash_password(PASSWORD)
    with session_scope() as s:
        period = s.exec(select(PlanPeriod.id).join(Plan, Plan.id == PlanPeriod.plan_id)
                        .where(Plan.key == "starter", PlanPeriod.period_type == "MONTHLY")).one()
    orgs = []
    for n in range(count):
        email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        with session_scope() as s:
            accounts.register(s, email=email, password=PASSWORD, name="Bench", org_name=f"Bench {n}", password_hash=hashed)
        with session_scope() as s:
            token = accounts.login(s, email=email, password=PASSWORD)
            admin = accounts.actor_for_session(s, token)
            user = s.get(accounts.User, admin.user_id)
            tokens = [token] + [accounts.start_session(s, user) for _ in range(sessions - 1)]
        started = start_checkout(admin, period)
        client.raw_request("post", f"/v1/test_helpers/checkout/sessions/{started.session_id}/complete", payment_method="pm_card_visa")
        checkout_status(admin, started.session_id)
        with session_scope() as s:
            customer = s.exec(select(BillingCustomer.stripe_customer_id).where(BillingCustomer.org_id == admin.org_id)).one()
        orgs.append((admin.org_id, tokens, customer))
    return orgs


def flip_all(client, orgs, canceling: bool) -> dict[int, dict]:
    """Change every org's subscription at the sandbox; the events to post, by org."""
    events = {}
    for org_id, _token, customer in orgs:
        sub = client.v1.subscriptions.list(params={"customer": customer}).data[0]
        client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": canceling})
        events[org_id] = {"id": f"evt_bench_{uuid.uuid4().hex}", "object": "event", "type": "customer.subscription.updated",
                          "created": int(time.time()), "data": {"object": {"id": sub.id, "object": "subscription", "customer": customer}}}
    return events


async def post(host: str, port: int, body: bytes, secret: str) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    head = (f"POST /api/stripe/webhook HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Stripe-Signature: {sign(body, secret)}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    writer.write(head.encode() + body)
    await writer.drain()
    status = await reader.readline()
    while await reader.read(65536):
        pass
    writer.close()
    return int(status.split()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def listen_notices(notices: dict[int, float], ready: asyncio.Event) -> None:
    """Record when each org's live notice is published on Redis (splits the latency in two)."""
    import redis.asyncio as redis

    from billing_app import live
    from billing_app.settings import get_settings

    client = redis.Redis.from_url(get_settings().redis_url)
    async with client.pubsub() as pubsub:
        await pubsub.psubscribe(live.channel("*"))
        ready.set()
        async for message in pubsub.listen():
            if message["type"] == "pmessage":
                notices.setdefault(int(message["data"]), time.monotonic())


async def measure_push(url_port: int, orgs, pages_count: int, rounds: int, client, secret: str, spread: float = 0.0) -> dict:
    host = "127.0.0.1"
    notices: dict[int, float] = {}
    listening = asyncio.Event()
    listener = asyncio.create_task(listen_notices(notices, listening))
    await listening.wait()
    to_notice: list[float] = []
    notice_to_delta: list[float] = []
    pages = [Page(host, url_port, orgs[i % len(orgs)][1][i // len(orgs)], orgs[i % len(orgs)][0]) for i in range(pages_count)]
    for page in pages:
        page.task = asyncio.create_task(page.run())
        await asyncio.sleep(0.005)  # a gentle ramp: 200 connections a second
    await asyncio.wait_for(asyncio.gather(*(p.loaded.wait() for p in pages)), timeout=120 + pages_count * 0.2)
    latencies: list[float] = []
    missing = 0
    spans = []
    canceling = True
    for number in range(rounds + 1):
        warm_up = number == 0  # not counted: first uses in each process (connections, Redis lock channels)
        events = await asyncio.to_thread(flip_all, client, orgs, canceling)
        canceling = not canceling
        for page in pages:
            page.deltas.clear()
        posted: dict[int, float] = {}
        notices.clear()

        async def send(org_id, event, delay):
            await asyncio.sleep(delay)
            posted[org_id] = time.monotonic()
            status = await post(host, url_port, json.dumps(event).encode(), secret)
            assert status == 200, status

        await asyncio.gather(*(send(org_id, event, spread * i / len(events)) for i, (org_id, event) in enumerate(events.items())))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(not p.deltas for p in pages):
            await asyncio.sleep(0.05)
        if warm_up:
            await asyncio.sleep(1.0)
            continue
        first = min(posted.values())
        arrivals = []
        for page in pages:
            if not page.deltas:
                missing += 1
                continue
            latencies.append(page.deltas[0] - posted[page.org_id])
            arrivals.append(page.deltas[0])
            if page.org_id in notices:
                notice_to_delta.append(page.deltas[0] - notices[page.org_id])
        to_notice.extend(notices[o] - posted[o] for o in posted if o in notices)
        if arrivals:
            spans.append((len(arrivals), max(arrivals) - first))
        await asyncio.sleep(1.0)  # let stragglers land before the next round
    for page in pages:
        page.task.cancel()
    listener.cancel()
    await asyncio.gather(*(p.task for p in pages), listener, return_exceptions=True)
    delivered = sum(n for n, _ in spans)
    return {
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": percentile(latencies, 0.99) if latencies else float("nan"),
        "max": max(latencies) if latencies else float("nan"),
        "deltas_per_s": delivered / sum(s for _, s in spans) if spans else 0.0,
        "missing": missing,
        # Where the time goes: POST -> the worker's notice on Redis (store, gather, sync), and
        # notice -> the page's delta (subscriber, modify_state with the page's re-read, the socket).
        "to_notice_p50": statistics.median(to_notice) if to_notice else float("nan"),
        "notice_to_delta_p50": statistics.median(notice_to_delta) if notice_to_delta else float("nan"),
        "notice_to_delta_p99": percentile(notice_to_delta, 0.99) if notice_to_delta else float("nan"),
    }


async def measure_ingest(port: int, count: int, secret: str) -> float:
    host = "127.0.0.1"
    queue = list(range(count))

    async def client():
        while queue:
            queue.pop()
            event = {"id": f"evt_ingest_{uuid.uuid4().hex}", "object": "event", "type": "balance.available",
                     "created": int(time.time()), "data": {"object": {"object": "balance"}}}
            assert await post(host, port, json.dumps(event).encode(), secret) == 200

    start = time.monotonic()
    await asyncio.gather(*(client() for _ in range(16)))
    return count / (time.monotonic() - start)


def _mode(spread: float) -> str:
    return f"spread over {spread:g} s" if spread else "at once"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=200, help="open billing pages (up to 1000)")
    parser.add_argument("--orgs", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--spread", default="0,10",
                        help="post a round's webhooks evenly over S seconds (0: all at once), for each S listed")
    parser.add_argument("--ingest", type=int, default=2000, help="webhook events posted for the ingestion figure")
    parser.add_argument("--backends", default="1,2", help="the topologies to compare, e.g. 1,2")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (0: the workers run inside each backend)")
    args = parser.parse_args()
    if not 1 <= args.pages <= 1000:
        parser.error("--pages must be between 1 and 1000")
    try:
        spreads = [float(s) for s in args.spread.split(",")]
    except ValueError:
        parser.error("--spread takes seconds separated by commas, e.g. 0,10")
    if any(not 0 <= s <= 600 for s in spreads):
        parser.error("--spread: each between 0 and 600 seconds")
    os.environ.setdefault("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    from tests.scale.helpers import CuttableProxy, OwnSchema, free_port, real_servers, redis_address

    if (reason := real_servers()) is not None:
        print(f"live_push benchmark {reason}", file=sys.stderr)
        return 2
    import stripe

    from billing_app import serve
    from billing_app.settings import get_settings

    work = Path(tempfile.mkdtemp(prefix="live_push_"))
    schema = OwnSchema()
    redis_proxy = CuttableProxy(redis_address())  # only to get a URL in the test Redis's database; never cut here
    prefix = f"bench_live_{uuid.uuid4().hex[:8]}:"
    sandbox_port = free_port()
    os.environ.update(DATABASE_URL=schema.url, REDIS_URL=redis_proxy.url, REDIS_KEY_PREFIX=prefix,
                      RATE_LIMIT_LOGIN_IP="100000/minute", RATE_LIMIT_REGISTER_IP="100000/minute",
                      STRIPE_SECRET_KEY=serve.SANDBOX_KEY, STRIPE_API_BASE=f"http://127.0.0.1:{sandbox_port}",
                      STRIPE_WEBHOOK_SECRET=serve.SANDBOX_WEBHOOK_SECRET)
    get_settings.cache_clear()
    log = open(work / "servers.log", "w")
    sandbox: list = []
    results: dict[tuple[int, float], dict] = {}
    ingest: dict[int, float] = {}
    try:
        env = serve.app_environment(port=free_port(), backend_port=0, prod=True, sandbox_port=sandbox_port)
        serve._prepare(env, prod=True, use_sandbox=True, seed=False, sandbox_port=sandbox_port, data_dir=work,
                       webhook_url="http://127.0.0.1:9/api/stripe/webhook", processes=sandbox, output=dict(stdout=log, stderr=log))
        client = stripe.StripeClient(serve.SANDBOX_KEY, base_addresses={"api": f"http://127.0.0.1:{sandbox_port}"})
        client.v1.webhook_endpoints.update("we_cli", params={"disabled": True})  # we post the webhooks ourselves
        print(f"setting up {args.orgs} orgs with a subscription ...", flush=True)
        orgs = make_orgs(args.orgs, sessions=-(-args.pages // args.orgs))
        for backends in [int(b) for b in args.backends.split(",")]:
            port = free_port()
            scaled = serve.start_scaled(port=port, backends=backends, workers=args.workers, sandbox_port=sandbox_port, data_dir=work,
                                        use_sandbox=False, log=log, quiet_reflex=True)
            try:
                for spread in spreads:
                    print(f"{backends} backend(s), {args.workers} worker process(es): {args.pages} pages over {len(orgs)} orgs, "
                          f"{args.rounds} rounds, webhooks {_mode(spread)} ...", flush=True)
                    push = results[backends, spread] = asyncio.run(
                        measure_push(port, orgs, args.pages, args.rounds, client, serve.SANDBOX_WEBHOOK_SECRET, spread))
                    print(f"  push p50 {push['p50']:.3f} s  p99 {push['p99']:.3f} s  max {push['max']:.3f} s  "
                          f"{push['deltas_per_s']:.0f} deltas/s  missing {push['missing']}", flush=True)
                    print(f"  where: POST->notice p50 {push['to_notice_p50']:.3f} s, notice->delta p50 "
                          f"{push['notice_to_delta_p50']:.3f} s p99 {push['notice_to_delta_p99']:.3f} s", flush=True)
                ingest[backends] = asyncio.run(measure_ingest(port, args.ingest, serve.SANDBOX_WEBHOOK_SECRET))
                print(f"  ingest {ingest[backends]:.0f} events/s", flush=True)
            finally:
                serve.stop(scaled.all)
    finally:
        serve.stop(sandbox)
        redis_proxy.close()
        schema.drop()
        log.close()
    for spread in spreads:
        if (1, spread) in results and (2, spread) in results:
            one, two = results[1, spread], results[2, spread]
            print(f"webhooks {_mode(spread)}: p99_ratio_2_over_1={two['p99'] / one['p99']:.2f} "
                  f"deltas_per_s_ratio_2_over_1={two['deltas_per_s'] / one['deltas_per_s']:.2f}")
    if 1 in ingest and 2 in ingest:
        print(f"ingest_ratio_2_over_1={ingest[2] / ingest[1]:.2f}")
    print(f"logs: {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
