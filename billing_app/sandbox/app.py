"""HTTP plumbing: auth, idempotency, parameter checks, errors, routing; plus sandbox-only routes."""

from __future__ import annotations

import base64
import collections
import contextlib
import fnmatch
import hashlib
import json
import logging
import re
import secrets
import traceback

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import pages
from . import resources  # noqa: F401  (registers the API routes)
from .api import ROUTES, Ctx
from .errors import StripeError
from .params import check, parse_form
from .objects import API_VERSION, render
from .recorder import Recorder
from .resources.invoices import schedule_refund_failures
from .store import Store
from .webhooks import Dispatcher

log = logging.getLogger("billing_app.sandbox")

IDEMPOTENCY_CAP = 20000

# Literal paths before parameterised ones, so /v1/customers/search beats /v1/customers/{id}.
_ROUTES = sorted(ROUTES, key=lambda r: r[1].pattern.count("(?P"))


class Sandbox:
    def __init__(self, store: Store, public_url: str | None = None, recorder: Recorder | None = None):
        self.store = store
        self.public_url = public_url
        self.dispatcher = Dispatcher(store)
        self.recorder = recorder
        store.on_event = self._on_event
        store.on_reset = self.dispatcher.clear
        schedule_refund_failures(store)  # once events can be sent: the failures a restart would forget
        if public_url:
            store.base_url = public_url
        self.idem: collections.OrderedDict = collections.OrderedDict()

    def _on_event(self, ev: dict) -> None:
        if self.recorder:
            self.recorder.event(render(self.store, ev))
        self.dispatcher.enqueue_event(ev)

    def base_url(self, request: Request) -> str:
        if self.public_url:
            return self.public_url
        return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"

    # --- the Stripe API ------------------------------------------------------------------------
    async def api(self, request: Request) -> Response:
        req_id = "req_" + secrets.token_hex(7)
        try:
            status, body, extra_headers = await self._api(request, req_id)
        except StripeError as exc:
            status, body, extra_headers = exc.status, exc.body(), {}
        except Exception:  # noqa: BLE001 - surface as Stripe's api_error, never a bare 500 page
            log.error("sandbox error\n%s", traceback.format_exc())
            status, body, extra_headers = 500, {"error": {"type": "api_error",
                                                          "message": "Sandbox internal error: " + traceback.format_exc(limit=1).strip().splitlines()[-1]}}, {}
        headers = {"Request-Id": req_id, "Stripe-Version": API_VERSION, **extra_headers}
        return Response(body if isinstance(body, bytes) else json.dumps(body).encode(), status, headers, "application/json")

    def _auth(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        key = ""
        if header.lower().startswith("bearer "):
            key = header[7:].strip()
        elif header.lower().startswith("basic "):
            try:
                key = base64.b64decode(header[6:]).decode().split(":", 1)[0]
            except Exception:  # noqa: BLE001
                key = ""
        if not key:
            raise StripeError(401, "invalid_request_error", None,
                              "You did not provide an API key. You need to provide your API key in the Authorization header, "
                              "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').")
        if not key.startswith("sk_test_"):
            keep = min(8, len(key) // 3)
            masked = key[:keep] + "*" * max(4, len(key) - keep - 4) + key[-4:]
            raise StripeError(401, "invalid_request_error", None, f"Invalid API Key provided: {masked}")
        return key

    async def _api(self, request: Request, req_id: str):
        key = self._auth(request)
        method = request.method
        path = request.url.path
        raw = (await request.body()).decode() if method == "POST" else request.url.query
        match = None
        for m, pattern, fn, spec, extra in _ROUTES:
            if m == method:
                hit = pattern.match(path)
                if hit:
                    match = (fn, spec, extra, hit.groupdict())
                    break
        if match is None:
            raise StripeError(404, "invalid_request_error", None,
                              f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.")
        fn, spec, extra, path_params = match
        idem_key = request.headers.get("idempotency-key") if method in ("POST", "DELETE") else None
        fingerprint = hashlib.sha256(f"{method} {path} {raw}".encode()).hexdigest()
        store = self.store
        with store.lock:
            if idem_key:
                slot = (key, idem_key)
                prior = self.idem.get(slot)
                if prior is not None:
                    if prior[0] != fingerprint:
                        raise StripeError(400, "idempotency_error", None,
                                          "Keys for idempotent requests can only be used with the same parameters they were first "
                                          f"used with. Try using a key other than '{idem_key}' if you meant to execute a different request.")
                    return prior[1], prior[2], {"Idempotent-Replayed": "true", "Original-Request": prior[3]}
            store.base_url = self.base_url(request)
            store.current_request = {"id": req_id, "idempotency_key": idem_key}
            began = False  # Stripe keeps nothing under the key for a request whose parameters fail validation
            try:
                params = parse_form(raw)
                check(params, spec, extra)
                began = True
                failing = _take_failure(store, method, path)
                if failing == "before":
                    raise _injected_failure()
                body = fn(Ctx(store, params, dict(request.headers)), **path_params)
                if failing == "after":
                    raise _injected_failure()
                status = 200
            except StripeError as exc:
                status, body = exc.status, exc.body()
            finally:
                store.current_request = None
            encoded = json.dumps(body).encode()
            if self.recorder:
                self.recorder.request(method, path, raw, status, encoded)
            # Stripe keeps every answer under its key for 24 h, a 500 too, and replays it to retries.
            if idem_key and began:
                self.idem[(key, idem_key)] = (fingerprint, status, encoded, req_id)
                while len(self.idem) > IDEMPOTENCY_CAP:
                    self.idem.popitem(last=False)
            store.touch()
        return status, encoded, {}

    # --- sandbox-only routes -------------------------------------------------------------------
    def control(self, handler):
        """A `/_sandbox/*` control route: the sandbox key, and JSON for a POST, are required, so a
        web page cannot reset or reconfigure the sandbox with a cross-site form post."""

        async def guarded(request: Request) -> Response:
            try:
                self._auth(request)
            except StripeError as exc:
                return JSONResponse(exc.body(), exc.status)
            if request.method == "POST" and request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
                return JSONResponse({"error": "send Content-Type: application/json"}, 415)
            return await handler(request)

        return guarded

    async def reset(self, request: Request) -> Response:
        self.store.reset()
        self.idem.clear()
        return JSONResponse({"ok": True})

    async def config(self, request: Request) -> Response:
        """GET shows, POST (JSON body) changes the sandbox settings (retry schedules, chaos, ...)."""
        if request.method == "POST":
            try:
                changes = await request.json()
            except ValueError:
                return JSONResponse({"error": "send a JSON object"}, 400)
            unknown = set(changes) - set(self.store.settings)
            if unknown:
                return JSONResponse({"error": f"unknown settings: {sorted(unknown)}"}, 400)
            problem = validate_settings(changes)
            if problem:
                return JSONResponse({"error": problem}, 400)
            with self.store.lock:
                self.store.settings.update(changes)
                self.store.touch()
        return JSONResponse(self.store.settings)

    async def deliveries(self, request: Request) -> Response:
        return JSONResponse({"pending": self.dispatcher.pending(), "attempts": list(self.dispatcher.attempts)})

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "api_version": API_VERSION})


def _take_failure(store: Store, method: str, path: str) -> str | None:
    """Use up the first `fail_next` entry this request matches: "before" or "after" (its work)."""
    for i, entry in enumerate(store.settings["fail_next"]):
        if fnmatch.fnmatchcase(f"{method} {path}", entry.removesuffix(" after")):
            del store.settings["fail_next"][i]
            return "after" if entry.endswith(" after") else "before"
    return None


def _injected_failure() -> StripeError:
    return StripeError(500, "api_error", None, "An unknown error occurred (injected by the sandbox's fail_next).")


def validate_settings(changes: dict) -> str | None:
    def numbers(v):
        return isinstance(v, list) and all(isinstance(x, (int, float)) and x >= 0 for x in v)

    if "after_final_failure" in changes and changes["after_final_failure"] not in ("cancel", "unpaid", "past_due"):
        return "after_final_failure must be cancel, unpaid or past_due"
    if "chaos" in changes and not (isinstance(changes["chaos"], list) and set(changes["chaos"]) <= {"dup", "shuffle", "delay"}):
        return "chaos must be a list of dup, shuffle, delay"
    for key in ("webhook_retry_schedule", "payment_retry_days"):
        if key in changes and not numbers(changes[key]):
            return f"{key} must be a list of non-negative numbers"
    if "refund_failure_seconds" in changes and not (isinstance(changes["refund_failure_seconds"], (int, float))
                                                    and changes["refund_failure_seconds"] >= 0):
        return "refund_failure_seconds must be a non-negative number of seconds"
    if "fail_next" in changes and not (isinstance(changes["fail_next"], list)
                                       and all(isinstance(e, str) and e.split(" ", 1)[0] in ("GET", "POST", "DELETE")
                                               for e in changes["fail_next"])):
        return 'fail_next must be a list of "METHOD /v1/path" patterns (optionally ending in " after")'
    if "webhook_timeout" in changes and not (isinstance(changes["webhook_timeout"], (int, float)) and changes["webhook_timeout"] > 0):
        return "webhook_timeout must be a positive number of seconds"
    return None


def create_app(store: Store | None = None, public_url: str | None = None, record: str | None = None) -> Starlette:
    store = store or Store()
    sb = Sandbox(store, public_url, Recorder(record) if record else None)
    methods = ["GET", "POST", "DELETE", "PUT", "PATCH"]
    routes = [
        Route("/v1/{path:path}", sb.api, methods=methods),
        Route("/_sandbox/reset", sb.control(sb.reset), methods=["POST"]),
        Route("/_sandbox/config", sb.control(sb.config), methods=["GET", "POST"]),
        Route("/_sandbox/deliveries", sb.control(sb.deliveries), methods=["GET"]),
        Route("/_sandbox/health", sb.health, methods=["GET"]),
        *pages.routes(sb),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        sb.dispatcher.stop()
        store.save()  # flush --data on a clean shutdown (SIGINT/SIGTERM)
        if sb.recorder:
            sb.recorder.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sandbox = sb
    return _collapse_slashes(app)


def _collapse_slashes(app):
    """A base address with a trailing slash makes the SDK ask for //v1/...; serve it anyway."""

    async def wrapped(scope, receive, send):
        if scope["type"] == "http" and "//" in scope["path"]:
            path = re.sub(r"/{2,}", "/", scope["path"])
            scope = dict(scope, path=path, raw_path=path.encode())
        await app(scope, receive, send)

    wrapped.state = app.state
    return wrapped
