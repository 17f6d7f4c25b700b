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


def cmd_sync_catalog(args) -> int:
    from billing_app.billing.catalog import CatalogError, sync_catalog
    from billing_app.billing.gateway import StripeFailure
    from billing_app.db import session_scope
    from billing_app.errors import AppError

    try:
        with session_scope() as session:
            changes = sync_catalog(session, dry_run=args.dry_run)
    except (CatalogError, AppError, StripeFailure) as error:
        print(f"sync-catalog failed: {getattr(error, 'message', error)}", file=sys.stderr)
        return 1
    prefix = "would " if args.dry_run else ""
    for line in changes:
        print(f"  {prefix}{line}")
    print(f"{len(changes)} change(s){' (dry run: nothing written)' if args.dry_run else ''}; catalog in step with Stripe.")
    return 0


def cmd_reconcile(args) -> int:
    from billing_app.billing.gateway import StripeFailure
    from billing_app.billing.sync import customers_to_reconcile, sync_customer
    from billing_app.db import session_scope
    from billing_app.errors import AppError

    if args.org is None and not args.per_customer:
        from billing_app.ops.cli import bulk_reconcile_command

        return bulk_reconcile_command(args)
    with session_scope() as session:
        customers = customers_to_reconcile(session, args.org)
    failures = 0
    for customer_id in customers:
        try:
            report = sync_customer(customer_id)
        except (AppError, StripeFailure) as error:
            failures += 1
            print(f"  {customer_id}: failed: {getattr(error, 'message', error)}", file=sys.stderr)
            continue
        for line in report.changes:
            print(f"  org {report.org_id} {customer_id}: {line}")
    print(f"Reconciled {len(customers) - failures} of {len(customers)} customer(s).")
    return 1 if failures else 0


def cmd_orphans(args) -> int:
    """List Stripe customers that belong to no organization, or attach one (then sync it)."""
    from billing_app.billing.gateway import StripeFailure
    from billing_app.billing.orphans import attach_orphan, list_orphans
    from billing_app.billing.sync import sync_customer
    from billing_app.errors import AppError

    if args.attach or args.org is not None:
        if not (args.attach and args.org is not None):
            print("orphans: --attach CUSTOMER and --org ID go together.", file=sys.stderr)
            return 2
        try:
            attach_orphan(args.attach, args.org)
        except AppError as error:
            print(f"orphans: {error.message}", file=sys.stderr)
            return 1
        print(f"Attached {args.attach} to organization {args.org}.")
        try:
            report = sync_customer(args.attach)
        except (AppError, StripeFailure) as error:
            print(f"  sync failed (run `reconcile --org {args.org}` later): {getattr(error, 'message', error)}", file=sys.stderr)
            return 1
        for line in report.changes:
            print(f"  {line}")
        return 0
    orphans = list_orphans()
    if not orphans:
        print("No orphan Stripe customers.")
        return 0
    print(f"{len(orphans)} Stripe customer(s) belong to no organization (attach one with --attach CUSTOMER --org ID):")
    for o in orphans:
        claim = f"  metadata claims org {o.claimed_org_id} (not trusted)" if o.claimed_org_id else ""
        print(f"  {o.customer_id}  {o.email or '-'}  {o.name or '-'}  first seen {o.first_seen_at:%Y-%m-%d %H:%M}Z{claim}")
    return 0


def cmd_grant_operator(args) -> int:
    from billing_app.ops.cli import set_operator_command

    return set_operator_command(args.email, True)


def cmd_revoke_operator(args) -> int:
    from billing_app.ops.cli import set_operator_command

    return set_operator_command(args.email, False)


def cmd_create_token(args) -> int:
    from billing_app.auth.api_tokens import create_token_for_email
    from billing_app.errors import AppError

    try:
        token = create_token_for_email(args.email, args.org, args.name, args.expires_days)
    except AppError as error:
        print(f"create-token failed: {error.message}", file=sys.stderr)
        return 1
    print("API token (shown once; store it now):")
    print(token)
    return 0


def cmd_webhook_events(args) -> int:
    from billing_app.webhooks import counts, recent

    summary = ", ".join(f"{state} {n}" for state, n in sorted(counts().items()))
    print(f"Events by state: {summary or 'none stored'}")
    for event in recent(state=args.state, limit=args.limit):
        error = f"  last error: {event.last_error}" if event.last_error else ""
        print(f"  {event.stripe_event_id}  {event.type:<40} {event.state:<10} attempts {event.attempts}{error}")
    return 0


def cmd_replay(args) -> int:
    from billing_app.webhooks import replay

    if not replay(args.event_id):
        print(f"No stored event {args.event_id}.", file=sys.stderr)
        return 1
    print(f"Queued {args.event_id} again; the running app's worker processes it.")
    return 0


