"""The browser session's HTTP routes: log in, sign up, log out. Only these touch the session cookie.

The login and sign-up pages are plain HTML forms posting here, so the session token goes from
this route straight into an HttpOnly cookie and never passes through a Reflex state (states are
persisted). A form POST must come from APP_URL's origin (no login CSRF). Before any database or
argon2 work each attempt passes the rate limits (per client address, per email); argon2 runs in
the bounded pool off the event loop (auth/passwords.py) and the login throttle adds growing delays
per (email, client) (auth/throttle.py).

A browser form gets a 303 redirect: to `next` on success, back to the form with `?error=<key>` on
a refusal (auth/form_errors.py). A JSON request (`Content-Type: application/json`) gets the /api
envelope instead: `{"success": true, "next": ...}`, or the error with its status (429 with
Retry-After when limited).
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from billing_app import limits, routes
from billing_app.api.clients import client_ip
from billing_app.api.rest.errors import envelope
from billing_app.auth import accounts, cookies, form_errors, passwords
from billing_app.auth.tokens import new_token
from billing_app.bodies import read_at_most
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode, RateLimited
from billing_app.settings import get_settings

MAX_FORM_BYTES = 16_384


def _wants_json(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip() == "application/json"


async def _fields(request: Request) -> dict[str, str]:
    body = await read_at_most(request.stream(), MAX_FORM_BYTES)
    if body is None:
        raise AppError(ErrorCode.VALIDATION_ERROR, "The form is too large.")
    if _wants_json(request):
        try:
            data = json.loads(body or b"{}")
        except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep, within the size cap
            raise AppError(ErrorCode.VALIDATION_ERROR, "The request body is not valid JSON.") from None
    else:
        from urllib.parse import parse_qsl

        data = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    if not isinstance(data, dict):
        raise AppError(ErrorCode.VALIDATION_ERROR, "Send the fields as an object.")
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def _app_url(path: str) -> str:
    return get_settings().url(path)


def _refused(request: Request, error: AppError, form_page: str, keep: dict[str, str]) -> Response:
    headers = {"Retry-After": str(error.retry_after)} if isinstance(error, RateLimited) else None
    if _wants_json(request):
        return envelope(error.http_status, error.code, error.message, headers)
    query = {"error": form_errors.key_for(error), **{k: v for k, v in keep.items() if v}}
    if isinstance(error, RateLimited):
        query["retry"] = str(error.retry_after)
    return RedirectResponse(_app_url(f"{form_page}?{urlencode(query)}"), status_code=303, headers=headers)


def _signed_in(request: Request, token: str, next_path: str) -> Response:
    response: Response
    if _wants_json(request):
        response = JSONResponse({"success": True, "next": next_path})
    else:
        response = RedirectResponse(_app_url(next_path), status_code=303)
    cookies.set_session_cookie(response, token)
    return response


async def _posted_form(request: Request) -> tuple[dict[str, str], str]:
    """The posted fields and the safe `next` they ask for, once the form is known to come from this app."""
    if not cookies.same_origin(request):
        raise AppError(ErrorCode.FORBIDDEN, form_errors.MESSAGES["origin"])
    fields = await _fields(request)
    return fields, routes.safe_next(fields.get("next") or request.query_params.get("next"))


def _next_to_keep(next_path: str) -> str:
    """The `next` a refused form carries back (none when it is just the home page)."""
    return next_path if next_path != routes.HOME else ""


def _client(request: Request, device: str | None) -> accounts.Client:
    return accounts.Client(ip=client_ip(request), device=device, user_agent=request.headers.get("user-agent", "")[:255])


async def login(request: Request) -> Response:
    """POST email, password[, next]: the session cookie and a redirect to `next`."""
    next_path = routes.safe_next(request.query_params.get("next"))
    try:
        fields, next_path = await _posted_form(request)
        email = fields.get("email", "").strip().lower()
        await limits.hit_in_thread(limits.LOGIN_IP, client_ip(request))
        await limits.hit_in_thread(limits.LOGIN_EMAIL, email)
        # A browser without a device cookie gets one now; the login remembers it once it succeeds.
        had_device = request.cookies.get(cookies.DEVICE_COOKIE) or None
        device = had_device or new_token("dev")
        client = _client(request, device)

        token = await _login(email, fields.get("password", ""), client)
    except AppError as error:
        keep = {"next": _next_to_keep(next_path)}
        return _refused(request, error, routes.LOGIN, keep)
    response = _signed_in(request, token, next_path)
    if had_device is None:
        cookies.set_device_cookie(response, device)
    return response


async def _login(email: str, password: str, client: accounts.Client) -> str:
    """accounts.login in three steps, so no thread is held while argon2 waits in its pool:
    count the attempt (database, a thread), check the password (awaited on the pool), then
    start the session (database, a thread)."""

    def begin() -> accounts.LoginAttempt:
        with session_scope() as session:
            return accounts.begin_login(session, email=email, client=client)

    def finish(attempt: accounts.LoginAttempt, ok: bool) -> str:
        with session_scope() as session:
            return accounts.start_session(session, accounts.finish_login(session, attempt, ok), client)

    attempt = await asyncio.to_thread(begin)
    ok = await passwords.verify_password_async(attempt.password_hash, password)
    return await asyncio.to_thread(finish, attempt, ok)


def _org_name_for(fields: dict[str, str], next_path: str) -> str:
    """The new organization's name; someone signing up to accept an invitation need not name one."""
    org_name = fields.get("org_name", "")
    if org_name.strip() or not next_path.startswith("/invite/"):
        return org_name
    who = fields.get("name", "").strip() or fields.get("email", "").split("@")[0].strip() or "My"
    return f"{who}'s organization"[:120]


