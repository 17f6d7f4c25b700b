"""The webhook worker: claims stored events, syncs each customer once, marks the events.

`Worker.run_once()` is one synchronous pass (tests drive it directly);
`run_worker()` is the loop the backend starts as a Reflex lifespan task. It runs each
pass in a thread (the sync makes blocking Stripe and database calls), sleeps while
nothing is due (looking again every WEBHOOK_POLL_SECONDS), and wakes early when the webhook
route stores an event (`signal.notify`; from a backend to a `worker` process through Redis,
see `wake`), after a short pause that lets a burst of one customer's events gather into one sync.

A pass syncs up to `concurrency` customers at once (WEBHOOK_SYNC_CONCURRENCY, on a small
thread pool; a sync waits mostly on Stripe), so a burst of changes reaches open pages sooner;
one customer's events are always in one sync. Once a sync has run `TOP_UP_SECONDS`, the pass's
idle slots take more due events into the same claim (looking that often), leaving out the
customers the pass holds: one slow customer's sync holds back no other. Quick syncs end their
pass as before, so a burst still gathers into one sync per customer.

A pass holds its events on a short lease (`LEASE_SECONDS`) that a heartbeat thread
renews every `HEARTBEAT_SECONDS` while its syncs run: a slow sync keeps its events, and
the events of a killed process are due again once its last lease runs out (at most
`LEASE_SECONDS` later). A restarted backend does not wait even that long: `run_worker`
first releases the claims of its host's dead processes (`eventlog.release_orphans`).

The sync function is a parameter (default `billing_app.billing.sync.sync_customer`),
so the claim/retry/coalescing logic can be exercised with a real database and a test
double where that is the honest thing to test. So is `ingest_busy`, the test the worker
yields to before each write (default `signal.ingest_busy`: this process's ingest writer), and
so is `clock`, the time the worker claims and renews at (tests move it forward instead of waiting).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from billing_app import live
from billing_app.billing import gateway
from billing_app.billing.sync import sync_customer
from billing_app.models import utcnow
from billing_app.notifications import events as notification_events
from billing_app.passes import Backoff, PassWorker
from billing_app.settings import get_settings
from billing_app.webhooks import eventlog, signal
from billing_app.webhooks.handlers import CUSTOMER_PREFIX

log = structlog.get_logger("billing_app.webhooks")

SyncFn = Callable[[str], object]

BATCH_SIZE = 200
LEASE_SECONDS = 10.0  # how long a claim holds unless renewed: a killed process's events wait at most this
HEARTBEAT_SECONDS = 2.0  # the lease is renewed this often while a pass runs (it outlasts four missed beats)
MAX_ATTEMPTS = 8
BACKOFF_BASE_SECONDS = 30.0  # 30 s, 1 min, 2 min, ... (about 1 h 4 min over 8 attempts)
BACKOFF_CAP_SECONDS = 3600.0
GATHER_SECONDS = 0.25
TOP_UP_SECONDS = 1.0  # a sync this long holds its pass: idle slots then look for due events this often
FLUSH_EVERY = 50  # write outcomes after this many customers ...
FLUSH_SECONDS = 1.0  # ... or this long, whichever comes first
YIELD_MAX_SECONDS = 0.05  # the longest the worker defers a write to incoming deliveries


@dataclass
class PassReport:
    claimed: int = 0
    events: list[str] = field(default_factory=list)  # the Stripe ids this pass claimed
    synced: list[str] = field(default_factory=list)  # customers synced successfully
    failed: list[str] = field(default_factory=list)  # customers whose sync raised
    processed: int = 0  # rows marked processed (ours plus covered ones)
    released: int = 0  # rows given back because the lease ran short
    gave_up: int = 0  # rows that reached the attempt limit and are now `failed`
    # Stripe ids of events the claim made `failed` instead of handing over: their worker died in their last attempt, their sync alone in flight
    died_at_limit: list[str] = field(default_factory=list)
    errors: dict[str, list[str]] = field(default_factory=dict)  # error text -> customers
    changed_orgs: set[int] = field(default_factory=set)  # orgs whose mirror the syncs changed

    def add_died(self, events: list[eventlog.Claimed]) -> None:
        """Events given up as this pass claimed: failures of this pass, though no sync of it ran."""
        self.died_at_limit += [e.stripe_event_id for e in events]
        if events:
            self.errors.setdefault(eventlog.DIED_ERROR, []).extend(dict.fromkeys(e.customer_id for e in events))


def customer_to_sync(key: str) -> str | None:
    """The Stripe customer the events stored under `key` ask to re-read: the key itself, or for a
    dispute's charge (handlers.customer_of: `ch_`, or `py_` for a bank debit) the charge's customer,
    read from Stripe here, off the route. The events are then filed under that customer, so the
    operator console finds them with the org's other events (and a retry needs no lookup)."""
    if key.startswith(CUSTOMER_PREFIX):
        return key
    customer = gateway.call(gateway.stripe_client().v1.charges.retrieve, key).get("customer")
    customer = customer.get("id") if isinstance(customer, dict) else customer
    if customer:
        eventlog.file_under(key, customer)
    return customer


