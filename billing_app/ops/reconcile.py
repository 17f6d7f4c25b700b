"""Bulk reconcile: heal the whole mirror with list calls across all customers.

`sync_customer` reads one customer with about five calls; for 10,000 organizations that is
50,000 calls. This path reads each kind of object once for everybody instead, 100 a page:

    fetch   customers, subscriptions (status=all, schedules expanded), invoices, charges and
            checkout sessions, each list paged on its own thread (at most `concurrency` at once);
            every page is staged in `reconcilestage` with the list's cursor in the same
            transaction, so an interrupted run resumes at the next page. Each staged object
            carries its page's read time (the database's clock before the request).
    apply   customers in id order, a batch per transaction: the staged objects grouped into the
            same `Snapshot` sync_customer builds, written by the same `sync.write`; the last
            customer applied is saved with the batch, so a resumed run starts after it. A
            snapshot's read time is its oldest page's: a customer synced since (a webhook, the
            confirmation page) is skipped by the sync's fence, so staged data never reverts it.
    repair  a customer holding a second purchase goes through `sync_customer` itself, which
            cancels and refunds the extra one (billing/duplicates.py).

An org is tied to its Stripe customer only by our own BillingCustomer row (never by metadata);
customers Stripe has and we do not are recorded as orphans (billing/orphans.py), for an operator.

Incremental runs (`incremental=True`) read what was created since the last finished run
(created[gte], less a margin) and take older invoices, charges and sessions that changed from
the events of that window (the newest copy of each); subscriptions, which change most, are
always listed in full. A 429 is retried after Stripe's Retry-After (exponential backoff with
jitter when it sends none).
"""

from __future__ import annotations

import json
import logging
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import delete, func, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from billing_app.billing import gateway, profile, sync
from billing_app.billing.gateway import StripeFailure
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.billing import orphans as billing_orphans
from billing_app.models import BillingCustomer, OrgSubscription, ReconcileRun, ReconcileStage, utcnow
from billing_app.ops import audit
from billing_app.webhooks.handlers import customer_of

log = logging.getLogger(__name__)

FULL, INCREMENTAL = "full", "incremental"
RUNNING, DONE, FAILED, ABANDONED = "running", "done", "failed", "abandoned"
FETCH, APPLY = "fetch", "apply"
LIST_DONE = "done"
# A running run whose heartbeat is older than this was interrupted and may be resumed.
STALE_AFTER = timedelta(minutes=2)
# Incremental windows overlap the previous run by this much (clock skew, objects in flight).
WINDOW_MARGIN = timedelta(minutes=10)
BATCH = 100
MAX_RETRY_AFTER = 60.0
RATE_LIMIT_ATTEMPTS = 8


class ReconcileBusy(AppError):
    """Another bulk reconcile is running now."""

    def __init__(self, message: str):
        super().__init__(ErrorCode.RECONCILE_RUNNING, message)


@dataclass(frozen=True)
class _List:
    kind: str
    method: Callable  # the SDK's list method, from a client
    params: dict
    windowed: bool  # restricted to created[gte] in incremental runs


def _lists(client, incremental: bool) -> list[_List]:
    v1 = client.v1
    lists = [
        # With the dashboard's facts expanded, as sync_customer reads them (billing/profile.py).
        _List("customer", v1.customers.list, {"expand": [f"data.{p}" for p in profile.CUSTOMER_EXPAND]}, True),
        _List("subscription", v1.subscriptions.list, {"status": "all", "expand": ["data.schedule", *profile.SUBSCRIPTION_EXPAND]}, False),
        _List("invoice", v1.invoices.list, {}, True),
        _List("charge", v1.charges.list, {}, True),
        _List("session", v1.checkout.sessions.list, {"expand": list(sync.SESSION_EXPAND)}, True),
    ]
    if incremental:
        lists.append(_List("event", v1.events.list, {}, True))
    return lists


# Event objects that stand in for an older object that changed inside an incremental window.
_EVENT_OBJECTS = {"invoice": "invoice", "charge": "charge", "checkout.session": "session"}


def _disputed_charge(dispute: dict) -> dict:
    """The charge a dispute event names, as Stripe has it now (a lost dispute marks it `disputed`, so
    applying it reads the dispute: sync.lost_disputes); {} when it names none."""
    charge = dispute.get("charge")
    if isinstance(charge, dict) or not charge:
        return charge or {}
    return with_backoff(gateway.call, gateway.stripe_client().v1.charges.retrieve, charge)


