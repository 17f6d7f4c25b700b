"""Teams in the browser: an admin invites, the invitee signs up through the link and accepts, the
seat count and the Stripe quantity follow; at a cap, an invitation and an acceptance are refused
with the message naming the limit and the plan that lifts it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from tests.browser.helpers import (
    PASSWORD,
    accept_as_new_user,
    invite,
    login,
    new_admin,
    pay_on_sandbox_checkout,
    screenshot,
    start_purchase,
    unique_email,
)

pytestmark = pytest.mark.browser


def test_an_admin_invites_the_invitee_signs_up_and_accepts_and_the_seats_follow(page, browser, app_server):
    admin = new_admin(page, app_server, org="Seat Journey Co")
    start_purchase(page, app_server, "team")
    pay_on_sandbox_checkout(page)
    expect(page.locator("#confirm-title")).to_have_text("Payment successful")

    page.goto(f"{app_server.url}/org/members")
    expect(page.locator("#seats-used")).to_have_text("1 of 3 paid seats used")
    expect(page.locator("#cost-preview")).to_contain_text("uses one of your")
    invitees = [unique_email(f"teammate{n}") for n in range(3)]
    links = [invite(page, app_server, email) for email in invitees]
    screenshot(page, "members-invited")
    expect(page.locator(".invitation-row")).to_have_count(3)
    # Three seats are paid: the third invitation's acceptance will add one.
    expect(page.locator("#cost-preview")).to_contain_text("adds $8.00 a month; $")

    for n, (email, link) in enumerate(zip(invitees, links)):
        accept_as_new_user(browser, link, email, f"Teammate {n}")

    page.goto(f"{app_server.url}/org/members")
    expect(page.locator("#seats-used")).to_have_text("4 of 4 paid seats used")
    expect(page.locator(".member-row")).to_have_count(4)
    expect(page.locator(".invitation-row")).to_have_count(0)
    with app_server.engine().connect() as connection:
        sub_id = connection.execute(
            text("SELECT s.stripe_id FROM orgsubscription s JOIN organization o ON o.id = s.org_id WHERE o.name = 'Seat Journey Co'")
        ).scalar_one()
    assert app_server.stripe.v1.subscriptions.retrieve(sub_id)["items"].data[0].quantity == 4
    screenshot(page, "members-per-seat")

    page.goto(f"{app_server.url}/billing")
    expect(page.locator("#billing-seats")).to_have_text("4 of 4 paid seats used")

    # An admin removes a member: the quantity follows them out.
    page.goto(f"{app_server.url}/org/members")
    page.get_by_role("row").filter(has_text=invitees[0]).get_by_role("button", name="Remove").click()
    question = page.get_by_role("alertdialog")
    expect(question).to_contain_text(f"Remove {invitees[0]} from Seat Journey Co?")
    expect(question).to_contain_text("Your plan is billed per seat: the paid seats go down to the members left")
    question.get_by_role("button", name="Remove").click()
    expect(page.get_by_role("status")).to_have_text(f"{invitees[0]} was removed from the organization.")
    expect(page.locator("#seats-used")).to_have_text("3 of 3 paid seats used")
    assert app_server.stripe.v1.subscriptions.retrieve(sub_id)["items"].data[0].quantity == 3
    assert admin


def test_leaving_an_organization_asks_first(page, browser, app_server):
    # One click on Leave, next to one's own email, removed the member at once; coming back needs a
    # new invitation.
    new_admin(page, app_server, org="Leave Co")
    email = unique_email("leaver")
    accept_as_new_user(browser, invite(page, app_server, email), email, "Lee Ver")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        member = context.new_page()
        member.set_default_timeout(20_000)
        login(member, app_server, email=email)
        expect(member.locator("#whoami")).to_be_visible()
        if member.locator("#nav-org").inner_text() != "Leave Co":
            member.click("#user-menu")
            member.get_by_role("menuitem", name="Leave Co").click()
        expect(member.locator("#nav-org")).to_have_text("Leave Co")
        member.goto(f"{app_server.url}/org/members")
        member.locator("#leave-org").click()
        question = member.get_by_role("alertdialog")
        expect(question).to_contain_text("Leave Leave Co?")
        expect(question).to_contain_text("You will need a new invitation to come back.")
        screenshot(member, "members-leave-question")
        question.get_by_role("button", name="Cancel").click()
        expect(question).to_have_count(0)
        assert _memberships(app_server, email, "Leave Co") == 1

        member.locator("#leave-org").click()
        member.get_by_role("alertdialog").get_by_role("button", name="Leave").click()
        expect(member).to_have_url(f"{app_server.url}/")  # home, once left
        assert _memberships(app_server, email, "Leave Co") == 0
    finally:
        context.close()


def _memberships(app_server, email: str, org: str) -> int:
    with app_server.engine().connect() as connection:
        return connection.execute(text(
            "SELECT count(*) FROM membership m JOIN user u ON u.id = m.user_id JOIN organization o ON o.id = m.org_id "
            "WHERE u.email = :e AND o.name = :o"), {"e": email, "o": org}).scalar_one()


def test_at_the_cap_inviting_and_accepting_are_refused_with_the_message(page, browser, app_server):
    new_admin(page, app_server, org="Capped Co")  # the free tier: 2 seats
    first = unique_email("first")
    link = invite(page, app_server, first)
    page.fill("#invite-email", unique_email("second"))
    page.click("#invite")  # refused: no link is shown
    expect(page.get_by_role("alert")).to_have_text(re.compile(
        r"^Your Free plan allows 2 seats, and all are taken \(1 member and 1 pending invitation\)\. "
        r"The Starter plan lifts it: up to 3 seats\.$"))
    screenshot(page, "members-seat-limit")

    # Meanwhile the second seat was taken another way (say, before the cap existed): accepting is refused.
    with app_server.engine().begin() as connection:
        org_id = connection.execute(text("SELECT id FROM organization WHERE name = 'Capped Co' ORDER BY id DESC")).first()[0]
        someone = connection.execute(text("SELECT id FROM user WHERE email = 'member@acme.test'")).scalar_one()
        connection.execute(text("INSERT INTO membership (user_id, org_id, role, created_at) VALUES (:u, :o, 'member', CURRENT_TIMESTAMP)"),
                           {"u": someone, "o": org_id})
    context = browser.new_context()
    other = context.new_page()
    other.set_default_timeout(20_000)
    try:
        other.goto(link)
        other.locator("#invite-register").click()
        other.wait_for_url(re.compile(r"/register\?"))
        other.fill("#name", "First")
        other.fill("#password", PASSWORD)
        other.click("#register-submit")
        other.wait_for_url(re.compile(r"/invite/inv_"), wait_until="commit")  # the click below waits for the page
        other.locator("#accept-invitation").click()
        expect(other.get_by_role("alert")).to_contain_text("This organization's Free plan allows 2 seats, and all are taken.")
        expect(other.get_by_role("alert")).to_contain_text("The Starter plan lifts it")
        screenshot(other, "invite-refused-at-cap")
    finally:
        context.close()
    with app_server.engine().connect() as connection:
        count = connection.execute(text("SELECT COUNT(*) FROM membership WHERE org_id = :o"), {"o": org_id}).scalar_one()
    assert count == 2
