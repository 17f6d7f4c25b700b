"""python -m billing_app.sandbox --port 12111 [--host 127.0.0.1] [--webhook-url URL --webhook-secret whsec_...] [--data FILE]"""

from __future__ import annotations

import argparse
import logging
import sys

CHAOS = ("dup", "shuffle", "delay")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m billing_app.sandbox", description="Offline Stripe-compatible sandbox server.")
    ap.add_argument("--port", type=int, default=12111)
    ap.add_argument("--host", default="127.0.0.1", help="interface to bind (loopback unless you say otherwise)")
    ap.add_argument("--webhook-url", help="deliver every event to this URL")
    ap.add_argument("--webhook-secret", help="signing secret for --webhook-url (whsec_...)")
    ap.add_argument("--data", help="JSON file that keeps the state across restarts")
    ap.add_argument("--chaos", default="", help="comma list of dup,shuffle,delay: perturb webhook delivery")
    ap.add_argument("--webhook-retry", default=None, help="retry delays in seconds, e.g. 0.5,1,2,4")
    ap.add_argument("--public-url", help="base of hosted-page URLs (default http://HOST:PORT)")
    ap.add_argument("--record", help="append every API request/answer and every event to this JSON-lines file")
    ap.add_argument("--log-level", default="warning")
    args = ap.parse_args(argv)
    chaos = [c for c in args.chaos.split(",") if c]
    bad = set(chaos) - set(CHAOS)
    if bad:
        ap.error(f"--chaos takes {','.join(CHAOS)}; got {','.join(sorted(bad))}")
    if bool(args.webhook_url) != bool(args.webhook_secret):
        ap.error("--webhook-url and --webhook-secret go together")
    if args.webhook_secret and not args.webhook_secret.startswith("whsec_"):
        ap.error("--webhook-secret must start with whsec_")
    args.chaos_list = chaos
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import uvicorn

    from .app import create_app
    from .objects import API_VERSION
    from .resources.events import new_endpoint
    from .store import Store

    settings = {"chaos": args.chaos_list}
    if args.webhook_retry:
        settings["webhook_retry_schedule"] = [float(x) for x in args.webhook_retry.split(",") if x]
    store = Store(args.data, settings)
    if args.webhook_url:
        ep = new_endpoint(args.webhook_url, ["*"], args.webhook_secret, description="--webhook-url")
        ep["id"] = "we_cli"  # stable, so a --data restart doesn't register it twice
        store.builtin_endpoints.append(ep)
        with store.lock:
            existing = store.get("webhook_endpoint", "we_cli")
            if existing:
                existing.update(url=args.webhook_url, _secret=args.webhook_secret)
            else:
                store.put(dict(ep))
    host_for_url = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    public = args.public_url or (None if args.host in ("0.0.0.0", "::") else f"http://{host_for_url}:{args.port}")
    app = create_app(store, public, args.record)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s sandbox %(levelname)s %(message)s")
    print(f"Stripe sandbox on http://{args.host}:{args.port} (API version {API_VERSION})", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
