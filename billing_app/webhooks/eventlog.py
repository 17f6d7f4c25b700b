"""The webhook event log: store, claim, record, replay.

Every verified event is stored once by its Stripe id before anything else happens
(`store_events`: INSERT ... ON CONFLICT DO NOTHING). The worker then claims due events
(`claim`), syncs their customers and writes the outcome (`record`). The row is the
whole state of the retry machine:

    pending --sync ok--> processed
    pending --sync failed--> pending (attempts+1, last_error, next_attempt_at = now + backoff)
                         \\--> failed once attempts reach the limit (shown to admins; `replay` re-queues)
    pending --its worker died in its sync, the only one in flight, at the limit--> failed (`DIED_ERROR`;
                         `claim_alone` or `release_orphans`; beside other syncs: tried once more alone first)

A claim is a short lease: `claimed_until` is set a few seconds ahead and `claimed_by` to the
claim's token (its process and a number, `owners.new_claim_token`), atomically. On PostgreSQL
one UPDATE whose row choice uses FOR UPDATE SKIP LOCKED, so several workers never take the
same row, after a transaction-level advisory lock that makes claims one at a time: SKIP
LOCKED locks rows, not customers, so two claims at the same instant (neither seeing the
other's uncommitted claim) could each take events of one customer and sync it twice. On
SQLite the rows are chosen in a read and claimed by an UPDATE that re-checks they are still
due, under the single write lock. While its syncs run, the worker keeps extending the lease
(`renew`, its heartbeat). If the process dies, the lease is no longer renewed and runs out,
and the event is claimed again; a restarted process does not wait for that:
`release_orphans` frees at once the claims of dead processes of its host. The token fences
the claim: a worker whose lease ran out cannot mark or renew a row another worker has since
claimed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import String, and_, bindparam, case, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from billing_app import owners
from billing_app.db import get_engine
from billing_app.models import WebhookEvent, utcnow
from billing_app.webhooks.handlers import RESYNC_EVENT_TYPES, customer_of
from billing_app.notifications import outbox
from billing_app.notifications.billing import EVENT_TYPES as NOTICE_EVENT_TYPES
from billing_app.webhooks.signal import notify

T = WebhookEvent.__table__

PENDING = "pending"
PROCESSED = "processed"
FAILED = "failed"
ERROR_MAX_CHARS = 2000


@dataclass(frozen=True)
class Claimed:
    """One claimed event, as the worker needs it (the payload stays in the database)."""

    id: int
    stripe_event_id: str
    type: str
    customer_id: str | None
    attempts: int  # including this attempt


_sqlite_write_lock = threading.Lock()


@contextlib.contextmanager
def _writing() -> Iterator:
    """A write transaction. On SQLite, this process's writers (the ingest thread, the worker)
    take turns on a lock first: waiting on it is a hand-over, where waiting on SQLite's own
    busy timeout sleeps in steps of up to 100 ms and lets a busy writer starve the others."""
    engine = get_engine()
    lock = _sqlite_write_lock if engine.dialect.name == "sqlite" else contextlib.nullcontext()
    with lock, engine.begin() as connection:
        yield connection


def _customer_to_sync(event: dict) -> str | None:
    """The Stripe customer this (re-sync) event asks us to re-read, or None (also for a `data` of
    another shape: stored all the same, nothing lost, synced for no customer)."""
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    obj = data.get("object")
    return customer_of(obj, data.get("previous_attributes")) if isinstance(obj, dict) else None


def _row(event: dict, payload: str, now: datetime) -> dict:
    handled = event["type"] in RESYNC_EVENT_TYPES
    return dict(
        stripe_event_id=event["id"],
        type=event["type"],
        customer_id=_customer_to_sync(event) if handled else None,
        received_at=now,
        processed_at=None if handled else now,
        state=PENDING if handled else PROCESSED,
        attempts=0,
        payload=payload,
    )


_EXISTING = select(T.c.stripe_event_id).where(T.c.stripe_event_id.in_(bindparam("ids", expanding=True)))
_INSERT_SQLITE = sqlite_insert(T).on_conflict_do_nothing(index_elements=[T.c.stripe_event_id])


def store_events(items: list[tuple[dict, str]]) -> list[bool]:
    """Store verified events (event, raw payload) in one transaction; for each, True if new.

    INSERT ... ON CONFLICT (stripe_event_id) DO NOTHING: an id already stored (or repeated
    within `items`) is a no-op and reported False. Unknown types are stored already
    processed: kept for the record, never synced.
    """
    now = utcnow()
    first: dict[str, int] = {}
    rows = []
    for index, (event, payload) in enumerate(items):
        if event["id"] not in first:
            first[event["id"]] = index
            rows.append(_row(event, payload, now))
    if get_engine().dialect.name == "postgresql":
        statement = pg_insert(T).values(rows).on_conflict_do_nothing(index_elements=[T.c.stripe_event_id])
        with _writing() as connection:
            inserted = set(connection.execute(statement.returning(T.c.stripe_event_id)).scalars())
    else:
        # SQLite: this process's writers take turns (`_writing`), so "which ids exist" then one
        # executemany INSERT is exact here and costs far less than a many-row VALUES statement.
        with _writing() as connection:
            existing = set(connection.execute(_EXISTING, {"ids": list(first)}).scalars())
            new = [row for row in rows if row["stripe_event_id"] not in existing]
            if new:
                connection.execute(_INSERT_SQLITE, new)
        inserted = {row["stripe_event_id"] for row in new}
    return [event["id"] in inserted and first[event["id"]] == index for index, (event, _) in enumerate(items)]


def _due(now, t=T):
    return and_(
        t.c.state == PENDING,
        or_(t.c.next_attempt_at.is_(None), t.c.next_attempt_at <= now),
        or_(t.c.claimed_until.is_(None), t.c.claimed_until < now),
    )


_NOW = bindparam("now")
_MAX_ATTEMPTS = bindparam("max_attempts")  # None (no limit given): nothing counts as at the limit
_TOKEN = bindparam("token", type_=String())
# A claim's token with a mark on the rows whose sync has started (`start`): a death is charged only to
# them (rows a dead claim never started were not tried: their attempt is given back, as `release` does),
# and it is known to be their own only if theirs was the one sync of their process in flight or unrecorded.
STARTED_BESIDE = "!"
STARTED_ALONE = "!alone"
_HELD_BY_CLAIM = T.c.claimed_by.in_([_TOKEN, _TOKEN + STARTED_BESIDE, _TOKEN + STARTED_ALONE])
_UNTRIED = and_(T.c.claimed_by.is_not(None), T.c.claimed_by.not_like("%" + STARTED_BESIDE + "%"))
_ATTEMPTS_REFUNDED = case((and_(_UNTRIED, T.c.attempts > 0), T.c.attempts - 1), else_=T.c.attempts)
_HAS_DUE = select(T.c.id).where(_due(_NOW)).limit(1)
_other = T.alias("other")


def _customers_pending(*conditions):
    """Computed once per claim (not correlated per row): the customers with a pending event such that ..."""
    return select(_other.c.customer_id).where(_other.c.state == PENDING, _other.c.customer_id.is_not(None), *conditions)


_HELD_CUSTOMERS = _customers_pending(_other.c.claimed_until >= _NOW)  # someone holds their events now
# ... or one of their events used its attempts in a claim that died beside other customers' syncs:
# they are for `claim_alone`, never in a batch.
_BUSY_CUSTOMERS = _customers_pending(or_(_other.c.claimed_until >= _NOW, _other.c.attempts >= _MAX_ATTEMPTS))
_CHOOSE = (
    select(T.c.id)
    .where(_due(_NOW), or_(T.c.customer_id.is_(None), T.c.customer_id.not_in(_BUSY_CUSTOMERS)))
    .order_by(T.c.id)
    .limit(bindparam("limit"))
)
_suspect = T.alias("suspect")
_LONG_RUN_OUT = bindparam("long_run_out")  # a lease before now: a lease that ran out before it is its dead holder's
# A row whose sync ran alone and whose lease ran out less than a lease ago is not claimed again: its worker
# either lives (its heartbeat renews or it records) or died, and `_GIVE_UP` then fails it once that lease has
# passed. Claimed at once, a worker of another host would die of it in turn, and so on without end.
_AT_LIMIT = and_(
    _due(_NOW, _suspect), _suspect.c.attempts >= _MAX_ATTEMPTS, _suspect.c.customer_id.is_not(None),
    or_(_suspect.c.claimed_by.is_(None), _suspect.c.claimed_by.not_like("%" + STARTED_ALONE),
        _suspect.c.claimed_until < _LONG_RUN_OUT),
)
_HAS_DUE_AT_LIMIT = select(_suspect.c.id).where(_AT_LIMIT).limit(1)
# The oldest such customer nobody holds, alone: all its due events, and no one else's.
_CHOOSE_ALONE = (
    select(T.c.id)
    .where(_due(_NOW), T.c.customer_id == select(_suspect.c.customer_id).where(
        _AT_LIMIT, _suspect.c.customer_id.not_in(_HELD_CUSTOMERS)).order_by(_suspect.c.id).limit(1).scalar_subquery())
    .order_by(T.c.id)
    .limit(bindparam("limit"))
)
_RETURNING = (T.c.id, T.c.stripe_event_id, T.c.type, T.c.customer_id, T.c.attempts)
# The attempt counts as the event is claimed, unless the lapsed claim it takes over never started it.
_CLAIM_VALUES = dict(claimed_until=bindparam("until"), claimed_by=_TOKEN,
                     attempts=T.c.attempts + case((_UNTRIED, 0), else_=1))
_UNCLAIMED = dict(claimed_until=None, claimed_by=None)
# PostgreSQL: claims wait for each other (the lock ends with the claim's transaction; a claim takes
# milliseconds), so each one's UPDATE, with a snapshot taken after the lock, sees the customers the
# previous claims hold. One lock per schema: deployments sharing a database do not wait for each other.
_CLAIM_LOCK_PG = text("SELECT pg_advisory_xact_lock(hashtext(current_schema()), hashtext('webhookevent.claim'))")
# SQLite: the chosen ids, claimed only if still due (the re-check makes the claim atomic).
_CLAIM_IDS = update(T).where(T.c.id.in_(bindparam("ids", expanding=True)), _due(_NOW)).values(**_CLAIM_VALUES).returning(*_RETURNING)


def _claim_pg(choose):
    """One statement; rows another worker is claiming right now are skipped, not waited for."""
    return update(T).where(T.c.id.in_(choose.with_for_update(skip_locked=True))).values(**_CLAIM_VALUES).returning(*_RETURNING)


_CLAIM_PG = _claim_pg(_CHOOSE)
_CLAIM_ALONE_PG = _claim_pg(_CHOOSE_ALONE)
# A due event still bearing a started claim whose lease ran out a whole lease ago is one whose worker
# died mid-sync, never recording its outcome. At the attempt limit it is given up, not claimed again (a
# poison event, one that kills its process each time, would else crash-loop forever), but only if its
# sync was the only one of its process in flight (STARTED_ALONE): the death was its own. Beside others,
# it is tried once more alone (`claim_alone`). A lease just run out may be a live worker's whose
# heartbeat missed a beat (a database hiccup): that event is taken over as any other, not failed under a
# sync that is about to succeed.
DIED_ERROR = "worker died during its sync"
_DIED = dict(state=FAILED, last_error=DIED_ERROR, next_attempt_at=None, **_UNCLAIMED)
_DIED_AT_LIMIT = and_(T.c.claimed_by.like("%" + STARTED_ALONE), T.c.attempts >= _MAX_ATTEMPTS)
_GIVE_UP = update(T).where(
    T.c.id.in_(select(T.c.id).where(_due(_NOW), _DIED_AT_LIMIT, T.c.claimed_until < _LONG_RUN_OUT)
               .with_for_update(skip_locked=True)),
).values(**_DIED).returning(*_RETURNING)


def has_due(now: datetime | None = None) -> bool:
    """A cheap read, so an idle worker does not take SQLite's write lock every poll."""
    with get_engine().connect() as connection:
        return connection.execute(_HAS_DUE, {"now": now or utcnow()}).first() is not None


