"""`python -m billing_app <command>`: the project's operational commands."""

from __future__ import annotations

import argparse
import sys


def cmd_migrate(_args) -> int:
    from billing_app.migrations import upgrade
    from billing_app.settings import get_settings

    upgrade(get_settings().database_url)
    print("Database is up to date.")
    return 0


def cmd_seed(_args) -> int:
    from billing_app.db import session_scope
    from billing_app.seed import logins_text, seed

    with session_scope() as session:
        created = seed(session)
    print("Seeded: " + ", ".join(created) if created else "Demo data already present.")
    print(logins_text())
    return 0


def cmd_serve(args) -> int:
    from billing_app.serve import serve

    return serve(prod=args.prod, port=args.port, backend_port=args.backend_port, sandbox_port=args.sandbox_port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m billing_app", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    sub.add_parser("seed", help="create the demo organizations and logins (idempotent)").set_defaults(func=cmd_seed)
    serve = sub.add_parser("serve", help="start the sandbox and the app on 127.0.0.1 (what `make run` does)")
    serve.add_argument("--prod", action="store_true", help="production build, one port")
    serve.add_argument("--port", type=int, default=3000, help="the port users open (default 3000)")
    serve.add_argument("--backend-port", type=int, default=8000, help="backend port in dev mode (default 8000)")
    serve.add_argument("--sandbox-port", type=int, default=12111, help="offline Stripe sandbox port (default 12111)")
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
