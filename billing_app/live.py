"""Live updates: when a webhook changes an org's billing, its open billing pages refresh.

Push, not poll: a page registers its browser (client token) and state class for the org on
load; after the webhook worker syncs a customer it calls `notify(org_id)` (a page's own action
does too: `notify_after_action`), and each registered
page re-reads the mirror inside its state through Reflex's `app.modify_state`, which sends the
change down that browser's socket. The registry is in memory, in the backend process whose
socket the page's events arrive on (a page that reconnects elsewhere loads, so registers, again).

One process (no REDIS_URL): `notify` refreshes this process's pages directly.

Several processes (REDIS_URL): `notify` publishes the org id on the org's Redis channel
(`<REDIS_KEY_PREFIX>live:org:<id>`) from whatever process calls it (a backend or a separate
`worker`), and every backend runs `run_subscriber` (a lifespan task), which refreshes the pages it
holds for that org. Reflex 0.10 could route a delta to a socket on another backend itself (its
RedisTokenManager's "lost and found" channel), but only from a process that runs the app and
knows which tokens show the org; a separate worker process does neither, so the org id travels
instead and each backend refreshes its own pages.

A notice refreshes the org's pages a few at a time, each page's database reads in a thread (never
on the event loop) while its state is held; each page checks its own session then, and the
billing view and the seats are read once per org (and role) for all the pages of the notice.

Redis down: `notify` refreshes this process's pages (the pages on other processes see the change
at their next load), and once the subscriber is connected again it refreshes every page it holds,
so nothing missed meanwhile stays stale. `/api/ready` reports the outage.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections import Counter, OrderedDict

log = logging.getLogger(__name__)
MAX_WATCHERS_PER_ORG = 100
REFRESH_CONCURRENCY = 4  # pages (browser tabs) of one org refreshed at once (each holds a thread and a database connection)
_watchers: dict[int, OrderedDict[tuple[str, type], str]] = {}  # org -> (client token, state class) -> session hash
_lock = threading.Lock()


def watch(org_id: int, client_token: str, state_cls: type, session_hash: str = "") -> None:
    """Remember that this browser shows `state_cls` for the org, and the session it loaded with.

    When the org has more than MAX_WATCHERS_PER_ORG page parts, the session with the most tabs gives
    up its oldest tab (all its parts): one user (or one client opening sockets by the hundred)
    cannot push out everyone else's pages."""
    if not client_token:
        return
    with _lock:
        watchers = _watchers.setdefault(org_id, OrderedDict())
        watchers.pop((client_token, state_cls), None)
        watchers[(client_token, state_cls)] = session_hash
        while len(watchers) > MAX_WATCHERS_PER_ORG:
            tabs = dict.fromkeys((token, holder) for (token, _cls), holder in watchers.items())
            tabs_per_session = Counter(holder for _token, holder in tabs)
            most = max(tabs_per_session, key=tabs_per_session.__getitem__)
            oldest = next(token for (token, _cls), holder in watchers.items() if holder == most)
            for key in [key for key in watchers if key[0] == oldest]:
                del watchers[key]


def watchers_of(org_id: int) -> list[tuple[str, type, str]]:
    """(client token, state class, session hash) of each page part registered for the org."""
    with _lock:
        return [(token, cls, session_hash) for (token, cls), session_hash in _watchers.get(org_id, {}).items()]


def _forget(org_id: int, client_token: str, state_cls: type) -> None:
    with _lock:
        _watchers.get(org_id, OrderedDict()).pop((client_token, state_cls), None)


# --- Redis ----------------------------------------------------------------------------

def _redis_url() -> str | None:
    from billing_app.settings import get_settings

    return get_settings().redis_url


def channel(org_id: int | str) -> str:
    """The org's channel; `channel("*")` is the pattern every backend subscribes to."""
    from billing_app.settings import get_settings

    return f"{get_settings().redis_key_prefix}live:org:{org_id}"