def claim(
    limit: int, lease: timedelta, now: datetime | None = None, *, by: owners.Owner | None = None, token: str | None = None,
    max_attempts: int | None = None,
) -> tuple[str, list[Claimed]]:
    """Claim up to `limit` due events until `now + lease`; returns the claim's token and the events.

    `by` is the claiming process (default this one). Events of a customer another worker
    (or this claim) holds right now are left alone: they wait and are covered by one later
    sync instead of a second concurrent one. `token` adds the events to a claim this process
    already holds (a pass taking more while its syncs run), renewed, marked and fenced with it.
    With `max_attempts`, customers with an event at the limit are left out too (`claim_alone`'s).
    """
    now = now or utcnow()
    token = token or owners.new_claim_token(by)
    values = _claim_values(now, limit, lease, token, max_attempts)
    if get_engine().dialect.name == "postgresql":
        with _writing() as connection:
            connection.execute(_CLAIM_LOCK_PG)
            rows = connection.execute(_CLAIM_PG, values).all()
    else:
        # Choose in a read (WAL readers never block the writer), then claim under the write
        # lock: it is held only for a few primary-key updates.
        with get_engine().connect() as connection:
            ids = list(connection.execute(_CHOOSE, values).scalars())
        if not ids:
            return token, []
        with _writing() as connection:
            rows = connection.execute(_CLAIM_IDS, {**values, "ids": ids}).all()
    return token, _sorted(rows)