def cmd_worker(_args) -> int:
    from billing_app.webhooks.process import run

    return run()


def cmd_serve(args) -> int:
    from billing_app.serve import serve, serve_scaled

    if args.backends is not None or args.workers is not None:
        if not args.prod:
            print("serve: --backends and --workers need --prod.", file=sys.stderr)
            return 2
        if (args.backends or 1) < 1 or (args.workers or 0) < 0:
            print("serve: --backends must be at least 1 and --workers at least 0.", file=sys.stderr)
            return 2
        return serve_scaled(port=args.port, backends=args.backends or 1, workers=args.workers or 0,
                            sandbox_port=args.sandbox_port, seed=args.seed)
    return serve(prod=args.prod, port=args.port, backend_port=args.backend_port, sandbox_port=args.sandbox_port, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m billing_app", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    sub.add_parser("seed", help="create the demo organizations and logins (idempotent)").set_defaults(func=cmd_seed)
    catalog = sub.add_parser("sync-catalog", help="make Stripe's products and prices match plans.toml, and mirror them")
    catalog.add_argument("--dry-run", action="store_true", help="print what would change; write nothing")
    catalog.set_defaults(func=cmd_sync_catalog)
    reconcile = sub.add_parser("reconcile", help="re-read customers from Stripe and heal the mirror")
    reconcile.add_argument("--org", type=int, help="only this organization id (read one customer at a time)")
    reconcile.add_argument("--per-customer", action="store_true", help="read each customer on its own (about 5 calls each) instead of in bulk")
    reconcile.add_argument("--incremental", action="store_true", help="bulk: only what changed since the last finished run")
    reconcile.add_argument("--fresh", action="store_true", help="bulk: start over instead of resuming an interrupted run")
    reconcile.add_argument("--concurrency", type=int, default=4, help="bulk: Stripe lists read at once (default 4)")
    reconcile.add_argument("--no-progress", action="store_true", help="bulk: no progress bar")
    reconcile.set_defaults(func=cmd_reconcile)
    grant = sub.add_parser("grant-operator", help="let a user into the operator console (/ops)")
    grant.add_argument("email")
    grant.set_defaults(func=cmd_grant_operator)
    revoke = sub.add_parser("revoke-operator", help="take a user's operator console access away")
    revoke.add_argument("email")
    revoke.set_defaults(func=cmd_revoke_operator)
    token = sub.add_parser("create-token", help="make a REST API token for a user (printed once)")
    token.add_argument("--email", required=True, help="the user's email")
    token.add_argument("--org", help="organization id or exact name (needed when the user is in several)")
    token.add_argument("--name", default="cli", help="a label shown in the token list")
    token.add_argument("--expires-days", type=int, help="expire the token after this many days (default: never)")
    token.set_defaults(func=cmd_create_token)
    orphans = sub.add_parser("orphans", help="Stripe customers that belong to no organization; attach one explicitly")
    orphans.add_argument("--attach", metavar="CUSTOMER", help="the Stripe customer id (cus_...) to attach")
    orphans.add_argument("--org", type=int, help="the organization id to attach it to")
    orphans.set_defaults(func=cmd_orphans)
    events = sub.add_parser("webhook-events", help="list stored Stripe events (e.g. the failed ones to replay)")
    events.add_argument("--state", choices=["pending", "processed", "failed"], help="only events in this state")
    events.add_argument("--limit", type=int, default=50)
    events.set_defaults(func=cmd_webhook_events)
    replay = sub.add_parser("replay", help="queue a stored Stripe event again (after fixing what made it fail)")
    replay.add_argument("event_id", help="the Stripe event id (evt_...)")
    replay.set_defaults(func=cmd_replay)
    worker = sub.add_parser("worker", help="run the webhook and mail workers as their own process, until SIGTERM (drains first)")
    worker.set_defaults(func=cmd_worker)
    serve = sub.add_parser("serve", help="start the sandbox and the app on 127.0.0.1 (what `make run` does)")
    serve.add_argument("--prod", action="store_true", help="production build, one port (no demo logins unless --seed or the sandbox)")
    serve.add_argument("--seed", action="store_true", help="create the demo logins even in production")
    serve.add_argument("--port", type=int, default=3000, help="the port users open (default 3000)")
    serve.add_argument("--backend-port", type=int, default=8000, help="backend port in dev mode (default 8000)")
    serve.add_argument("--backends", type=int, metavar="N",
                       help="with --prod: N backend processes behind a balancer on --port (needs PostgreSQL and Redis)")
    serve.add_argument("--workers", type=int, metavar="M",
                       help="with --backends: M webhook/mail worker processes (default 0: the workers run inside each backend)")
    serve.add_argument("--sandbox-port", type=int, default=12111, help="offline Stripe sandbox port (default 12111)")
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