# One client per event loop: a redis.asyncio connection belongs to the loop that opened it.
_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _client():
    import redis.asyncio as redis

    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        # Short timeouts: a Redis that hangs must not hold up the worker that calls notify.
        client = _clients[loop] = redis.Redis.from_url(_redis_url(), socket_connect_timeout=2, socket_timeout=2)
    return client


async def notify(org_id: int) -> int:
    """Tell every backend that the org's billing changed.

    Returns how many backends were told (Redis), or how many pages this process refreshed
    (no Redis, or Redis unreachable).
    """
    if _redis_url():
        try:
            return int(await _client().publish(channel(org_id), str(org_id)))
        except Exception as error:  # Redis down: this process's pages still refresh
            log.warning("live push over Redis failed (%s); refreshing this process's pages only", error)
    return await refresh_local(org_id)


async def notify_after_action(org_id: int) -> None:
    """`notify`, after a page's own action changed the org's billing or team. The action synced the
    mirror itself, so the webhook's later sync finds nothing new and pushes nothing: without this
    the org's other open pages (another tab, another admin) stay stale. Never fails the action."""
    try:
        await notify(org_id)
    except Exception as error:  # a refresh is a nicety
        log.warning("live push after a page action failed for org %s: %s", org_id, error)


async def refresh_local(org_id: int) -> int:
    """Refresh every page of the org registered in this process. Returns how many were refreshed.

    Up to REFRESH_CONCURRENCY pages at once; each page's re-read of the mirror (database
    queries) runs in a thread while its state is held, never on the event loop, which keeps
    serving every other page meanwhile.
    """
    import reflex as rx
    from reflex.utils.prerequisites import get_and_validate_app

    by_page: dict[str, list[type]] = {}
    for client_token, state_cls, _session_hash in watchers_of(org_id):
        by_page.setdefault(client_token, []).append(state_cls)
    if not by_page:  # e.g. a `worker` process, which holds no page (and runs no app)
        return 0
    app = get_and_validate_app().app
    owned = _locally_connected(app)
    slots = asyncio.Semaphore(REFRESH_CONCURRENCY)
    shared: dict = {}  # what one page read for this notice, for the org's other pages (read_once)

    async def refresh(client_token: str, state_classes: list[type]) -> int:
        if owned is not None and not owned(client_token):
            # Its socket is gone from this backend (closed, or reconnected to another one,
            # where its page loaded and registered again).
            for state_cls in state_classes:
                _forget(org_id, client_token, state_cls)
            return 0
        async with slots:
            try:
                # One lock, one read and write of the page's state and one delta for all its parts.
                async with app.modify_state(rx.BaseStateToken(ident=client_token, cls=state_classes[0])) as root:
                    page_states = [await root.get_state(state_cls) for state_cls in state_classes]
                    await _check_session(page_states[0], shared)
                    await asyncio.to_thread(_on_billing_changed, page_states, shared)
                return len(state_classes)
            except Exception:  # e.g. the database for a moment: the page stays registered for the next change
                log.exception("live update failed for one page of org %s", org_id)
                return 0

    done = await asyncio.gather(*(refresh(token, classes) for token, classes in by_page.items()))
    return sum(done)


class _SessionChecks:
    """The sessions of the pages whose states are held at this moment, read together: one read (two
    queries) answers every page that asked while the read before it ran, so 1,000 pages cost a
    handful of reads, each made after its pages' states were taken (group commit, as databases do)."""

    def __init__(self):
        self.waiting: dict[str, list[asyncio.Future]] = {}
        self.reader: asyncio.Task | None = None  # held: the loop keeps only a weak reference to a task

    async def answer(self, session_hash: str, read_many):
        future = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(session_hash, []).append(future)
        if self.reader is None:
            self.reader = asyncio.create_task(self._read_while_asked(read_many))
        return await future

    async def _read_while_asked(self, read_many) -> None:
        try:
            while self.waiting:
                asked, self.waiting = self.waiting, {}
                try:
                    found = await asyncio.to_thread(read_many, set(asked))
                    answers = {session_hash: found[session_hash] for session_hash in asked}
                except Exception as error:  # the database, for a moment: each of these refreshes fails alone
                    for future in (future for futures in asked.values() for future in futures if not future.done()):
                        future.set_exception(error)
                    continue
                for session_hash, futures in asked.items():
                    for future in futures:
                        if not future.done():  # done: its refresh was cancelled meanwhile
                            future.set_result(answers[session_hash])
        finally:
            self.reader = None