class Worker(PassWorker):
    def __init__(
        self,
        sync: SyncFn | None = None,
        *,
        batch_size: int = BATCH_SIZE,
        lease_seconds: float = LEASE_SECONDS,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        max_attempts: int = MAX_ATTEMPTS,
        backoff_base: float = BACKOFF_BASE_SECONDS,
        backoff_cap: float = BACKOFF_CAP_SECONDS,
        flush_every: int = FLUSH_EVERY,
        flush_seconds: float = FLUSH_SECONDS,
        ingest_busy: Callable[[], bool] | None = signal.ingest_busy,
        clock: Callable[[], datetime] = utcnow,
        concurrency: int | None = None,
        top_up_seconds: float = TOP_UP_SECONDS,
    ):
        self.sync = sync or sync_customer
        self.concurrency = concurrency or get_settings().webhook_sync_concurrency
        self.batch_size = batch_size
        self.top_up_seconds = top_up_seconds
        self.lease = timedelta(seconds=lease_seconds)
        self.heartbeat_seconds = heartbeat_seconds
        self.policy = eventlog.RetryPolicy(max_attempts, backoff_base, backoff_cap)
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self.ingest_busy = ingest_busy
        self.clock = clock
        # Called from the pass's thread with {org_id} as soon as a sync changed that org's mirror (the
        # sync has committed it), so open pages refresh without waiting for the rest of the batch.
        self.announce: Callable[[set[int]], object] | None = None
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Drain (graceful shutdown): claim nothing more; the pass in flight finishes the sync it is
        in, records it and gives the rest of its events back untried; the loop then ends."""
        self._stopping.set()
        signal.notify()  # wake the loop if it is idle

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _yield_to_ingest(self) -> None:
        """Ingest first: while deliveries are being stored in this process, let them have the
        database (and the interpreter) for a moment before each of our writes. Bounded, so a
        flood slows the worker down (and its syncs cover more events each) without stopping it."""
        if self.ingest_busy is None:
            return
        deadline = time.monotonic() + YIELD_MAX_SECONDS
        while self.ingest_busy() and time.monotonic() < deadline:
            time.sleep(0.002)

    def run_once(self) -> PassReport:
        """Claim one batch and handle it: one sync per customer, then mark its events.

        Outcomes are written a few customers at a time in one transaction (and always at the
        end of the pass): if the process dies before a write, those events' claims expire
        and they are synced again, which is harmless. A heartbeat renews the lease meanwhile.
        """
        report = PassReport()
        if self.stopping or not eventlog.has_due(self.clock()):
            return report
        self._yield_to_ingest()
        claimed_at = self.clock()
        max_attempts = self.policy.max_attempts
        # A customer whose event used its attempts in claims that died beside other syncs first, in a
        # pass of its own (no other sync, no top-up), so a death then is its own.
        token, events, died = eventlog.claim_alone(self.batch_size, self.lease, claimed_at, max_attempts=max_attempts)
        report.add_died(died)
        alone = bool(events)
        if not alone:
            token, events = eventlog.claim(self.batch_size, self.lease, claimed_at, max_attempts=max_attempts)
        if events:
            with _Heartbeat(self, token, [e.id for e in events], claimed_at + self.lease) as heartbeat:
                self._handle(token, events, heartbeat, report, top_up=not alone)
        if events or died:
            self._log(report)
        return report

    def _handle(
        self, token: str, events: list[eventlog.Claimed], heartbeat: _Heartbeat, report: PassReport, *, top_up: bool,
    ) -> None:
        jobs: list[tuple[str, list[eventlog.Claimed]]] = []  # claimed customers waiting for a slot, in order
        synced: list[eventlog.Synced] = []
        failed: list[eventlog.Failed] = []

        def take(claimed: list[eventlog.Claimed]) -> None:
            report.claimed += len(claimed)
            report.events += [e.stripe_event_id for e in claimed]
            by_customer: dict[str | None, list[eventlog.Claimed]] = {}
            for event in claimed:
                by_customer.setdefault(event.customer_id, []).append(event)
            # Handled types whose object names no customer: nothing in the mirror can depend on them.
            if None in by_customer:
                synced.append(eventlog.Synced([e.id for e in by_customer.pop(None)]))
            jobs.extend(by_customer.items())

        def flush():
            self._yield_to_ingest()
            processed, states = eventlog.record(token, synced, failed, policy=self.policy)
            report.processed += processed
            report.gave_up += sum(1 for _, state in states if state == eventlog.FAILED)
            heartbeat.forget([i for s in synced for i in s.ids] + [e.id for f in failed for e in f.events])
            synced.clear()
            failed.clear()

        # Up to `concurrency` customers sync at once (each on a pool thread); outcomes are recorded
        # here, in the pass's thread, as each sync ends. Once a sync has run `top_up_seconds`, idle
        # slots take more due events (`_top_up`), so one slow customer (a Stripe call may take
        # minutes) holds back no other; quicker passes end first, so a burst gathers as before.
        # Stop starting syncs well before the lease ends (as the heartbeat last renewed it: only
        # when renewals fail, e.g. the database is unreachable), so no other worker re-claims
        # mid-sync; and when told to stop, so the process exits holding nothing (the syncs in
        # flight finish and are recorded first).
        take(events)
        last_flush = last_look = time.monotonic()
        in_flight: dict[Future, tuple[str, list[eventlog.Claimed], float]] = {}  # customer, events, started
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="webhook-sync") as pool:
            while True:
                starting: list[tuple[str, list[eventlog.Claimed]]] = []
                while jobs and len(in_flight) + len(starting) < self.concurrency:
                    if self.stopping or self._lease_short(heartbeat):
                        ids = [e.id for _, held in jobs for e in held]
                        report.released += eventlog.release(ids, token)
                        heartbeat.forget(ids)
                        jobs.clear()
                        break
                    starting.append(jobs.pop(0))
                if starting:
                    # Marked in flight before they run (one statement for the slots filled at once): if a
                    # sync kills the process, the death is charged to these, not to the claim's other events,
                    # and is known to be theirs only if no other sync was in flight or unrecorded beside them.
                    beside = [e.id for _, held, _ in in_flight.values() for e in held]
                    beside += [i for s in synced if s.customer_id is not None for i in s.ids] + [e.id for f in failed for e in f.events]
                    self._yield_to_ingest()
                    eventlog.start([e.id for _, held in starting for e in held], token,
                                   alone=len(starting) == 1 and not beside, beside=beside)
                for customer_id, held in starting:
                    in_flight[pool.submit(self._timed_sync, customer_id)] = (customer_id, held, time.monotonic())
                if not in_flight:
                    break
                done, _ = wait(in_flight, timeout=self.top_up_seconds / 4, return_when=FIRST_COMPLETED)
                for future in done:
                    customer_id, held, _ = in_flight.pop(future)
                    outcome = self._outcome(customer_id, held, future, report)
                    (synced if isinstance(outcome, eventlog.Synced) else failed).append(outcome)
                if (synced or failed) and (
                    len(synced) + len(failed) >= self.flush_every or time.monotonic() - last_flush > self.flush_seconds
                ):
                    flush()
                    last_flush = time.monotonic()
                now = time.monotonic()
                held_up = in_flight and now - min(started for _, _, started in in_flight.values()) >= self.top_up_seconds
                idle_slot = not jobs and len(in_flight) < self.concurrency
                if top_up and held_up and idle_slot and now - last_look >= self.top_up_seconds:
                    last_look = now
                    take(self._top_up(token, heartbeat, report))
        flush()

    def _lease_short(self, heartbeat: _Heartbeat) -> bool:
        return self.clock() > heartbeat.until - self.lease / 2

    def _top_up(self, token: str, heartbeat: _Heartbeat, report: PassReport) -> list[eventlog.Claimed]:
        """More due events for idle slots, added to this pass's claim (its heartbeat renews them). The
        customers this pass holds (syncing, or synced and not yet recorded) are left out by the claim."""
        if self.stopping or self._lease_short(heartbeat) or not eventlog.has_due(self.clock()):
            return []
        self._yield_to_ingest()
        now = self.clock()
        _, events = eventlog.claim(self.batch_size, self.lease, now, token=token, max_attempts=self.policy.max_attempts)
        heartbeat.add([e.id for e in events])
        return events

    def _timed_sync(self, customer_id: str) -> tuple[int, object]:
        """On a pool thread: the event log's high water as the sync began (events up to it are covered
        by it), and its result (None: the events name no customer to sync)."""
        covers_upto = eventlog.high_water()
        customer = customer_to_sync(customer_id)
        return covers_upto, self.sync(customer) if customer else None

    def _outcome(self, customer_id: str, events: list[eventlog.Claimed], sync: Future, report: PassReport):
        try:
            covers_upto, result = sync.result()
        except Exception as error:  # any failure is retried; the error text is kept on the rows for the admin
            return self._failed(customer_id, events, f"{type(error).__name__}: {getattr(error, 'message', None) or error}", report)
        org_id = getattr(result, "org_id", None)
        if org_id is not None and getattr(result, "changes", True):
            report.changed_orgs.add(org_id)
            if self.announce is not None:
                self.announce({org_id})
        # The mirror is written, but a judgment the sync had to leave (sync.SyncReport.deferred) is made
        # only by a later sync: a failure, so its events are retried.
        if deferred := getattr(result, "deferred", None):
            return self._failed(customer_id, events, deferred, report)
        report.synced.append(customer_id)
        notices = tuple(notification_events.rows_for(result, events))
        return eventlog.Synced([e.id for e in events], customer_id, covers_upto, notices)

    @staticmethod
    def _failed(customer_id: str, events: list[eventlog.Claimed], message: str, report: PassReport) -> eventlog.Failed:
        report.failed.append(customer_id)
        report.errors.setdefault(message, []).append(customer_id)
        return eventlog.Failed(events, message)

    @staticmethod
    def _log(report: PassReport) -> None:
        log.info(
            "webhook.pass", claimed=report.claimed, synced=len(report.synced), failed=len(report.failed),
            processed=report.processed, gave_up=report.gave_up, died_at_limit=len(report.died_at_limit),
            released=report.released,
        )
        for message, customers in report.errors.items():
            _log_failure(message, customers)

    def release_orphans(self) -> int:
        """Free the claims of this host's dead processes (run once as the worker starts); how many events
        it freed, due again or (at the attempt limit) given up, logged as failures."""
        released, died = eventlog.release_orphans(self.policy.max_attempts)
        if released:
            log.info("webhook.orphans_released", events=released)
        if died:
            _log_failure(eventlog.DIED_ERROR, list(dict.fromkeys(e.customer_id for e in died)))
        return released + len(died)


def _log_failure(message: str, customers: list[str | None]) -> None:
    log.warning("webhook.sync_failed", error=message, customers=len(customers), sample=customers[:5])


class _Heartbeat:
    """While a pass runs, a thread renews its lease every `heartbeat_seconds` (until the block ends).

    It renews the pass's events not yet recorded: those claimed first, and those the pass took
    since (`add`), less those recorded or given back (`forget`). `until` is the lease's end as
    last written: the worker starts no sync that could outlast it by much. A failed renewal (the
    database briefly unreachable) is logged and tried again at the next beat.
    """

    def __init__(self, worker: Worker, token: str, ids: list[int], until: datetime):
        self.worker, self.token, self.until = worker, token, until
        self._ids = set(ids)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-heartbeat", daemon=True)

    def add(self, ids: list[int]) -> None:
        with self._lock:
            self._ids.update(ids)

    def forget(self, ids: list[int]) -> None:
        with self._lock:
            self._ids.difference_update(ids)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.worker.heartbeat_seconds):
            until = self.worker.clock() + self.worker.lease
            with self._lock:
                ids = sorted(self._ids)
            try:
                eventlog.renew(ids, self.token, until)
            except Exception as error:  # keep beating; the pass stops starting syncs if the lease runs short
                log.warning("webhook.heartbeat_failed", error=f"{type(error).__name__}: {error}")
                continue
            self.until = until


# --- the lifespan task ---------------------------------------------------------------

async def _refresh_pages(org_ids: set[int]) -> None:
    """Push the new billing state to the org's open pages (billing_app.live)."""
    for org_id in org_ids:
        try:
            await live.notify(org_id)
        except Exception as error:  # a page refresh is a nicety; never stop the worker for it
            log.info("webhook.live_refresh_skipped", org=org_id, error=str(error))


