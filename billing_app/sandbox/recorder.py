"""``--record FILE``: every API request and answer, and every event, as JSON lines.

The test suite turns it on so its conformance check (tests/conformance) can compare
everything the sandbox accepted and returned with the Stripe SDK's own definitions.
Lines are ``{"kind": "request", "method", "path", "raw", "status", "body"}`` (``raw`` is
the form body or query string as sent) and ``{"kind": "event", "body"}``.
"""

from __future__ import annotations

import json
import threading


class Recorder:
    def __init__(self, path: str):
        self._lock = threading.Lock()
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the server's lifetime

    def _write(self, head: dict, body: str) -> None:
        line = json.dumps(head)[:-1] + ', "body": ' + body + "}\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

    def request(self, method: str, path: str, raw: str, status: int, body: bytes) -> None:
        self._write({"kind": "request", "method": method, "path": path, "raw": raw, "status": status}, body.decode())

    def event(self, rendered: dict) -> None:
        self._write({"kind": "event"}, json.dumps(rendered))

    def close(self) -> None:
        with self._lock:
            self._file.close()