async def register(request: Request) -> Response:
    """POST name, email, password, org_name[, next]: a new user, their organization, and the session cookie."""
    keep: dict[str, str] = {}
    next_path = routes.safe_next(request.query_params.get("next"))
    try:
        fields, next_path = await _posted_form(request)
        keep = {k: fields.get(k, "")[:254] for k in ("name", "email", "org_name")}
        keep["next"] = _next_to_keep(next_path)
        await limits.hit_in_thread(limits.REGISTER_IP, client_ip(request))
        device = new_token("dev")
        client = _client(request, device)

        password = fields.get("password", "")
        fields["org_name"] = _org_name_for(fields, next_path)
        accounts.check_registration(email=fields.get("email", ""), password=password, name=fields.get("name", ""),
                                    org_name=fields.get("org_name", ""))
        password_hash = await passwords.hash_password_async(password)

        def work() -> str:
            with session_scope() as session:
                user = accounts.register(
                    session, email=fields.get("email", ""), password=password, password_hash=password_hash,
                    name=fields.get("name", ""), org_name=fields.get("org_name", ""),
                )
                return accounts.start_session(session, user, client)

        token = await asyncio.to_thread(work)
    except AppError as error:
        return _refused(request, error, routes.REGISTER, keep)
    response = _signed_in(request, token, next_path)
    cookies.set_device_cookie(response, device)
    return response


async def logout(request: Request) -> Response:
    """End this browser's session (if its cookie came along) and clear the cookie.

    POST (what the page's Log out sends, from APP_URL's origin) answers 204; GET (a plain link)
    redirects to the login page. With SameSite=Strict no other site can make a browser send the
    cookie here, so the worst a forged link can do is clear a cookie.
    """
    if request.method == "POST" and not cookies.same_origin(request):
        return envelope(403, ErrorCode.FORBIDDEN, form_errors.MESSAGES["origin"])
    token = request.cookies.get(cookies.SESSION_COOKIE, "")
    if token:
        def work() -> None:
            with session_scope() as session:
                accounts.end_session(session, token)

        await asyncio.to_thread(work)
    response: Response
    if request.method == "POST":
        response = Response(status_code=204)
    else:
        response = RedirectResponse(_app_url(routes.login_url(reason="logged_out")), status_code=303)
    cookies.clear_session_cookie(response)
    return response