def claim_alone(
    limit: int, lease: timedelta, now: datetime | None = None, *, max_attempts: int, by: owners.Owner | None = None,
) -> tuple[str, list[Claimed], list[Claimed]]:
    """Claim the due events of one customer with an event at the attempt limit, for a pass that syncs
    nothing else; returns the claim's token, the events, and the events given up first.

    Such an event used its attempts in claims that died (an ordinary failure at the limit is `failed`
    already) while other customers' syncs ran beside it: any of them may have killed the process.
    Tried alone, a death is its own. Given up first (`DIED_ERROR`, for the worker to report as its
    failures): events whose dead claim, at the limit, had only their customer's sync in flight.
    """
    now = now or utcnow()
    token = owners.new_claim_token(by)
    values = {**_claim_values(now, limit, lease, token, max_attempts), "long_run_out": now - abs(lease)}
    with get_engine().connect() as connection:  # a read first: nearly always nothing is at the limit
        if connection.execute(_HAS_DUE_AT_LIMIT, values).first() is None:
            return token, [], []
    postgresql = get_engine().dialect.name == "postgresql"
    with _writing() as connection:
        if postgresql:
            connection.execute(_CLAIM_LOCK_PG)
        given_up = connection.execute(_GIVE_UP, values).all()
        if postgresql:
            rows = connection.execute(_CLAIM_ALONE_PG, values).all()
        else:
            ids = list(connection.execute(_CHOOSE_ALONE, values).scalars())
            rows = connection.execute(_CLAIM_IDS, {**values, "ids": ids}).all() if ids else []
    return token, _sorted(rows), _sorted(given_up)


