"""The sandbox's state: every object by type and id, events, and settings.

One re-entrant lock guards everything: requests are short, so serialising them is
simpler than fine-grained locking and still far above the throughput the app needs.
State is plain JSON-able dicts so ``--data FILE`` can persist it as-is.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from typing import Callable

from .ids import type_of_id
from .objects import event, render

DEFAULT_SETTINGS = {
    # Webhook delivery retries, in seconds after the previous attempt (Stripe: up to 3 days).
    "webhook_retry_schedule": [0.5, 1, 2, 4, 8],
    "webhook_timeout": 5.0,
    "chaos": [],  # any of "dup", "shuffle", "delay"
    # Failed renewal payments: retry this many days after the first failure ...
    "payment_retry_days": [3, 5, 7],
    # ... and when the last retry fails: "cancel" (Stripe's default), "unpaid" or "past_due".
    "after_final_failure": "cancel",
    # A refund of the refund-failing test card (4000 0000 0000 5126) fails this many seconds after it was made.
    "refund_failure_seconds": 2.0,
    # Stripe failing mid-request: the next request matching each pattern ("POST /v1/customers",
    # "POST /v1/subscriptions/*") answers 500 api_error, before doing anything or, with " after"
    # at the end, after doing its work. Each entry is used once.
    "fail_next": [],
}


class Store:
    def __init__(self, data_path: str | None = None, settings: dict | None = None):
        self.lock = threading.RLock()
        self.data_path = data_path
        self.base_settings = {**copy.deepcopy(DEFAULT_SETTINGS), **(settings or {})}
        self.builtin_endpoints: list[dict] = []  # from --webhook-url; survive reset
        self.on_event: Callable[[dict], None] | None = None
        self.on_reset: Callable[[], None] | None = None
        self.base_url = "http://127.0.0.1"
        self._dirty = False
        self._seq = 0
        self.current_request: dict | None = None  # set while an API request runs, for event.request
        self.reset(load=True)
        if data_path:
            t = threading.Thread(target=self._saver, name="sandbox-saver", daemon=True)
            t.start()

    # --- lifecycle ---------------------------------------------------------------------------
    def reset(self, load: bool = False) -> None:
        with self.lock:
            self.objects: dict[str, dict[str, dict]] = {}
            self.settings = copy.deepcopy(self.base_settings)
            self._seq = 0
            if load and self.data_path and os.path.exists(self.data_path):
                with open(self.data_path) as f:
                    saved = json.load(f)
                self.objects = saved.get("objects", {})
                self.settings.update(saved.get("settings", {}))
                self._seq = saved.get("seq", 0)
            for ep in self.builtin_endpoints:
                self.put(copy.deepcopy(ep))
            self._dirty = True
        if self.on_reset and not load:
            self.on_reset()

    def snapshot(self) -> dict:
        with self.lock:
            return {"objects": copy.deepcopy(self.objects), "settings": self.settings, "seq": self._seq}

    def save(self) -> None:
        if not self.data_path:
            return
        data = self.snapshot()
        tmp = self.data_path + ".tmp"
        os.makedirs(os.path.dirname(os.path.abspath(self.data_path)), exist_ok=True)
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self.data_path)  # atomic, so a crash never leaves half a file

    def _saver(self) -> None:
        # Debounced: writing the whole state on every request would cap throughput.
        while True:
            time.sleep(0.3)
            if self._dirty:
                self._dirty = False
                try:
                    self.save()
                except Exception:  # noqa: BLE001 - a failed save must not kill the server
                    self._dirty = True

    # --- objects -----------------------------------------------------------------------------
    def seq(self) -> int:
        self._seq += 1
        return self._seq

    def put(self, obj: dict) -> dict:
        kind = obj["object"]
        obj.setdefault("_seq", self.seq())
        self.objects.setdefault(kind, {})[obj["id"]] = obj
        self._dirty = True
        return obj

    def touch(self) -> None:
        self._dirty = True

    def get(self, kind: str, id_: str) -> dict | None:
        return self.objects.get(kind, {}).get(id_)

    def find(self, id_: str) -> dict | None:
        kind = type_of_id(id_)
        if kind:
            return self.get(kind, id_)
        # Coupon ids are the merchant's own (or 8 random characters): no prefix to go by.
        return self.get("coupon", id_) if isinstance(id_, str) else None

    def delete(self, kind: str, id_: str) -> None:
        self.objects.get(kind, {}).pop(id_, None)
        self._dirty = True

    def all(self, kind: str) -> list[dict]:
        return list(self.objects.get(kind, {}).values())

    # --- events ------------------------------------------------------------------------------
    def endpoints_for(self, type_: str) -> list[dict]:
        """The enabled webhook endpoints that listen to events of this type."""
        return [
            we for we in self.all("webhook_endpoint")
            if we["status"] == "enabled" and ("*" in we["enabled_events"] or type_ in we["enabled_events"])
        ]

    def emit(self, type_: str, obj: dict, previous: dict | None = None, request: dict | None = None, created: int | None = None) -> dict:
        """Record the event Stripe would send; the renderer snapshots the object now."""
        data = {"object": render(self, obj)}
        if previous:
            data["previous_attributes"] = previous
        endpoints = self.endpoints_for(type_)
        ev = event(self, type_, data, pending=len(endpoints), request=request or self.current_request, created=created)
        self.put(ev)
        if self.on_event:
            self.on_event(ev)
        return ev
