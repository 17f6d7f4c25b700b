"""Accounts in a real browser against the running app: what a person sees and can do."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect
from sqlalchemy import text

from billing_app.models import utcnow
from tests.browser.helpers import accept_as_new_user, invite, login, register, screenshot, unique_email

pytestmark = pytest.mark.browser
SEED_PASSWORD = "demo-password-123"


def test_register_log_out_and_log_in(page, app_server):
    email = unique_email("founder")
    register(page, app_server, email=email, org="Founders Ltd", name="Fay")
    expect(page.locator("#whoami")).to_have_text("You are Admin of Founders Ltd.")
    expect(page.locator("#nav-org")).to_have_text("Founders Ltd")
    screenshot(page, "home")

    page.click("#user-menu")
    page.get_by_role("menuitem", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login\?reason=logged_out$"))
    expect(page.get_by_text("You have been logged out.")).to_be_visible()
    # Signed out means signed out: a private page sends us back to log in.
    page.goto(f"{app_server.url}/org/members")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Forg%2Fmembers%2F?$"))

    page.fill("#email", email)
    page.fill("#password", "a-long-password-1")
    page.click("#login-submit")
    expect(page).to_have_url(re.compile(r"/org/members/?$"))
    expect(page.get_by_role("cell", name=email)).to_be_visible()


def test_bad_input_gets_a_clear_message_and_creates_nothing(page, app_server):
    email = unique_email("dup")
    register(page, app_server, email=email)
    expect(page.locator("#whoami")).to_be_visible()
    page.context.clear_cookies()

    register(page, app_server, email=email.upper(), org="Another Org")
    expect(page.get_by_role("alert")).to_have_text("An account with this email already exists. Log in instead.")
    register(page, app_server, email=unique_email("weak"), password="short", org="Weak Org")
    expect(page.get_by_role("alert")).to_have_text("Password must be at least 10 characters.")
    screenshot(page, "register-error")
    with app_server.engine().connect() as connection:
        orgs = connection.execute(text("SELECT name FROM organization WHERE name IN ('Another Org', 'Weak Org')")).all()
    assert orgs == []

    login(page, app_server, email=email, password="wrong-password")
    expect(page.get_by_role("alert")).to_have_text("Incorrect email or password.")
    login(page, app_server, email=unique_email("nobody"), password="wrong-password")
    expect(page.get_by_role("alert")).to_have_text("Incorrect email or password.")


def test_expired_session_sends_the_user_to_log_in_with_a_message(page, app_server):
    email = unique_email("expiring")
    register(page, app_server, email=email)
    expect(page.locator("#whoami")).to_be_visible()
    with app_server.engine().begin() as connection:
        connection.execute(
            text("UPDATE authsession SET expires_at = :past WHERE user_id = (SELECT id FROM user WHERE email = :email)"),
            {"past": utcnow() - timedelta(minutes=1), "email": email},
        )
    page.goto(f"{app_server.url}/org/members")
    expect(page).to_have_url(re.compile(r"/login"))
    expect(page.get_by_text("Your session has expired. Please log in again.")).to_be_visible()


def test_member_sees_no_admin_actions(page, app_server):
    login(page, app_server, email="member@acme.test", password=SEED_PASSWORD)
    expect(page.locator("#nav-role")).to_have_text("Member")
    page.goto(f"{app_server.url}/org/members")
    expect(page.get_by_role("cell", name="admin@acme.test")).to_be_visible()
    expect(page.get_by_text("Only admins can invite members or change roles.")).to_be_visible()
    expect(page.locator("#add-member-card")).to_have_count(0)
    expect(page.get_by_role("combobox")).to_have_count(0)
    screenshot(page, "members-as-member")


def _capture_event_frames(page):
    """Sit on the page's real Reflex socket, keeping the frames it sends and a handle to send more."""
    captured = {"frames": [], "server": None}

    def route(ws):
        server = ws.connect_to_server()
        captured["server"] = server

        def from_page(message):
            captured["frames"].append(message)
            server.send(message)

        ws.on_message(from_page)

    page.route_web_socket(re.compile(r"/_event"), route)
    return captured


