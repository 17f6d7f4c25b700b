"""The browser's session cookie, and how pages learn about it without ever holding it.

The session token lives only in an HttpOnly cookie (`billing_session`; SameSite=Strict; Secure when
APP_URL is https), set and cleared by the backend's session routes (api/session.py). Page states
are persisted by Reflex (`.states/*.pkl` or Redis), including the headers of the socket that
carried their events, so the raw cookie must never reach a state.

`EventSocketSessions` wraps the backend: on the Reflex event socket (`/_event`) it removes the
`Cookie` header and any `Authorization` the client sent, and adds `Authorization: BillingSession
<sha256 of the session token>`. That hash is what the database stores too ("a database leak is no
login"): no route accepts it from outside, since this middleware overwrites the header on every
connection. Reflex never sends the Authorization header to the frontend.
"""

from __future__ import annotations

from http.cookies import SimpleCookie

from starlette.requests import Request
from starlette.responses import Response

from billing_app.auth.tokens import token_hash
from billing_app.settings import get_settings

SESSION_COOKIE = "billing_session"
DEVICE_COOKIE = "billing_device"
DEVICE_COOKIE_PATH = "/api/session"  # only the login route ever reads it
DEVICE_LIFETIME_SECONDS = 400 * 24 * 3600  # browsers cap cookie lifetimes at about 400 days
SESSION_HEADER = "authorization"
SESSION_SCHEME = "BillingSession "
EVENT_PATH = "/_event"


def set_session_cookie(response: Response, token: str) -> None:
    settings = get_settings()
    response.set_cookie(
        SESSION_COOKIE, token, max_age=settings.session_lifetime_hours * 3600, path="/",
        httponly=True, samesite="strict", secure=settings.secure_cookies,
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=get_settings().secure_cookies)


def set_device_cookie(response: Response, device: str) -> None:
    response.set_cookie(
        DEVICE_COOKIE, device, max_age=DEVICE_LIFETIME_SECONDS, path=DEVICE_COOKIE_PATH,
        httponly=True, samesite="strict", secure=get_settings().secure_cookies,
    )


def session_hash_from_cookie_header(cookie_header: str) -> str:
    """SHA-256 of the session cookie in a raw `Cookie` header, or "" without one."""
    try:
        jar = SimpleCookie()
        jar.load(cookie_header)
    except Exception:  # a malformed header is no session
        return ""
    morsel = jar.get(SESSION_COOKIE)
    value = morsel.value if morsel is not None else ""
    return token_hash(value) if value and len(value) <= 200 else ""


def session_hash_from_headers(raw_headers) -> str:
    """The session hash EventSocketSessions put on the socket's headers ("" when signed out)."""
    value = ""
    for name, header in (raw_headers or {}).items():
        if name.lower() == SESSION_HEADER:
            value = header
    return value[len(SESSION_SCHEME):] if isinstance(value, str) and value.startswith(SESSION_SCHEME) else ""


class EventSocketSessions:
    """ASGI middleware: the event socket sees the session's hash, never the cookie (see module doc)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("websocket", "http") and scope.get("path", "").startswith(EVENT_PATH):
            kept, cookie = [], ""
            for name, value in scope.get("headers", []):
                lowered = name.lower()
                if lowered == b"cookie":
                    cookie += ("; " if cookie else "") + value.decode("latin-1")
                elif lowered != SESSION_HEADER.encode():
                    kept.append((name, value))
            session_hash = session_hash_from_cookie_header(cookie) if cookie else ""
            if session_hash:
                kept.append((SESSION_HEADER.encode(), (SESSION_SCHEME + session_hash).encode()))
            scope = dict(scope, headers=kept)
        await self.app(scope, receive, send)


def event_socket_sessions(app):
    """For rx.App(api_transformer=[..., event_socket_sessions])."""
    return EventSocketSessions(app)


def same_origin(request: Request) -> bool:
    """A cookie-authenticated request that changes something came from a page of this app (its
    Origin, else its Referer, is APP_URL's origin)."""
    expected = get_settings().app_origin
    origin = request.headers.get("origin")
    if origin:
        return origin == expected
    referer = request.headers.get("referer", "")
    return referer == expected or referer.startswith(expected + "/")
