"""Account takeover and abuse guards: no mailbox for visitors of a production build, API tokens
minted only with the password and revoked by a password reset, no cross-origin operator actions
by cookie, and one client cannot mail reset links to every account it can name."""

from __future__ import annotations

import pytest
from reflex import constants
from sqlmodel import func, select

from billing_app.auth import accounts, reset
from billing_app.db import session_scope
from billing_app.models import ApiToken, Notification, WebhookEvent
from billing_app.notifications import hooks
from billing_app.ops.access import set_operator
from billing_app.settings import get_settings
from billing_app.state import SESSION_COOKIE
from tests.aio import run_async
from tests.api.helpers import bearer, token_for
from tests.billing.helpers import PASSWORD
from tests.pages import run_event, signed_in_page


@pytest.fixture(autouse=True)
def fast_password_hashing(fast_password_hashing):
    """tests/conftest.py's cheap hashing, for every test here: they test no password rule."""


def signed_out_page(state_cls, client_ip: str = ""):
    """The backend's copy of `state_cls` for a tab nobody signed in to, from `client_ip`."""
    from reflex.istate.data import RouterData
    from reflex.state import State

    root = State(_reflex_internal_init=True)
    root.router = RouterData.from_router_data({"headers": {}, constants.RouteVar.CLIENT_IP: client_ip})
    return root.get_substate(state_cls.get_full_name().split(".")[1:])


def reset_link_of(email: str, monkeypatch) -> str:
    sent = {}
    monkeypatch.setattr(reset, "_sender", lambda to, url: sent.setdefault(to, url))
    reset.request_reset(email)
    return sent[email]


# --- the dev mailbox -------------------------------------------------------------------


def test_dev_mailbox_does_not_show_reset_links_to_a_signed_out_visitor(org, stripe_env, monkeypatch):
    # `serve --prod` on the sandbox without SMTP_URL (a demo): a production build has no mailbox.
    from billing_app.pages.dev_mail import DevMailState

    monkeypatch.setenv("REFLEX_ENV_MODE", "prod")
    monkeypatch.delenv("SMTP_URL", raising=False)
    get_settings.cache_clear()
    monkeypatch.setattr(reset, "_sender", hooks.send_password_reset)
    reset.request_reset("admin@acme.example")
    tab = signed_out_page(DevMailState)
    run_async(run_event(DevMailState.load.fn(tab)))
    assert tab.gate == "404" and tab.messages == []
    with session_scope() as s:
        [row] = s.exec(select(Notification).where(Notification.kind == "password_reset")).all()
    run_async(run_event(DevMailState.open_message.fn(tab, str(row.id))))
    assert "reset?token=" not in tab.selected.text and tab.selected.id == ""


# --- API tokens ----------------------------------------------------------------------


def test_api_tokens_stop_working_after_a_password_reset(client, org, monkeypatch):
    # Someone minted a token while they had the admin's account; the admin recovers it by email.
    token = token_for(org.admin)
    other_users = token_for(org.member)
    assert client.get("/api/org/members", headers=bearer(token)).status_code == 200
    link = reset_link_of("admin@acme.example", monkeypatch)
    reset.reset_password(link.split("token=")[1], "a-brand-new-password-42")
    answer = client.get("/api/org/members", headers=bearer(token))
    assert answer.status_code == 401 and answer.json()["error_code"] == "UNAUTHENTICATED"
    assert client.get("/api/org/members", headers=bearer(other_users)).status_code == 200  # only the admin's went
    with session_scope() as s:  # revoked, not deleted: the list of revoked tokens still shows it
        assert s.exec(select(ApiToken).where(ApiToken.user_id == org.admin.user_id)).one().revoked_at is not None


def _mint(tab, password: str):
    from billing_app.pages.tokens import TokensState

    return run_async(run_event(TokensState.create.fn(tab, {"name": "script", "expires": "never", "password": password})))


def _live_tokens(user_id: int) -> int:
    with session_scope() as s:
        return s.exec(select(func.count()).select_from(ApiToken).where(ApiToken.user_id == user_id)).one()