async def run_worker(
    sync: SyncFn | None = None, *, poll_seconds: float | None = None, gather_seconds: float = GATHER_SECONDS,
    worker: Worker | None = None, on_change=_refresh_pages,
) -> None:
    """Process stored events until cancelled (the backend's lifespan ends) or `worker.stop()` (drained).

    `on_change(org_ids)` runs on this loop as soon as a sync in a pass changed an org's mirror
    (default: refresh its open billing pages through `billing_app.live`).
    """
    worker = worker or Worker(sync)
    poll_seconds = poll_seconds or get_settings().webhook_poll_seconds
    with signal.listen() as wake:
        try:
            await asyncio.to_thread(worker.release_orphans)
        except Exception as error:  # their leases run out anyway; never keep the worker from starting
            log.error("webhook.orphans_not_released", error=f"{type(error).__name__}: {error}")
        log.info("webhook.worker_started")  # past its start-up: from here on, claims come back by their leases
        try:
            await _loop(worker, wake, poll_seconds, gather_seconds, on_change)
        finally:
            worker.announce = None  # this loop is ending: a later pass (drain) must not post to it
            log.info("webhook.worker_stopped")


async def _loop(worker: Worker, wake: asyncio.Event, poll_seconds: float, gather_seconds: float, on_change) -> None:
    backoff = Backoff(poll_seconds, log, "webhook.worker_error", nap=lambda seconds: _nap(worker, seconds))
    if on_change is not None:
        loop = asyncio.get_running_loop()
        worker.announce = lambda org_ids: asyncio.run_coroutine_threadsafe(on_change(org_ids), loop)
    while not worker.stopping:
        report = await backoff.run(worker.run_once)
        if report is None:
            continue
        if report.claimed >= worker.batch_size:
            continue  # a backlog: carry on at once
        if report.claimed:
            # Events keep arriving: let them gather for a moment, so each customer's burst is one sync.
            await _nap(worker, gather_seconds)
            continue
        wake.clear()
        try:
            await asyncio.wait_for(wake.wait(), timeout=poll_seconds)
        except TimeoutError:
            continue
        await _nap(worker, gather_seconds)  # let the rest of a burst arrive, to sync each customer once


async def _nap(worker: Worker, seconds: float) -> None:
    """Sleep, cut short (in steps of a tenth of a second at most) when the worker is told to stop."""
    deadline = time.monotonic() + seconds
    while not worker.stopping and (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(left, 0.1))