def _claim_values(now: datetime, limit: int, lease: timedelta, token: str, max_attempts: int | None) -> dict:
    return {"now": now, "limit": limit, "token": token, "until": now + lease, "max_attempts": max_attempts}


def _sorted(rows) -> list[Claimed]:
    return sorted((Claimed(*row) for row in rows), key=lambda c: c.id)


_HIGH_WATER = select(func.max(T.c.id))


def high_water() -> int:
    """The newest event id stored (committed) now: read as a sync begins, before it reads Stripe.

    Covering by id, not by time: `received_at` is the ingesting backend's clock and the sync
    runs on the worker's, so any skew between them would cover (lose) an event stored after the
    sync's read. An event committed after this read can only get a larger id: on SQLite ids are
    max+1 under the one write lock (in commit order; the log never deletes rows); on PostgreSQL
    ids come from the table's sequence (CACHE 1, the default), not in commit order, but increasing
    in the time each is drawn. So every id <= this one was drawn before it was read, i.e. that
    event's Stripe change was made before the sync's Stripe read, which therefore saw it (even
    when its row commits later).
    """
    with get_engine().connect() as connection:
        return connection.execute(_HIGH_WATER).scalar() or 0


@dataclass(frozen=True)
class Synced:
    """A successful sync of `customer_id` for our claimed rows `ids`; it covers the customer's
    events up to id `covers_upto` (`high_water()` as it began)."""

    ids: list[int]
    customer_id: str | None = None
    covers_upto: int | None = None
    # Outbox rows (billing_app/notifications) written in the same transaction as the marking.
    notices: tuple[dict, ...] = ()


@dataclass(frozen=True)
class Failed:
    """A failed sync for these claimed events, with the error to show the admin."""

    events: list[Claimed]
    error: str


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    backoff_base: float  # seconds before the 2nd attempt; doubles each time
    backoff_cap: float

    def backoff(self, attempts: int) -> timedelta:
        """Exponential: base, 2*base, 4*base, ... capped."""
        return timedelta(seconds=min(self.backoff_cap, self.backoff_base * 2 ** max(0, attempts - 1)))