def test_minting_an_api_token_needs_the_current_password(org, monkeypatch):
    from billing_app.pages.tokens import TokensState

    monkeypatch.setenv("LOGIN_MAX_FAILURES", "3")
    get_settings.cache_clear()
    tab = signed_in_page(TokensState, "admin@acme.example")
    for guess in ("", "not-the-password", "guess-number-2"):
        _mint(tab, guess)
        assert tab.error == "Your current password is not correct."
    assert _live_tokens(org.admin.user_id) == 0
    # The guesses were counted by the login throttle: the next try has to wait, even the right one.
    _mint(tab, PASSWORD)
    assert tab.error.startswith("Too many failed attempts") and _live_tokens(org.admin.user_id) == 0

    member_tab = signed_in_page(TokensState, "member@acme.example")
    _mint(member_tab, PASSWORD)
    assert member_tab.error == "" and [t.name for t in member_tab.tokens] == ["script"]
    assert _live_tokens(org.member.user_id) == 1


@pytest.fixture
def password_checks(monkeypatch) -> list[str]:
    """Each argon2 verification run (the costly step a flood of token requests would repeat)."""
    from billing_app.auth import passwords

    runs: list[str] = []
    real = passwords._verify

    def spy(password_hash, password):
        runs.append(password)
        return real(password_hash, password)

    monkeypatch.setattr(passwords, "_verify", spy)
    return runs


def test_minting_api_tokens_counts_in_the_users_account_limit(org, password_checks, fresh_limits):
    # Each try runs argon2 in the pool logins share: without a limit, one signed-in user could keep
    # it busy and have everyone's logins refused. RATE_LIMIT_ACCOUNT_USER's default: 10 a minute.
    from billing_app.pages.tokens import TokensState

    tab = signed_in_page(TokensState, "admin@acme.example")
    for _ in range(10):
        _mint(tab, PASSWORD)
        assert tab.error == ""
    checked = len(password_checks)
    _mint(tab, PASSWORD)
    assert tab.error.startswith("Too many attempts") and _live_tokens(org.admin.user_id) == 10
    assert len(password_checks) == checked  # refused before any hashing
    member_tab = signed_in_page(TokensState, "member@acme.example")  # per user: others are not held back
    _mint(member_tab, PASSWORD)
    assert member_tab.error == "" and _live_tokens(org.member.user_id) == 1


def test_wrong_passwords_on_the_token_form_count_in_the_account_limit_too(org, password_checks, monkeypatch, fresh_limits):
    from billing_app.pages.tokens import TokensState

    monkeypatch.setenv("RATE_LIMIT_ACCOUNT_USER", "2/minute")
    monkeypatch.setenv("LOGIN_MAX_FAILURES", "10")  # the login throttle stays out of the way
    get_settings.cache_clear()
    tab = signed_in_page(TokensState, "admin@acme.example")
    for guess in ("guess-1", "guess-2"):
        _mint(tab, guess)
        assert tab.error == "Your current password is not correct."
    checked = len(password_checks)
    _mint(tab, PASSWORD)
    assert tab.error.startswith("Too many attempts") and _live_tokens(org.admin.user_id) == 0
    assert len(password_checks) == checked


# --- the operator console's API ------------------------------------------------------


def test_ops_actions_by_cookie_refuse_a_cross_origin_post(client, org):
    set_operator("admin@acme.example", True)
    with session_scope() as s:
        s.add(WebhookEvent(stripe_event_id="evt_failed", type="invoice.paid", customer_id="cus_x", state="failed",
                           attempts=5, last_error="boom", payload="{}"))
        cookie = accounts.login(s, email="admin@acme.example", password=PASSWORD)
    client.cookies.set(SESSION_COOKIE, cookie)
    own = get_settings().app_origin
    for headers in ({"Origin": "https://evil.example.com"}, {"Referer": "https://sub.example.com/x"}, {}):
        answer = client.post("/api/ops/events/replay-failed", headers=headers)
        assert (answer.status_code, answer.json().get("error_code")) == (404, "NOT_FOUND"), (headers, answer.text)
    with session_scope() as s:
        assert s.exec(select(WebhookEvent.state)).all() == ["failed"]  # nothing replayed
    assert client.get("/api/ops/events?state=failed", headers={"Origin": "https://evil.example.com"}).status_code == 200
    assert client.post("/api/ops/events/replay-failed", headers={"Origin": own}).status_code == 200
    client.cookies.clear()
    # A script's Bearer token is no browser credential: no Origin is asked of it.
    assert client.post("/api/ops/events/replay-failed", headers={**bearer(token_for(org.admin)), "Origin": "https://x.example"}).status_code == 200