_session_checks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # one per event loop


async def _check_session(page_state, shared: dict) -> None:
    """The page's session, read now that its state is held (with the other pages' at this moment),
    kept in `shared` for its parts (AuthState._actor)."""
    checks = _session_checks.setdefault(asyncio.get_running_loop(), _SessionChecks())
    session_hash = page_state._session_hash
    shared[page_state._notice_key()] = await checks.answer(session_hash, page_state.check_sessions)


def read_once(shared: dict, key, read):
    """What `read()` returns, read once per notice for all the pages that ask with the same `key`;
    pages asking at the same moment (in other threads) wait for the first one's read."""
    with shared.setdefault(("lock", key), threading.Lock()):  # setdefault: one lock, whoever comes first
        if key not in shared:
            shared[key] = read()
    return shared[key]


def _on_billing_changed(page_states: list, shared: dict) -> None:
    """Each registered part of the page re-reads what it shows (`_on_billing_changed(shared=...)`:
    it checks its own session and role, and may reuse what another page read for this notice)."""
    for page_state in page_states:
        page_state._on_billing_changed(shared=shared)


def _locally_connected(app):
    """A test `token -> has a socket on this backend` (Reflex's token manager knows, with Redis or
    without); None when the app has no socket namespace (yet)."""
    namespace = app.event_namespace
    manager = getattr(namespace, "_token_manager", None)
    if manager is None:
        return None
    instance = manager.instance_id

    def owned(token: str) -> bool:
        record = manager.token_to_socket.get(token)
        return record is not None and record.instance_id == instance

    return owned


class _Refresher:
    """Runs at most one refresh per org at a time; a notice during one makes exactly one more."""

    def __init__(self):
        self.running: dict[int, asyncio.Task] = {}
        self.again: set[int] = set()

    def request(self, org_id: int) -> None:
        if org_id in self.running:
            self.again.add(org_id)
            return
        self.running[org_id] = asyncio.create_task(self._run(org_id))

    async def _run(self, org_id: int) -> None:
        try:
            while True:
                self.again.discard(org_id)
                try:
                    await refresh_local(org_id)
                except Exception as error:  # never let one org's failure stop the subscriber
                    log.warning("live refresh of org %s failed: %s", org_id, error)
                if org_id not in self.again:
                    return
        finally:
            self.running.pop(org_id, None)

    async def close(self) -> None:
        for task in list(self.running.values()):
            task.cancel()
        await asyncio.gather(*self.running.values(), return_exceptions=True)


async def run_subscriber() -> None:
    """Backend lifespan task: refresh this process's pages of each org announced on Redis.

    Without REDIS_URL it returns at once (one process: `notify` refreshes directly). Notices
    published while Redis was away are lost: once subscribed again, every page held is refreshed.
    """
    url = _redis_url()
    if not url:
        return
    from billing_app import pubsub

    refresher = _Refresher()

    def on_notice(data: bytes) -> None:
        try:
            refresher.request(int(data))
        except ValueError:
            log.warning("live: ignored a malformed notice %r", data)

    def catch_up() -> None:
        with _lock:
            orgs = list(_watchers)
        for org_id in orgs:
            refresher.request(org_id)

    try:
        await pubsub.follow(url, channel("*"), on_notice, on_resubscribed=catch_up)
    finally:
        await refresher.close()
