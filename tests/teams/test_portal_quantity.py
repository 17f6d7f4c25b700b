"""A quantity lowered in the Customer Portal comes back by webhook: mirrored, warned about, and it
pauses invitations; nobody is removed."""

from __future__ import annotations

import time

from billing_app.auth import invitations
from billing_app.billing.portal import portal_url
from billing_app.billing.seats import seats_of
from billing_app.billing.team_views import seat_warning
from billing_app.db import session_scope
from billing_app.errors import ErrorCode
from tests.billing.helpers import expect
from tests.teams.helpers import buy_team, join, mirror_quantity, quantity_at_stripe


def wait_for(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_portal_quantity_below_the_members_is_mirrored_warned_and_blocks_invitations(org, stripe_env, backend):
    buy_team(org, stripe_env)
    join(org, "carol@example.com")
    join(org, "dave@example.com")
    assert quantity_at_stripe(org, stripe_env) == mirror_quantity(org) == 4

    url = portal_url(org.admin)
    session_id = url.rsplit("/", 1)[1]
    page = stripe_env.http.get(f"/portal/{session_id}")
    assert "id=update-quantity" in page.text and "min=3" in page.text  # the Team plan's min_seats
    sub_id = stripe_env.client.v1.subscriptions.list(params={"limit": 1}).data[0].id
    done = stripe_env.http.post(f"/portal/{session_id}/quantity", data={"subscription": sub_id, "quantity": "3"})
    assert "msg=" in done.headers["location"]

    wait_for(lambda: mirror_quantity(org) == 3, "the webhook to mirror the portal's quantity")
    with session_scope() as s:
        seats = seats_of(s, org.id)
    assert (seats.used, seats.purchased, seats.below_members) == (4, 3, True)
    assert "pays for 3 seats, but your organization has 4 members" in seat_warning(seats)
    error = expect(ErrorCode.SEAT_LIMIT_REACHED, invitations.invite, org.admin, email="erin@example.com")
    assert "pays for 3 seats but has 4 members" in error.message

    # Raising it again (here in the portal too) lifts the pause.
    stripe_env.http.post(f"/portal/{session_id}/quantity", data={"subscription": sub_id, "quantity": "5"})
    wait_for(lambda: mirror_quantity(org) == 5, "the raised quantity")
    assert invitations.invite(org.admin, email="erin@example.com").cost.seats_added == 0


def test_removing_a_member_never_raises_seats_lowered_below_the_members(org, stripe_env):
    """The portal lowered the seats to 3 for 5 members: removing one (4 left) leaves the 3 as they are,
    it does not raise them to 4; the removal dialog says so beforehand."""
    from billing_app.auth import members
    from billing_app.billing.sync import sync_customer
    from billing_app.billing.team_views import removal_note
    from tests.teams.helpers import customer, stripe_subscription

    buy_team(org, stripe_env)
    carol, dave = join(org, "carol@example.com"), join(org, "dave@example.com")
    join(org, "erin@example.com")
    assert quantity_at_stripe(org, stripe_env) == 5
    with session_scope() as s:
        assert "the paid seats go down to the members left" in removal_note(seats_of(s, org.id))

    session_id = portal_url(org.admin).rsplit("/", 1)[1]
    stripe_env.http.post(f"/portal/{session_id}/quantity", data={"subscription": stripe_subscription(org, stripe_env).id, "quantity": "3"})
    sync_customer(customer(org))  # as its webhook would
    assert mirror_quantity(org) == 3
    with session_scope() as s:
        note = removal_note(seats_of(s, org.id))
    assert "pays for 3 seats, fewer than its 5 members" in note and "stay at 3" in note

    members.remove_member(org.admin, carol.user_id)  # 4 members: max(3, 4) would raise the bill
    assert quantity_at_stripe(org, stripe_env) == mirror_quantity(org) == 3
    members.remove_member(org.admin, dave.user_id)  # 3 members, 3 seats
    assert quantity_at_stripe(org, stripe_env) == 3