# --- /forgot ---------------------------------------------------------------------------


def test_one_client_cannot_send_reset_emails_to_any_number_of_accounts(database_url, monkeypatch, fresh_limits):
    from billing_app.pages.password_reset import ForgotState

    monkeypatch.setattr(reset, "_sender", hooks.send_password_reset)
    emails = [f"user{i}@victims.example" for i in range(8)]
    with session_scope() as s:
        for email in emails:
            accounts.register(s, email=email, password=PASSWORD, name="V", org_name="V org")

    def sent() -> int:
        with session_scope() as s:
            return s.exec(select(func.count()).select_from(Notification).where(Notification.kind == "password_reset")).one()

    tab = signed_out_page(ForgotState, "203.0.113.7")
    for email in emails:
        run_async(run_event(ForgotState.request.fn(tab, {"email": email})))
    assert sent() == 5
    assert tab.error.startswith("Too many") and tab.message == ""
    # Another client is not held back by this one.
    other = signed_out_page(ForgotState, "198.51.100.4")
    run_async(run_event(ForgotState.request.fn(other, {"email": emails[-1]})))
    assert other.error == "" and sent() == 6


def test_strangers_cannot_flood_one_account_with_reset_emails(database_url, monkeypatch, fresh_limits):
    """Twelve client addresses ask for one account's reset within a minute: RATE_LIMIT_RESET_EMAIL
    (3/hour) lets three links go. Past it the answer is the usual one, as for an unknown email, and
    nothing is sent: the limit says nothing about whether the email has an account."""
    from billing_app.pages.password_reset import SENT, ForgotState

    monkeypatch.setattr(reset, "_sender", hooks.send_password_reset)
    with session_scope() as s:
        accounts.register(s, email="victim@example.com", password=PASSWORD, name="V", org_name="V org")
    answers = []
    for n in range(12):
        for email in ("victim@example.com", "nobody@example.com"):
            tab = signed_out_page(ForgotState, f"203.0.113.{n}")
            run_async(run_event(ForgotState.request.fn(tab, {"email": email})))
            answers.append((tab.error, tab.message))
    assert set(answers) == {("", SENT)}
    with session_scope() as s:
        mailed = s.exec(select(Notification.recipients).where(Notification.kind == "password_reset")).all()
    assert mailed == ['["victim@example.com"]'] * 3


def test_strangers_asking_all_day_never_keep_the_owner_without_a_live_link(database_url, monkeypatch, fresh_limits):
    """A stranger asks for the owner's reset a few times an hour, all day: whenever the owner's own
    request is held back, a link under an hour old (so still working) is in the inbox. A daily cap
    let ten requests a day leave the owner with no working link for most of the day."""
    import time as real_time
    import types

    import limits.storage.memory as memory

    from billing_app.pages.password_reset import SENT, ForgotState

    offset = [0.0]
    monkeypatch.setattr(memory, "time", types.SimpleNamespace(time=lambda: real_time.time() + offset[0]))
    monkeypatch.setattr(reset, "_sender", hooks.send_password_reset)
    with session_scope() as s:
        accounts.register(s, email="owner@example.com", password=PASSWORD, name="O", org_name="O org")

    sent_at: list[float] = []  # when (on the limiter's clock) each link went

    def ask(ip: str) -> None:
        with session_scope() as s:
            before = s.exec(select(func.count()).select_from(Notification).where(Notification.kind == "password_reset")).one()
        tab = signed_out_page(ForgotState, ip)
        run_async(run_event(ForgotState.request.fn(tab, {"email": "owner@example.com"})))
        assert (tab.error, tab.message) == ("", SENT)
        with session_scope() as s:
            after = s.exec(select(func.count()).select_from(Notification).where(Notification.kind == "password_reset")).one()
        sent_at.extend([offset[0]] * (after - before))

    for hour in range(6):
        for minute in (1, 2, 3, 4):  # the stranger, from one address, four times an hour
            offset[0] = hour * 3600 + minute * 60
            ask(f"203.0.113.{hour}")
        offset[0] = hour * 3600 + 50 * 60  # the owner, later that hour
        ask("198.51.100.20")
        assert any(offset[0] - t < 3600 for t in sent_at), f"hour {hour}: no link under an hour old ({sent_at})"


