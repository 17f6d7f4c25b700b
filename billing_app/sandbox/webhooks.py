"""Asynchronous, signed, retried webhook delivery.

Events are queued when emitted and POSTed by worker threads, so an API call never
waits on the receiver (Stripe doesn't either).  Each delivery is signed exactly as
Stripe signs it (``Stripe-Signature: t=<ts>,v1=<hmac-sha256 of "t.payload">``),
retried with a compressed backoff on non-2xx or timeout, and the chaos option
duplicates, shuffles and delays deliveries so receivers can prove idempotency.
"""

from __future__ import annotations

import heapq
import hashlib
import hmac
import itertools
import json
import random
import threading
import time

import httpx

from .objects import render


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    sig = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={sig}"


class Dispatcher:
    def __init__(self, store, workers: int = 4):
        self.store = store
        self._heap: list = []
        self._cv = threading.Condition()
        self._counter = itertools.count()
        self._generation = 0  # bumped on reset, so queued deliveries of old state are dropped
        self._stop = False
        self.attempts: list[dict] = []  # recent delivery log, for /_sandbox/deliveries
        self._in_flight = 0  # popped and being posted: still pending until its attempt is logged
        self._threads = [threading.Thread(target=self._run, name=f"sandbox-webhooks-{i}", daemon=True) for i in range(workers)]
        for t in self._threads:
            t.start()

    # Called by the store (under its lock) for every new event.
    def enqueue_event(self, ev: dict) -> None:
        endpoints = self.store.endpoints_for(ev["type"])
        if not endpoints:
            return
        payload = json.dumps(render(self.store, ev), indent=2)  # the snapshot at emission time, like Stripe
        chaos = set(self.store.settings.get("chaos") or [])
        now = time.monotonic()
        for we in endpoints:
            copies = 2 if "dup" in chaos else 1
            for n in range(copies):
                due = now
                if "shuffle" in chaos:
                    due += random.uniform(0, 0.3)
                if "delay" in chaos:
                    due += random.uniform(0.2, 1.0)
                if n:
                    due += random.uniform(0, 0.2)
                self._push(due, {"endpoint": we["id"], "url": we["url"], "secret": we["_secret"], "event": ev["id"],
                                 "type": ev["type"], "payload": payload, "attempt": 1, "counted": n == 0})

    def _push(self, due: float, job: dict) -> None:
        with self._cv:
            job["generation"] = self._generation
            heapq.heappush(self._heap, (due, next(self._counter), job))
            self._cv.notify()

    def clear(self) -> None:
        with self._cv:
            self._heap.clear()
            self._generation += 1
            self.attempts.clear()

    def pending(self) -> int:
        """Deliveries queued or being posted right now (0 means every attempt so far is in `attempts`)."""
        with self._cv:
            return len(self._heap) + self._in_flight

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()

    def _run(self) -> None:
        client = httpx.Client(timeout=self.store.settings.get("webhook_timeout", 5.0))
        while True:
            with self._cv:
                while not self._stop and (not self._heap or self._heap[0][0] > time.monotonic()):
                    wait = None if not self._heap else max(0.0, self._heap[0][0] - time.monotonic())
                    self._cv.wait(wait)
                if self._stop:
                    return
                _, _, job = heapq.heappop(self._heap)
                if job["generation"] != self._generation:
                    continue
                self._in_flight += 1
            try:
                self._deliver(client, job)
            finally:
                with self._cv:
                    self._in_flight -= 1

    def _deliver(self, client: httpx.Client, job: dict) -> None:
        payload = job["payload"]
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": sign(payload, job["secret"]),
        }
        status, error = None, None
        try:
            resp = client.post(job["url"], content=payload.encode(), headers=headers,
                               timeout=float(self.store.settings.get("webhook_timeout", 5.0)))
            status = resp.status_code
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        ok = status is not None and 200 <= status < 300
        with self._cv:
            self.attempts.append({"event": job["event"], "type": job["type"], "endpoint": job["endpoint"],
                                  "attempt": job["attempt"], "status": status, "error": error, "at": time.time()})
            del self.attempts[:-1000]
            stale = job["generation"] != self._generation
        if stale:
            return
        if ok:
            if job["counted"]:
                with self.store.lock:
                    ev = self.store.get("event", job["event"])
                    if ev and ev["pending_webhooks"] > 0:
                        ev["pending_webhooks"] -= 1
            return
        schedule = self.store.settings.get("webhook_retry_schedule") or []
        if job["attempt"] <= len(schedule):
            delay = float(schedule[job["attempt"] - 1])
            retry = dict(job, attempt=job["attempt"] + 1)
            self._push(time.monotonic() + delay, retry)