@dataclass
class RunView:
    """A run as the console shows it; also what the `progress` callback gets after each page and batch."""

    id: int = 0
    mode: str = ""
    state: str = ""
    phase: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    fetched: int = 0
    customers_done: int = 0
    customers_total: int = 0
    changes: int = 0
    orphans: int = 0
    calls: int = 0
    started_by: str = ""
    error: str = ""
    stale: bool = False

    @classmethod
    def of(cls, run: ReconcileRun, now: datetime) -> RunView:
        return cls(run.id, run.mode, run.state, run.phase, run.started_at, run.finished_at, run.fetched,
                   run.customers_done, run.customers_total, run.changes, run.orphans, run.calls, run.started_by,
                   run.error or "", stale=run.state == RUNNING and run.heartbeat_at <= now - STALE_AFTER)

    @property
    def percent(self) -> int:
        if self.state == DONE:
            return 100
        if self.phase != APPLY or not self.customers_total:
            return 0
        return min(99, self.customers_done * 100 // self.customers_total)


@dataclass
class Result:
    run_id: int
    mode: str
    resumed: bool
    customers: int = 0
    changes: list[tuple[int, str, str]] = field(default_factory=list)  # (org id, customer id, change)
    orphans: int = 0
    repaired: list[str] = field(default_factory=list)  # customers that went through sync_customer
    calls: int = 0


def _retrying() -> Retrying:
    def wait(state) -> float:
        failure = state.outcome.exception()
        if failure is not None and failure.retry_after is not None:
            return min(failure.retry_after, MAX_RETRY_AFTER)
        return wait_exponential_jitter(initial=0.5, max=30)(state)

    return Retrying(
        retry=retry_if_exception(lambda e: isinstance(e, StripeFailure) and e.status == 429),
        wait=wait, stop=stop_after_attempt(RATE_LIMIT_ATTEMPTS), reraise=True,
    )


def with_backoff(fn, *args, **kwargs):
    """Call Stripe; a 429 waits Retry-After seconds (or backs off) and tries again."""
    return _retrying()(fn, *args, **kwargs)


def _pack(obj: dict) -> bytes:
    # The SDK gives *_decimal fields as Decimal; the mirror reads none of them, so text is enough.
    return zlib.compress(json.dumps(obj, separators=(",", ":"), default=str).encode(), 3)


def _unpack(data: bytes) -> dict:
    return json.loads(zlib.decompress(data))


def _stage_statement(session: Session, rows: list[dict]):
    """INSERT staged objects; a list's copy (rank 2) replaces an event's (rank 1), never the reverse.
    Events are listed newest first, so the first copy of an object from the events is its newest."""
    table = ReconcileStage.__table__
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(table).values(rows)
    return statement.on_conflict_do_update(
        index_elements=["run_id", "stripe_id"],
        set_={"payload": statement.excluded.payload, "rank": statement.excluded.rank,
              "customer_id": statement.excluded.customer_id, "kind": statement.excluded.kind,
              "read_at": statement.excluded.read_at},
        where=table.c.rank < statement.excluded.rank,
    )


class BulkReconcile:
    """One run (new or resumed). `run()` does it all; see the module docstring."""

    def __init__(self, *, incremental: bool = False, resume: bool = True, concurrency: int = 4,
                 progress: Callable[[RunView], None] | None = None, started_by: str = "",
                 on_changes: Callable[[int, str, list[str]], None] | None = None):
        self.concurrency = max(1, min(int(concurrency), 16))
        self.progress_cb = progress
        self.on_changes = on_changes
        self._lock = threading.Lock()
        self._calls_at_start = gateway.call_counter["count"]
        self.run_id, self.resumed = self._start(incremental, resume, started_by)
        with session_scope() as session:
            run = session.get(ReconcileRun, self.run_id)
            self.mode, self.since = run.mode, run.since
            self._calls_before = run.calls
            self._progress = RunView.of(run, utcnow())
        self.result = Result(self.run_id, self.mode, self.resumed)

    # --- the run row ------------------------------------------------------------------------------

    @staticmethod
    def _start(incremental: bool, resume: bool, started_by: str) -> tuple[int, bool]:
        now = utcnow()
        with session_scope() as session:
            unfinished = session.exec(
                select(ReconcileRun).where(ReconcileRun.state.in_([RUNNING, FAILED])).order_by(ReconcileRun.id.desc())
            ).all()
            for run in unfinished:
                if run.state == RUNNING and run.heartbeat_at > now - STALE_AFTER:
                    raise ReconcileBusy(f"A bulk reconcile is already running (run {run.id}, {run.customers_done} of "
                                        f"{run.customers_total or '?'} customers).")
            latest = unfinished[0] if unfinished else None
            if resume and latest is not None and latest.mode == (INCREMENTAL if incremental else FULL):
                latest.state, latest.heartbeat_at, latest.error = RUNNING, now, None
                session.add(latest)
                return latest.id, True
            for run in unfinished:  # not resumed: abandoned for good, its staged objects dropped
                session.exec(delete(ReconcileStage).where(ReconcileStage.run_id == run.id))
                run.state = ABANDONED
                session.add(run)
            since = None
            if incremental:
                done = select(ReconcileRun).where(ReconcileRun.state == DONE).order_by(ReconcileRun.id.desc())
                if session.exec(done.where(ReconcileRun.mode == FULL)).first() is None:
                    incremental = False  # never healed in full: nothing to be incremental from
                else:
                    since = session.exec(done).first().started_at - WINDOW_MARGIN
            run = ReconcileRun(mode=INCREMENTAL if incremental else FULL, since=since, started_by=started_by[:254])
            session.add(run)
            session.flush()
            return run.id, False

    def _calls(self) -> int:
        return self._calls_before + gateway.call_counter["count"] - self._calls_at_start

    def _save(self, session: Session, **values) -> None:
        """Update the run row (inside the caller's transaction) and tell the progress callback."""
        values = {**values, "heartbeat_at": utcnow(), "calls": self._calls()}
        session.execute(update(ReconcileRun.__table__).where(ReconcileRun.__table__.c.id == self.run_id).values(**values))
        for name, value in values.items():
            if hasattr(self._progress, name):
                setattr(self._progress, name, value)

    def _report(self) -> None:
        if self.progress_cb is not None:
            self.progress_cb(replace(self._progress))

    # --- fetch ------------------------------------------------------------------------------------

    def _fetch(self, client) -> None:
        with session_scope() as session:
            cursors = json.loads(session.get(ReconcileRun, self.run_id).cursors_json or "{}")
            self._save(session, phase=FETCH)
        self._report()
        todo = [spec for spec in _lists(client, self.mode == INCREMENTAL) if cursors.get(spec.kind) != LIST_DONE]
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="reconcile-fetch") as pool:
            for future in [pool.submit(self._fetch_list, spec, cursors.get(spec.kind)) for spec in todo]:
                future.result()

    def _fetch_list(self, spec: _List, cursor: str | None) -> None:
        params = dict(spec.params)
        if spec.windowed and self.since is not None:
            params["created"] = {"gte": int(self.since.timestamp())}
        while True:
            page_params = {**params, "starting_after": cursor} if cursor else params
            read_at = sync.read_clock()
            objects, has_more = with_backoff(gateway.list_page, spec.method, page_params)
            rows = [{**row, "read_at": read_at} for row in (self._row(spec.kind, obj) for obj in objects) if row is not None]
            cursor = objects[-1]["id"] if objects and has_more else LIST_DONE
            with self._lock, session_scope() as session:
                if rows:
                    session.execute(_stage_statement(session, rows))
                run = session.get(ReconcileRun, self.run_id)
                cursors = json.loads(run.cursors_json or "{}")
                cursors[spec.kind] = cursor
                self._save(session, cursors_json=json.dumps(cursors), fetched=run.fetched + len(objects))
            self._report()
            if cursor == LIST_DONE:
                return

    def _row(self, kind: str, obj: dict) -> dict | None:
        rank = 2
        if kind == "event":
            inner = (obj.get("data") or {}).get("object") or {}
            if inner.get("object") == "dispute":  # it names no customer: its charge does, read now
                inner = _disputed_charge(inner)
            kind = _EVENT_OBJECTS.get(inner.get("object"))
            if kind is None:
                return None
            obj, rank = inner, 1
        customer = customer_of(obj)
        if customer is None or not obj.get("id"):
            return None  # e.g. a charge or an expired session that never had a customer
        return {"run_id": self.run_id, "kind": kind, "customer_id": customer, "stripe_id": obj["id"], "rank": rank,
                "payload": _pack(obj)}

    # --- apply ------------------------------------------------------------------------------------

    def _customers(self, session: Session) -> list[str]:
        run = session.get(ReconcileRun, self.run_id)
        query = (select(ReconcileStage.customer_id).where(ReconcileStage.run_id == self.run_id)
                 .distinct().order_by(ReconcileStage.customer_id))
        if run.last_customer:
            query = query.where(ReconcileStage.customer_id > run.last_customer)
        return list(session.exec(query).all())

    def _apply(self, client) -> None:
        with session_scope() as session:
            total = session.exec(
                select(func.count(func.distinct(ReconcileStage.customer_id))).where(ReconcileStage.run_id == self.run_id)
            ).one()
            self._save(session, phase=APPLY, customers_total=total)
            customers = self._customers(session)
            known = dict(session.exec(select(BillingCustomer.stripe_customer_id, BillingCustomer.org_id)).all())
        self._report()
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="reconcile-lookup") as pool:
            for start in range(0, len(customers), BATCH):
                self._apply_batch(client, pool, customers[start:start + BATCH], known)

    def _snapshots(self, batch: list[str]) -> dict[str, sync.Snapshot]:
        with session_scope() as session:
            rows = session.exec(
                select(ReconcileStage.customer_id, ReconcileStage.kind, ReconcileStage.payload, ReconcileStage.read_at)
                .where(ReconcileStage.run_id == self.run_id, ReconcileStage.customer_id.in_(batch))
                .order_by(ReconcileStage.id)
            ).all()
        grouped: dict[str, dict[str, list]] = {c: {"customer": [], "subscription": [], "invoice": [], "charge": [], "session": []} for c in batch}
        read_at: dict[str, datetime] = {}
        for customer_id, kind, payload, page_read_at in rows:
            grouped[customer_id][kind].append(_unpack(payload))
            read_at[customer_id] = min(read_at.get(customer_id, page_read_at), page_read_at)
        snaps = {}
        for customer_id, objects in grouped.items():
            customer = objects["customer"][0] if objects["customer"] else {"id": customer_id, "object": "customer"}
            by_newest = {k: sorted(objects[k], key=lambda o: o.get("created") or 0, reverse=True) for k in objects}
            snaps[customer_id] = sync.Snapshot(customer, by_newest["subscription"], by_newest["invoice"],
                                               by_newest["charge"], by_newest["session"], set(), read_at[customer_id],
                                               has_profile=bool(objects["customer"]))
        return snaps

    def _refunds(self, client, snap: sync.Snapshot) -> None:
        """Which paid invoices a refund or a lost dispute belongs to (as sync_customer decides), one call
        per refunded or charged-back payment; an older invoice one names is read so its row can say so."""
        refunds = sync.refunds_by_intent(snap.charges)
        snap.lost_disputes = sync.lost_disputes(client, snap.charges, call=lambda *a, **k: with_backoff(gateway.call, *a, **k))
        have = {invoice["id"]: invoice for invoice in snap.invoices}
        sessions = {checkout.get("payment_intent") for checkout in snap.sessions}
        for intent in sorted(set(refunds) | snap.lost_disputes):
            payments = with_backoff(gateway.call, client.v1.invoice_payments.list,
                                    params={"payment": {"type": "payment_intent", "payment_intent": intent}, "limit": 10})
            if not payments["data"] and intent not in sessions:
                # A lifetime purchase's payment, bought before the window: its checkout session is what
                # the sync ends it by (a full refund, a lost chargeback).
                bought = with_backoff(gateway.call, client.v1.checkout.sessions.list,
                                      params={"payment_intent": intent, "expand": list(sync.SESSION_EXPAND), "limit": 1})
                snap.sessions.extend(bought["data"])
            for payment in payments["data"]:
                invoice_id = payment.get("invoice")
                if not invoice_id:
                    continue
                if invoice_id not in have:
                    have[invoice_id] = with_backoff(gateway.call, client.v1.invoices.retrieve, invoice_id)
                    snap.invoices.append(have[invoice_id])
                if have[invoice_id]["status"] == "paid" and intent in refunds:
                    sync.note_refund(snap.refunded_invoices, snap.invoice_refunds, invoice_id, refunds[intent])
                if have[invoice_id]["status"] == "paid" and intent in snap.lost_disputes:
                    snap.disputed_invoices.add(invoice_id)

    def _apply_batch(self, client, pool: ThreadPoolExecutor, batch: list[str], known: dict[str, int]) -> None:
        snaps = self._snapshots(batch)
        ours = {c: snap for c, snap in snaps.items() if c in known}
        # Network first (the refund lookups), then one short transaction for the batch.
        list(pool.map(lambda snap: self._refunds(client, snap), ours.values()))
        for snap in ours.values():  # rare: only completed checkouts still waiting for a delayed payment
            snap.failed_payments = sync.failed_async_payments(client, snap.sessions, call=lambda *a, **k: with_backoff(gateway.call, *a, **k))
        repairs = [c for c, snap in ours.items() if self.mode == FULL
                   and sync.extra_purchases(snap)]
        # Orphans: customers Stripe listed (a stand-in customer dict has no `created`) that no org holds.
        orphans = [snaps[c].customer for c in batch if c not in known and "created" in snaps[c].customer]
        changes: dict[str, list[str]] = {}
        try:
            with session_scope() as session:
                self._write(session, ours, known, repairs, changes, orphans, batch)
        except IntegrityError:
            # A webhook's sync inserted one of these rows first: write them again, one customer at a time.
            changes = {}
            for customer_id in batch:
                with session_scope() as session:
                    self._write(session, {k: v for k, v in ours.items() if k == customer_id}, known, repairs, changes,
                                [o for o in orphans if o["id"] == customer_id], [customer_id])
        if self.mode == INCREMENTAL:
            repairs = self._holding_two(ours, known)
        for customer_id in repairs:
            report = sync.sync_customer(customer_id)
            changes.setdefault(customer_id, []).extend(report.changes)
            self.result.repaired.append(customer_id)
        for customer_id, lines in changes.items():
            org_id = known[customer_id]
            self.result.changes.extend((org_id, customer_id, line) for line in lines)
            if lines and self.on_changes is not None:
                self.on_changes(org_id, customer_id, lines)
        self._report()

    def _write(self, session: Session, ours: dict, known: dict, repairs: list[str], changes: dict,
               orphans: list[dict], batch: list[str]) -> None:
        for customer_id, snap in ours.items():
            if customer_id in repairs:
                continue  # sync_customer reads and writes it after the batch
            lines: list[str] = []
            sync.write(session, known[customer_id], snap, lines)  # nothing when synced since its pages were read
            changes[customer_id] = lines
        for customer in orphans:
            billing_orphans.record_orphan(session, customer)
        run = session.get(ReconcileRun, self.run_id)
        self._save(session, customers_done=run.customers_done + len(batch), last_customer=batch[-1],
                   changes=run.changes + sum(len(v) for v in changes.values()), orphans=run.orphans + len(orphans))

    def _holding_two(self, ours: dict, known: dict) -> list[str]:
        """Incremental runs see part of a customer: a second live purchase shows in the mirror."""
        orgs = {known[c]: c for c in ours}
        if not orgs:
            return []
        with session_scope() as session:
            rows = session.exec(select(OrgSubscription).where(OrgSubscription.org_id.in_(list(orgs)))).all()
        held: dict[int, int] = {}
        for row in rows:
            held[row.org_id] = held.get(row.org_id, 0) + (1 if row.holds_plan else 0)
        return [orgs[org_id] for org_id, count in held.items() if count > 1]

    # --- finish -----------------------------------------------------------------------------------

    def _finish(self) -> None:
        with session_scope() as session:
            session.exec(delete(ReconcileStage).where(ReconcileStage.run_id == self.run_id))
            self._save(session, state=DONE, phase="done", finished_at=utcnow())
            self.result.orphans = session.get(ReconcileRun, self.run_id).orphans
        self._report()

    def run(self) -> Result:
        try:
            client = gateway.stripe_client()  # inside: a run that cannot even start fails, never stays "running"
            with session_scope() as session:
                phase = session.get(ReconcileRun, self.run_id).phase
            if phase == FETCH:
                self._fetch(client)
            self._apply(client)
            self._finish()
        except BaseException as error:
            with session_scope() as session:
                self._save(session, state=FAILED, error=str(getattr(error, "message", error))[:2000] or type(error).__name__)
            raise
        with session_scope() as session:
            run = session.get(ReconcileRun, self.run_id)
            self.result.customers, self.result.calls = run.customers_total, run.calls
        return self.result


def bulk_reconcile(**options) -> Result:
    """Run (or resume) a bulk reconcile; see BulkReconcile for the options."""
    return BulkReconcile(**options).run()


def start_for_operator(operator, *, incremental: bool = False, progress=None) -> BulkReconcile:
    """The console's "Reconcile all": the run is created (or ReconcileBusy raised) and audited; call .run()."""
    job = BulkReconcile(incremental=incremental, started_by=operator.email, progress=progress)
    with session_scope() as session:
        audit.record(session, operator, audit.BULK_RECONCILE, f"run:{job.run_id}",
                     f"{job.mode}{' (resumed)' if job.resumed else ''}")
    return job


def latest_runs(session: Session, limit: int = 5) -> list[RunView]:
    rows = session.exec(select(ReconcileRun).order_by(ReconcileRun.id.desc()).limit(limit)).all()
    now = utcnow()
    return [RunView.of(r, now) for r in rows]


def is_running(session: Session) -> bool:
    return any(run.state == RUNNING and not run.stale for run in latest_runs(session, 3))