# --- races with a reset or a removal ---------------------------------------------------------------


def test_a_reset_link_used_twice_at_once_sets_one_password(org, monkeypatch):
    """A double submit, or the owner and whoever else has the link: one password is set, the other
    use is refused (SQLite ignores FOR UPDATE, and both used to read the link before either wrote)."""
    import threading

    from billing_app.errors import AppError, ErrorCode

    link = reset_link_of("admin@acme.example", monkeypatch).split("token=")[1]
    real_hash = accounts.hash_password
    both_hashing = threading.Barrier(2)

    def slow_hash(password):  # argon2 takes a while: both requests are past their read of the link
        try:
            both_hashing.wait(timeout=3)
        except threading.BrokenBarrierError:
            pass
        return real_hash(password)

    monkeypatch.setattr(reset, "hash_password", slow_hash, raising=False)  # reset hashes first, then claims the link
    monkeypatch.setattr(accounts, "hash_password", slow_hash)
    outcomes = {}

    def use(password):
        try:
            reset.reset_password(link, password)
            outcomes[password] = "set"
        except AppError as error:
            outcomes[password] = error.code

    threads = [threading.Thread(target=use, args=(p,)) for p in ("first-new-password-1", "second-new-password-2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes.values(), key=str) == sorted(["set", ErrorCode.INVALID_SESSION], key=str), outcomes
    kept = next(p for p, outcome in outcomes.items() if outcome == "set")
    with session_scope() as s:
        accounts.login(s, email="admin@acme.example", password=kept)  # the one told "set" is the one that works


def test_a_token_minted_while_its_maker_is_removed_is_refused(org):
    """The tokens page reads the member, then checks the password (argon2) before issuing: a removal
    committed between revoked the member's tokens already, so a token made after it would escape that
    and work again once they are invited back."""
    from billing_app.auth import api_tokens, members
    from billing_app.errors import ErrorCode
    from tests.api.helpers import add_membership
    from tests.billing.helpers import expect

    as_the_page_read_them = org.member
    members.remove_member(org.admin, org.member.user_id)
    with session_scope() as s:
        expect(ErrorCode.NOT_A_MEMBER, api_tokens.create_token_confirmed, s, as_the_page_read_them, PASSWORD, "nightly")
    add_membership(org.id, org.member.user_id)  # invited back
    with session_scope() as s:
        assert s.exec(select(func.count()).select_from(ApiToken).where(ApiToken.user_id == org.member.user_id)).one() == 0


def test_a_password_change_during_a_reset_does_not_undo_the_reset(org, monkeypatch):
    """Whoever has the old password (and a session) changes it while the owner recovers the account by
    email: the change checked the old password before the reset committed, and must not write its
    password over the owner's afterwards (the intruder would keep the account)."""
    import threading

    from billing_app.errors import AppError, ErrorCode

    link = reset_link_of("admin@acme.example", monkeypatch).split("token=")[1]
    real_verify = accounts.verify_password

    def verify_while_the_owner_resets(stored, password):
        ok = real_verify(stored, password)
        owner = threading.Thread(target=reset.reset_password, args=(link, "owners-recovered-password-1"))
        owner.start()
        owner.join(30)
        return ok

    monkeypatch.setattr(accounts, "verify_password", verify_while_the_owner_resets)
    with pytest.raises(AppError) as refused, session_scope() as s:
        accounts.change_password(s, org.admin.user_id, current=PASSWORD, new="intruders-new-password-9")
    assert refused.value.code == ErrorCode.SESSION_EXPIRED
    monkeypatch.setattr(accounts, "verify_password", real_verify)
    with session_scope() as s:
        accounts.login(s, email="admin@acme.example", password="owners-recovered-password-1")
    with session_scope() as s, pytest.raises(AppError):
        accounts.login(s, email="admin@acme.example", password="intruders-new-password-9")