def _forge(frames, handler: str, payload: dict, state=None) -> str:
    """Turn the last real event frame the page sent into a call of `handler` (as a tampering user could)."""
    from billing_app.pages.members import MembersState

    state = state or MembersState
    for frame in reversed(frames):
        # A page opened by a full load (log in is a form post) sends its first event inside the
        # socket.io CONNECT frame ("40/_event,{"event": {...}}"); forge from it the same way.
        connect = re.match(r"^40(/[^,]*,)(\{.*)$", frame, re.S) if isinstance(frame, str) else None
        if connect and isinstance(json.loads(connect.group(2)).get("event"), dict):
            event = json.loads(connect.group(2))["event"]
            event["name"] = f"{state.get_full_name()}.{handler}"
            event["payload"] = payload
            return "42" + connect.group(1) + json.dumps(["event", event])
        # A socket.io event frame: "42", the namespace ("/_event,"), an optional ack id, a JSON array.
        match = re.match(r"^(42(?:/[^,]*,)?)\d*(\[.*)$", frame, re.S) if isinstance(frame, str) else None
        if match:
            kind, event = json.loads(match.group(2))
            if kind == "event":
                event["name"] = f"{state.get_full_name()}.{handler}"
                event["payload"] = payload
                return match.group(1) + json.dumps([kind, event])
    raise AssertionError(f"no event frame among {[str(f)[:120] for f in frames]}")


def test_member_calling_admin_handlers_directly_is_refused_by_the_server(page, app_server):
    captured = _capture_event_frames(page)
    login(page, app_server, email="member@acme.test", password=SEED_PASSWORD)
    expect(page.locator("#nav-role")).to_have_text("Member")
    page.goto(f"{app_server.url}/org/members")
    expect(page.get_by_role("cell", name="admin@acme.test")).to_be_visible()

    with app_server.engine().connect() as connection:
        member_id = connection.execute(text("SELECT id FROM user WHERE email = 'member@acme.test'")).scalar_one()
    captured["server"].send(_forge(captured["frames"], "change_role", {"user_id": str(member_id), "role": "admin"}))
    expect(page.get_by_role("alert")).to_have_text("Only an organization admin can do that.")
    captured["server"].send(_forge(captured["frames"], "invite", {"form": {"email": "admin@globex.test", "role": "admin"}}))
    expect(page.get_by_role("alert")).to_have_text("Only an organization admin can do that.")
    captured["server"].send(_forge(captured["frames"], "remove", {"user_id": str(member_id)}))
    expect(page.get_by_role("alert")).to_have_text("Only an organization admin can do that.")

    with app_server.engine().connect() as connection:
        roles = connection.execute(
            text(
                "SELECT u.email, m.role FROM membership m JOIN user u ON u.id = m.user_id "
                "JOIN organization o ON o.id = m.org_id WHERE o.name = 'Acme Inc' ORDER BY u.email"
            )
        ).all()
    assert [tuple(r) for r in roles] == [("admin@acme.test", "admin"), ("member@acme.test", "member")]


def test_switching_to_an_org_the_user_is_not_in_is_refused_with_a_message(page, app_server):
    from billing_app.state import AuthState

    captured = _capture_event_frames(page)
    login(page, app_server, email="member@acme.test", password=SEED_PASSWORD)
    expect(page.locator("#nav-org")).to_have_text("Acme Inc")
    with app_server.engine().connect() as connection:
        globex = connection.execute(text("SELECT id FROM organization WHERE name = 'Globex Corp'")).scalar_one()
    captured["server"].send(_forge(captured["frames"], "switch_org", {"org_id": str(globex)}, state=AuthState))
    expect(page.get_by_text("You are not a member of that organization.")).to_be_visible()
    page.reload()
    expect(page.locator("#nav-org")).to_have_text("Acme Inc")


def _role_select(page, email: str):
    return page.get_by_role("row").filter(has_text=email).get_by_role("combobox")


