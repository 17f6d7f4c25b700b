"""Password hashing with argon2id (argon2-cffi), the password rule, and the bounded hashing pool.

argon2id costs about 0.1 s of CPU and 64 MiB of memory per hash or check, on purpose. It never
runs on the event loop: every hash and check goes through one small pool of threads
(PASSWORD_HASH_WORKERS, default 2), so a flood of logins can use at most that many cores and
that much memory, and the loop keeps serving pages. At most PASSWORD_HASH_QUEUE more may wait;
beyond that the work is refused at once as busy (429 RATE_LIMITED) instead of piling up.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from billing_app.errors import AppError, ErrorCode, RateLimited
from billing_app.settings import get_settings

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024  # argon2 would hash a megabyte happily; nobody's password is that long
_hasher = PasswordHasher()
# Verified against when the email is unknown, so both paths cost the same time.
_DUMMY_HASH = _hasher.hash("not-a-real-password-only-for-timing")
BUSY_MESSAGE = "The server is busy. Please try again in a few seconds."


def check_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AppError(ErrorCode.WEAK_PASSWORD, f"Password must be at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AppError(ErrorCode.WEAK_PASSWORD, f"Password must be at most {MAX_PASSWORD_LENGTH} characters.")


class _Pool:
    """A fixed number of hashing threads and a bounded number of waiting jobs."""

    def __init__(self, workers: int, queue: int):
        self.workers = workers
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self.slots = threading.BoundedSemaphore(workers + queue)

    def submit(self, fn, *args):
        if not self.slots.acquire(blocking=False):
            raise RateLimited(2, BUSY_MESSAGE)
        try:
            future = self.executor.submit(fn, *args)
        except BaseException:
            self.slots.release()
            raise
        future.add_done_callback(lambda _f: self.slots.release())
        return future


@functools.lru_cache(maxsize=1)
def _pool() -> _Pool:
    settings = get_settings()
    return _Pool(settings.password_hash_workers, settings.password_hash_queue)


def _hash(password: str) -> str:
    return _hasher.hash(password)


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def _not_on_the_loop() -> None:
    """Waiting for the pool inside a coroutine would stall every page: a bug, said loudly.

    Only a running task counts (a Reflex handler runs in one): plain code on a thread whose loop
    is merely running, as Playwright's sync API leaves the main thread, may wait.
    """
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop in this thread
        return
    if task is not None:
        raise RuntimeError("password hashing waited on the event loop; use the *_async functions or asyncio.to_thread")


def hash_password(password: str) -> str:
    """argon2id hash, computed in the pool (the calling thread waits: never the event loop's)."""
    _not_on_the_loop()
    return _pool().submit(_hash, password).result()


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password in the pool; an unknown user (None) costs the same as a known one."""
    _not_on_the_loop()
    if not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
        password = ""
    return _pool().submit(_verify, password_hash, password).result()


async def hash_password_async(password: str) -> str:
    return await asyncio.wrap_future(_pool().submit(_hash, password))


async def verify_password_async(password_hash: str | None, password: str) -> bool:
    if not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
        password = ""
    return await asyncio.wrap_future(_pool().submit(_verify, password_hash, password))