_DONE = dict(state=PROCESSED, processed_at=bindparam("done_at"), next_attempt_at=None, last_error=None, **_UNCLAIMED)
# Our claimed rows, by id and claim token.
_OURS = and_(T.c.id.in_(bindparam("ids", expanding=True)), _HELD_BY_CLAIM, T.c.state == PENDING)
_MARK_OURS = update(T).where(_OURS).values(**_DONE)
# Pending events of the customer stored before its successful sync began (ids up to its
# `high_water()`) are covered by it (e.g. ones waiting for a retry), unless another worker holds
# them. SKIP LOCKED: never wait for a row another transaction is writing (no lock-order
# deadlocks between workers on PostgreSQL). `state || ''` keeps SQLite's planner on the
# customer_id index (without statistics it would pick the state index and scan every pending row).
# Events that send an email (trial ending, action required) are never covered: their email is
# built only for the events a sync claimed (worker `_outcome`), so each is claimed itself.
_MARK_COVERED = update(T).where(
    T.c.id.in_(
        select(T.c.id)
        .where(
            T.c.customer_id == bindparam("customer"),
            (T.c.state + "") == PENDING,
            T.c.type.not_in(NOTICE_EVENT_TYPES),
            T.c.id <= bindparam("covers_upto"),
            or_(T.c.claimed_until.is_(None), T.c.claimed_until < bindparam("done_at")),
        )
        .with_for_update(skip_locked=True)
    ),
    T.c.state == PENDING,
).values(**_DONE)
_MARK_FAILED = update(T).where(_OURS).values(
    last_error=bindparam("error"), state=bindparam("new_state"), next_attempt_at=bindparam("retry_at"), **_UNCLAIMED,
).returning(T.c.id)


def record(
    token: str, synced: Iterable[Synced] = (), failed: Iterable[Failed] = (), *, policy: RetryPolicy | None = None,
) -> tuple[int, list[tuple[int, str]]]:
    """Write the outcome of several syncs in one short transaction.

    Synced rows become processed. Failed rows count the attempt (already counted by the
    claim) and keep the error: retried after a backoff, or `failed` once the limit is
    reached. Only rows still held by this claim (`token`) change. Returns the number of
    rows marked processed and (id, new state) for each failed row.
    """
    synced, failed = list(synced), list(failed)
    if not synced and not failed:
        return 0, []
    if failed and policy is None:
        raise ValueError("a retry policy is needed to record failures")
    now = utcnow()
    # Failures grouped by (error, attempts): same text, same backoff, one statement each.
    groups: dict[tuple[str, int], list[int]] = {}
    for f in failed:
        for event in f.events:
            groups.setdefault((f.error[:ERROR_MAX_CHARS], event.attempts), []).append(event.id)
    states: list[tuple[int, str]] = []
    with _writing() as connection:
        ours = [row_id for s in synced for row_id in s.ids]
        processed = connection.execute(_MARK_OURS, {"ids": ours, "token": token, "done_at": now}).rowcount if ours else 0
        for s in synced:
            if s.customer_id is not None and s.covers_upto is not None:
                params = {"customer": s.customer_id, "covers_upto": s.covers_upto, "done_at": now}
                processed += connection.execute(_MARK_COVERED, params).rowcount
            if s.notices:
                outbox.insert_rows(connection, list(s.notices))
        for (error, attempts), ids in groups.items():
            final = attempts >= policy.max_attempts
            state = FAILED if final else PENDING
            params = {"ids": ids, "token": token, "error": error, "new_state": state,
                      "retry_at": None if final else now + policy.backoff(attempts)}
            states += [(row_id, state) for row_id in connection.execute(_MARK_FAILED, params).scalars()]
    return processed, states


_RELEASE = update(T).where(_OURS).values(attempts=_ATTEMPTS_REFUNDED, **_UNCLAIMED)
# SKIP LOCKED: rows the worker is recording right now are skipped (they are being marked), so
# the heartbeat never waits for, or deadlocks with, its own pass's writes on PostgreSQL.
_RENEW = update(T).where(T.c.id.in_(select(T.c.id).where(_OURS).with_for_update(skip_locked=True))).values(
    claimed_until=bindparam("until"),
)


_MARKED = _TOKEN + bindparam("mark", type_=String())
# Rows already bearing the mark are left alone: each round of slots filled names every row beside it again.
_START = update(T).where(_OURS, T.c.claimed_by != _MARKED).values(claimed_by=_MARKED)


def start(ids: Iterable[int], token: str, *, alone: bool, beside: Iterable[int] = ()) -> int:
    """Mark claimed events as in flight (their customer's sync is starting): should the process die now,
    the death is charged to them; events of the claim never started get their attempt back.

    `alone`: the process has no other sync in flight or unrecorded, so a death is theirs. Otherwise
    `beside` are the events of those other syncs, marked too: their deaths may not be their own either.
    """
    ids = [*ids, *beside]
    mark = STARTED_ALONE if alone else STARTED_BESIDE
    with _writing() as connection:
        return connection.execute(_START, {"ids": ids, "token": token, "mark": mark}).rowcount


