"""The session routes (log in, sign up, log out), the session cookie, and the event socket's view of it."""


import pytest
from sqlmodel import select
from starlette.testclient import TestClient

from billing_app import limits, routes
from billing_app.auth import accounts, cookies, form_errors
from billing_app.auth.tokens import token_hash
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import AuthSession, User
from tests.aio import run_async
from tests.api.helpers import served_api, stream_until_answered

PASSWORD = "correct-horse-battery"
ORIGIN = "http://127.0.0.1:3000"  # APP_URL's origin by default


@pytest.fixture
def client(db):
    from billing_app.api import build_api

    limits.reset()
    with session_scope() as s:
        accounts.register(s, email="ada@example.com", password=PASSWORD, name="Ada", org_name="Engines")
    with TestClient(build_api(), base_url="http://127.0.0.1:8000", follow_redirects=False) as client:
        yield client
    limits.reset()


def post_login(client, origin=ORIGIN, **fields):
    form = {"email": "ada@example.com", "password": PASSWORD, **fields}
    return client.post(routes.API_SESSION_LOGIN, data=form, headers={"Origin": origin} if origin else {})


def set_cookies(response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


def test_login_sets_an_httponly_strict_cookie_and_redirects_to_next(client):
    response = post_login(client, next="/billing?x=1")
    assert response.status_code == 303
    assert response.headers["location"] == "http://127.0.0.1:3000/billing?x=1"
    session = set_cookies(response)[cookies.SESSION_COOKIE]
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/", "Max-Age=604800"):
        assert attribute in session
    assert "Secure" not in session  # APP_URL is http here
    token = session.split("=", 1)[1].split(";")[0]
    with session_scope() as s:
        assert accounts.actor_for_session(s, token).email == "ada@example.com"
    device = set_cookies(response)[cookies.DEVICE_COOKIE]
    assert "HttpOnly" in device and "Path=/api/session" in device


def test_the_cookie_is_secure_when_app_url_is_https(client, monkeypatch):
    from billing_app.settings import get_settings

    monkeypatch.setenv("APP_URL", "https://billing.example.com")
    get_settings.cache_clear()
    response = post_login(client, origin="https://billing.example.com")
    assert response.status_code == 303
    assert "Secure" in set_cookies(response)[cookies.SESSION_COOKIE]


@pytest.mark.parametrize("origin", ["http://127.0.0.1:9999", "https://evil.example", None])
def test_a_form_from_another_origin_is_refused_and_sets_nothing(client, origin):
    response = post_login(client, origin=origin)
    assert response.status_code == 303 and "error=origin" in response.headers["location"]
    assert cookies.SESSION_COOKIE not in set_cookies(response)


@pytest.mark.parametrize("evil", ["//evil.example", "https://evil.example/", "/\\evil.example", "/%2F%2Fevil.example",
                                  "/ok%0d%0aSet-Cookie:x=1", "javascript:alert(1)"])
def test_next_is_only_ever_a_local_path(client, evil):
    response = post_login(client, next=evil)
    assert response.headers["location"] == "http://127.0.0.1:3000/"


def test_a_wrong_password_comes_back_to_the_form_with_a_key_not_a_text(client):
    response = post_login(client, password="wrong-password-1", next="/billing")
    assert response.status_code == 303
    assert response.headers["location"] == "http://127.0.0.1:3000/login?error=bad_login&next=%2Fbilling"
    as_json = client.post(routes.API_SESSION_LOGIN, json={"email": "ada@example.com", "password": "nope-nope-nope"},
                          headers={"Origin": ORIGIN})
    assert as_json.status_code == 401 and as_json.json()["error_code"] == "INVALID_CREDENTIALS"


def test_logins_are_rate_limited_per_address_with_retry_after(client, monkeypatch):
    from billing_app.settings import get_settings

    monkeypatch.setenv("RATE_LIMIT_LOGIN_IP", "3/minute")
    get_settings.cache_clear()
    for n in range(3):
        post_login(client, email=f"someone{n}@example.com")
    refused = client.post(routes.API_SESSION_LOGIN, json={"email": "ada@example.com", "password": PASSWORD}, headers={"Origin": ORIGIN})
    assert refused.status_code == 429
    assert refused.json()["error_code"] == "RATE_LIMITED"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    as_form = post_login(client)
    assert "error=wait" in as_form.headers["location"] and "retry=" in as_form.headers["location"]


def test_logins_are_rate_limited_per_email(client, monkeypatch):
    from billing_app.settings import get_settings

    monkeypatch.setenv("RATE_LIMIT_LOGIN_EMAIL", "2/minute")
    get_settings.cache_clear()
    for _ in range(2):
        post_login(client, password="wrong-password-1")
    refused = client.post(routes.API_SESSION_LOGIN, json={"email": " ADA@example.com", "password": PASSWORD}, headers={"Origin": ORIGIN})
    assert refused.status_code == 429 and "retry-after" in refused.headers


def test_sign_up_sets_the_cookie_and_a_refusal_keeps_what_was_typed_except_the_password(client):
    form = {"name": "Bob", "email": "bob@example.com", "password": PASSWORD, "org_name": "Bob Co"}
    ok = client.post(routes.API_SESSION_REGISTER, data=form, headers={"Origin": ORIGIN})
    assert ok.status_code == 303 and cookies.SESSION_COOKIE in set_cookies(ok)
    taken = client.post(routes.API_SESSION_REGISTER, data=form, headers={"Origin": ORIGIN})
    location = taken.headers["location"]
    assert "error=email_taken" in location and "email=bob%40example.com" in location and "org_name=Bob+Co" in location
    assert PASSWORD not in location


def test_logout_ends_the_session_and_clears_the_cookie(client):
    token = set_cookies(post_login(client))[cookies.SESSION_COOKIE].split("=", 1)[1].split(";")[0]
    foreign = client.post(routes.API_SESSION_LOGOUT, headers={"Origin": "https://evil.example", "Cookie": f"{cookies.SESSION_COOKIE}={token}"})
    assert foreign.status_code == 403
    response = client.post(routes.API_SESSION_LOGOUT, headers={"Origin": ORIGIN, "Cookie": f"{cookies.SESSION_COOKIE}={token}"})
    assert response.status_code == 204
    assert 'billing_session=""' in set_cookies(response)[cookies.SESSION_COOKIE]
    with session_scope() as s, pytest.raises(AppError) as info:
        accounts.actor_for_session(s, token)
    assert info.value.code == ErrorCode.UNAUTHENTICATED


def test_the_event_socket_sees_the_sessions_hash_never_the_cookie():
    seen = {}

    async def app(scope, receive, send):
        seen.update(dict(scope["headers"]))

    middleware = cookies.EventSocketSessions(app)
    scope = {"type": "websocket", "path": "/_event/", "headers": [
        (b"cookie", b"theme=dark; billing_session=sess_secret123"), (b"authorization", b"BillingSession forged"),
        (b"origin", b"http://127.0.0.1:3000"),
    ]}
    run_async(middleware(scope, None, None))
    assert b"cookie" not in seen and b"sess_secret123" not in b"".join(seen.values())
    assert seen[b"authorization"] == f"BillingSession {token_hash('sess_secret123')}".encode()
    assert cookies.session_hash_from_headers({"authorization": seen[b"authorization"].decode()}) == token_hash("sess_secret123")
    # Without a session cookie a client's own Authorization header is dropped, not believed.
    seen.clear()
    run_async(middleware({**scope, "headers": [(b"authorization", b"BillingSession forged")]}, None, None))
    assert b"authorization" not in seen
    # Other paths are left alone (the CSV export reads its cookie itself).
    seen.clear()
    run_async(middleware({**scope, "path": "/api/billing/payments.csv"}, None, None))
    assert seen[b"cookie"] == b"theme=dark; billing_session=sess_secret123"


def test_a_form_past_its_limit_is_refused_without_reading_the_rest(database_url):
    with served_api() as port:
        status, sent = stream_until_answered(port, routes.API_SESSION_LOGIN,
                                             {"Origin": ORIGIN, "Content-Type": "application/x-www-form-urlencoded"})
    assert sent <= 16 * 1024 * 1024, f"read {sent // (1024 * 1024)} MiB to refuse a form limited to 16 KiB"
    assert status.startswith(b"HTTP/1.1 413"), status


def test_a_form_over_16_kib_is_refused_as_too_large(client):
    response = client.post(routes.API_SESSION_LOGIN, json={"email": "ada@example.com", "password": "x" * 20_000},
                           headers={"Origin": ORIGIN})
    assert response.status_code == 422 and response.json()["message"] == "The form is too large."


@pytest.mark.parametrize("path", [routes.API_SESSION_LOGIN, routes.API_SESSION_REGISTER])
def test_json_nested_thousands_deep_is_refused_as_invalid_not_a_500(client, path):
    """5 KB (within the form's cap) of nested arrays: json.loads raises RecursionError, not ValueError."""
    response = client.post(path, content=b"[" * 5000, headers={"Origin": ORIGIN, "Content-Type": "application/json"})
    assert response.status_code == 422, response.text[:200]
    assert response.json()["error_code"] == "VALIDATION_ERROR" and response.json()["message"] == "The request body is not valid JSON."


def test_a_login_with_the_old_password_while_it_is_reset_starts_no_session(client, monkeypatch):
    """The route reads the account's hash, then waits for argon2 (longer while the pool is queued): a reset
    committed meanwhile ends every session, and the old password must not start one after it."""
    import asyncio

    from billing_app.auth import passwords, reset

    sent = {}
    monkeypatch.setattr(reset, "_sender", lambda to, url: sent.setdefault(to, url))
    reset.request_reset("ada@example.com")
    link = sent["ada@example.com"].split("token=")[1]
    real_verify = passwords.verify_password_async

    async def verify_while_the_owner_resets(password_hash, password):
        await asyncio.to_thread(reset.reset_password, link, "owner-chose-a-new-one-9")
        return await real_verify(password_hash, password)

    monkeypatch.setattr(passwords, "verify_password_async", verify_while_the_owner_resets)
    response = post_login(client)
    assert response.status_code == 303 and "error=" in response.headers["location"]
    assert cookies.SESSION_COOKIE not in set_cookies(response)
    with session_scope() as s:
        user = s.exec(select(User).where(User.email == "ada@example.com")).one()
        assert s.exec(select(AuthSession).where(AuthSession.user_id == user.id)).first() is None
    monkeypatch.setattr(passwords, "verify_password_async", real_verify)
    works = post_login(client, password="owner-chose-a-new-one-9")
    assert works.status_code == 303 and "error=" not in works.headers["location"]
    with session_scope() as s:
        assert s.exec(select(AuthSession).where(AuthSession.user_id == user.id)).first() is not None


@pytest.mark.parametrize("field, value, key", [
    ("org_name", "Evil\r\nBcc: everyone@example.com", "org_control"),
    ("org_name", "Evil\x00Co", "org_control"),
    ("name", "Eve\nBcc: everyone@example.com", "name_control"),
    ("name", "Eve\u202e", "name_control"),  # a format character (right-to-left override)
])
def test_sign_up_refuses_a_name_with_a_line_break_or_control_character(client, field, value, key):
    """Names go into email subjects (the invitation's is "You are invited to join <org>"): a line break there
    would stop every email; a NUL is a 500 on PostgreSQL."""
    form = {"name": "Eve", "email": "eve@example.com", "password": PASSWORD, "org_name": "Eve Co", field: value}
    refused = client.post(routes.API_SESSION_REGISTER, data=form, headers={"Origin": ORIGIN})
    assert refused.status_code == 303 and f"error={key}" in refused.headers["location"]
    as_json = client.post(routes.API_SESSION_REGISTER, json=form, headers={"Origin": ORIGIN})
    assert as_json.status_code == 422 and as_json.json()["error_code"] == "VALIDATION_ERROR"
    assert as_json.json()["message"] == form_errors.text_for(key) and "line breaks or control characters" in as_json.json()["message"]
    with session_scope() as s:
        assert s.exec(select(User.id).where(User.email == "eve@example.com")).first() is None


def test_a_login_with_a_nul_or_line_break_in_the_email_is_a_bad_login_not_a_500(client):
    for email in ("ada\x00@example.com", "ada\x7f@example.com", "a\u0000b@example.com"):
        answer = client.post(routes.API_SESSION_LOGIN, json={"email": email, "password": PASSWORD}, headers={"Origin": ORIGIN})
        assert answer.status_code == 401 and answer.json()["error_code"] == "INVALID_CREDENTIALS", (email, answer.text)


def test_sign_up_keeps_the_joiners_names_are_written_with(client):
    """A zero-width non-joiner belongs in Persian names, a zero-width joiner in emoji sequences."""
    form = {"name": "Mehr\u200cdad", "email": "mehrdad@example.com", "password": PASSWORD, "org_name": "Team \U0001F468\u200d\U0001F469"}
    assert client.post(routes.API_SESSION_REGISTER, data=form, headers={"Origin": ORIGIN}).status_code == 303
    with session_scope() as s:
        assert s.exec(select(User.name).where(User.email == "mehrdad@example.com")).one() == "Mehr\u200cdad"