def test_admin_invites_a_member_and_changes_a_role(page, browser, app_server):
    admin_email, colleague = unique_email("boss"), unique_email("colleague")
    register(page, app_server, email=admin_email, org="Boss Org")
    expect(page.locator("#whoami")).to_be_visible()
    link = invite(page, app_server, colleague)
    accept_as_new_user(browser, link, colleague, "Colleague")
    page.goto(f"{app_server.url}/org/members")
    expect(page.get_by_role("cell", name=colleague)).to_be_visible()
    _role_select(page, admin_email).click()
    # Roles in words, as the navbar shows them; the select's values stay the identifiers.
    expect(page.get_by_role("option")).to_have_text(["Member", "Admin", "Super admin"])
    page.get_by_role("option", name="Member", exact=True).click()
    expect(page.get_by_role("alert")).to_have_text(
        "The organization needs at least one admin. Make someone else an admin first."
    )
    _role_select(page, colleague).click()
    page.get_by_role("option", name="Admin", exact=True).click()
    expect(page.get_by_role("status")).to_have_text(f"{colleague} is now Admin.")
    expect(page.get_by_role("row").filter(has_text=colleague).get_by_role("combobox")).to_have_text("Admin")
    screenshot(page, "members-as-admin")


def test_a_user_who_leaves_their_only_organization_creates_a_new_one_and_is_its_admin(page, browser, app_server):
    # It read "You are  of .", and every organization page sent them to log in: no way on.
    founder, successor = unique_email("founder"), unique_email("successor")
    register(page, app_server, email=founder, org="Handover Ltd")
    expect(page.locator("#whoami")).to_be_visible()
    accept_as_new_user(browser, invite(page, app_server, successor), successor, "Successor")
    page.goto(f"{app_server.url}/org/members")
    _role_select(page, successor).click()
    page.get_by_role("option", name="Admin", exact=True).click()
    expect(page.get_by_role("status")).to_have_text(f"{successor} is now Admin.")

    page.locator("#leave-org").click()  # their only organization
    page.get_by_role("alertdialog").get_by_role("button", name="Leave").click()
    home = re.compile(r"^http://127\.0\.0\.1:\d+/?$")
    expect(page).to_have_url(home)
    expect(page.locator("#whoami")).to_have_text("You are not a member of any organization yet.")
    expect(page.locator("#join-by-invitation")).to_have_text(
        "To join an existing organization, ask one of its admins for an invitation link.")
    expect(page.locator("#nav-org")).to_have_text("No organization")
    expect(page.locator("#nav-role")).to_have_count(0)
    screenshot(page, "home-no-organization")
    serious = [v["id"] for v in Axe().run(page).response["violations"] if v.get("impact") in ("serious", "critical")]
    assert serious == []
    page.goto(f"{app_server.url}/billing")  # an organization's page: home again, still signed in
    expect(page).to_have_url(home)
    expect(page.locator("#whoami")).to_have_text("You are not a member of any organization yet.")
    page.goto(f"{app_server.url}/pricing")  # public: the plans, and the way to an organization to buy for
    page.locator(".plan-card").first.get_by_role("link", name="Create an organization").click()
    expect(page).to_have_url(home)

    page.get_by_label("Organization name").fill("Fresh Start Ltd")
    page.locator("#create-org").click()
    expect(page.locator("#whoami")).to_have_text("You are Admin of Fresh Start Ltd.")
    page.goto(f"{app_server.url}/billing")
    expect(page.locator("#no-subscription")).to_be_visible()
    expect(page.locator("#nav-org")).to_have_text("Fresh Start Ltd")
    expect(page.locator("#nav-role")).to_have_text("Admin")
    expect(page.get_by_role("link", name="Payments", exact=True)).to_be_visible()  # the admins' link


def test_narrow_screen_keeps_navigation_in_the_user_menu(browser, app_server):
    context = browser.new_context(viewport={"width": 375, "height": 800})
    page = context.new_page()
    try:
        login(page, app_server, email="admin@acme.test", password=SEED_PASSWORD)
        expect(page.locator("#whoami")).to_be_visible()
        screenshot(page, "home")
        page.click("#user-menu")
        page.get_by_role("menuitem", name="Billing").click()
        expect(page).to_have_url(re.compile(r"/billing/?$"))
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
    finally:
        context.close()