def release(ids: Iterable[int], token: str) -> int:
    """Give claimed events back untried (the lease is running out): not counted as an attempt."""
    with _writing() as connection:
        return connection.execute(_RELEASE, {"ids": list(ids), "token": token}).rowcount


def renew(ids: Iterable[int], token: str, until: datetime) -> int:
    """Extend the lease of the claim `token` on these rows (the worker's heartbeat); how many it extended."""
    with _writing() as connection:
        return connection.execute(_RENEW, {"ids": list(ids), "token": token, "until": until}).rowcount


_HOLDERS = select(T.c.claimed_by).where(T.c.state == PENDING, T.c.claimed_by.is_not(None)).distinct()
_DEAD_HOLDERS = and_(T.c.state == PENDING, T.c.claimed_by.in_(bindparam("tokens", expanding=True)))
_RELEASE_HOLDERS = update(T).where(_DEAD_HOLDERS).values(attempts=_ATTEMPTS_REFUNDED, **_UNCLAIMED)
_GIVE_UP_HOLDERS = update(T).where(_DEAD_HOLDERS, _DIED_AT_LIMIT).values(**_DIED).returning(*_RETURNING)


def release_orphans(max_attempts: int) -> tuple[int, list[Claimed]]:
    """Free at once the claims of dead processes of this host (`owners.is_dead`); how many events are
    due again, and the events given up instead.

    For a worker starting up: the events its host's killed processes (its own previous
    incarnation among them) never finished are due again without waiting for their
    leases, and so are the newer events of those customers. The attempt stays counted for the
    events whose sync had started (`start`): it may have run, and an event that kills its process
    each time must still reach the attempt limit: at `max_attempts`, if its sync was the only one in
    flight in its claim, it becomes `failed` (`DIED_ERROR`), not due again (beside others, it is
    tried once more alone: `claim_alone`). Events the claim never started get their attempt back.
    """
    with get_engine().connect() as connection:
        dead = [token for token in connection.execute(_HOLDERS).scalars() if owners.is_dead(token)]
    if not dead:
        return 0, []
    with _writing() as connection:
        given_up = connection.execute(_GIVE_UP_HOLDERS, {"tokens": dead, "max_attempts": max_attempts}).all()
        return connection.execute(_RELEASE_HOLDERS, {"tokens": dead}).rowcount, _sorted(given_up)


def file_under(key: str, customer_id: str) -> int:
    """Events stored under another key (a disputed charge's id) belong to `customer_id`, now known:
    filed under it, as the console lists an org's events by its customer. Returns how many."""
    with _writing() as connection:
        return connection.execute(update(T).where(T.c.customer_id == key).values(customer_id=customer_id)).rowcount


def replay(event_id: str | int) -> bool:
    """Queue an event again (an admin's "replay"): pending, attempts reset, due now.

    `event_id` is the Stripe id (evt_...) or the row id. Any state may be replayed: a
    processed event re-syncs its customer, which is always safe. Returns False if unknown.
    """
    key = T.c.id == event_id if isinstance(event_id, int) else T.c.stripe_event_id == event_id
    statement = update(T).where(key).values(state=PENDING, attempts=0, next_attempt_at=None, processed_at=None, **_UNCLAIMED)
    with _writing() as connection:
        found = connection.execute(statement).rowcount == 1
    if found:
        notify()
    return found


def counts() -> dict[str, int]:
    """How many events are in each state (for admins, logs and the benchmark)."""
    with get_engine().connect() as connection:
        rows = connection.execute(select(T.c.state, func.count()).group_by(T.c.state)).all()
    return {state: count for state, count in rows}


@dataclass(frozen=True)
class EventSummary:
    """One stored event as an admin page or command shows it (no payload)."""

    id: int
    stripe_event_id: str
    type: str
    customer_id: str | None
    state: str
    attempts: int
    received_at: datetime
    processed_at: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None


def recent(state: str | None = None, limit: int = 50) -> list[EventSummary]:
    """The newest stored events, optionally of one state (e.g. "failed", for the admin to replay)."""
    columns = [T.c[name] for name in EventSummary.__dataclass_fields__]
    query = select(*columns).order_by(T.c.id.desc()).limit(limit)
    if state is not None:
        query = query.where(T.c.state == state)
    with get_engine().connect() as connection:
        return [EventSummary(*row) for row in connection.execute(query)]
