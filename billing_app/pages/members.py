"""Organization members: everyone sees the members, pending invitations and seats; admins invite
(seeing what a seat costs first), revoke, remove and change roles; anyone may leave (removing and
leaving ask first).

A new invitation's link goes to the browser once, into a client-side variable (`INVITE_URL`, never
a state: Reflex persists states), for the admin to copy; only the token's hash is stored. Inviting,
removing and leaving may change the Stripe quantity of a per-seat plan, and a role change waits for
the seat claim like them, so they run as background events, with the state lock held only to read
inputs and show results.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import reflex as rx
from reflex.experimental.client_state import ClientStateVar

from billing_app import limits, live, routes
from billing_app.auth import invitations, members
from billing_app.billing import turns
from billing_app.billing.seat_billing import invite_cost
from billing_app.billing.team_views import removal_note, seat_warning, seats_cap, seats_summary, team_view
from billing_app.components.layout import data_table, error_callout, info_callout, page_frame, shown_once
from billing_app.components.seats import seats_card
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.formatting import format_date
from billing_app.models import Role
from billing_app.state import AuthState, form_text, id_from_page, in_a_thread

UNKNOWN_MEMBER_OR_ROLE = "Unknown member or role."
# The link of the invitation just made, shown once: in the browser only, never in a state.
INVITE_URL = ClientStateVar.create("new_invite_url", "")


@dataclass
class MemberRow:
    user_id: str = ""
    email: str = ""
    name: str = ""
    role: str = ""
    is_self: bool = False
    role_label: str = ""  # Role.label


@dataclass
class InvitationItem:
    id: str = ""
    email: str = ""
    role: str = ""
    expires: str = ""
    invited_by: str = ""
    last_error: str = ""
    role_label: str = ""  # Role.label


@dataclass
class TeamData:
    members: list[MemberRow]
    invitations: list[InvitationItem]
    seats_text: str
    seats_used: int
    seats_cap: int  # 0: no cap shown (unlimited)
    warning: str
    per_seat: bool
    removal_note: str


def _read(actor) -> TeamData:
    with session_scope() as session:
        view = team_view(session, actor)
    seats = view.seats
    return TeamData(
        members=[MemberRow(str(m.user_id), m.email, m.name, m.role.value, m.user_id == actor.user_id, m.role.label) for m in view.members],
        invitations=[
            # Why an acceptance failed (a declined seat charge) is for the admins, who can act on it.
            InvitationItem(str(i.id), i.email, i.role.value, format_date(i.expires_at), i.invited_by,
                           (i.last_error or "") if actor.is_admin else "", i.role.label)
            for i in view.invitations
        ],
        seats_text=seats_summary(seats),
        seats_used=seats.used,
        seats_cap=seats_cap(seats),
        warning=seat_warning(seats),
        per_seat=seats.per_seat,
        removal_note=removal_note(seats),
    )


class MembersState(AuthState):
    members: list[MemberRow] = []
    invitations: list[InvitationItem] = []
    seats_text: str = ""
    seats_used: int = 0
    seats_cap: int = 0
    seat_warning: str = ""
    per_seat: bool = False
    removal_note: str = ""  # what removing a member does to the paid seats (the removal dialog)
    # What one more member costs on a per-seat plan, shown before inviting.
    cost_preview: str = ""
    error: str = ""
    message: str = ""
    busy: str = ""  # invite | remove:<id> | leave | revoke:<id> | role:<id>

    def _show_team(self, data: TeamData) -> None:
        self.members, self.invitations = data.members, data.invitations
        self.seats_text, self.seats_used, self.seats_cap = data.seats_text, data.seats_used, data.seats_cap
        self.seat_warning, self.per_seat, self.removal_note = data.warning, data.per_seat, data.removal_note

    def _reload(self, actor) -> None:
        self._show_team(_read(actor))

    @in_a_thread
    def load(self):
        self.error = self.message = self.busy = self.cost_preview = ""
        try:
            actor = self._actor()
            self._watch_live(actor.require_org())  # before the read: a change meanwhile refreshes it
            self._reload(actor)
        except AppError as error:
            self.members, self.invitations = [], []
            return self._signed_out(error)
        events = [INVITE_URL.push("")]
        if actor.is_admin and self.per_seat:
            events.append(MembersState.load_cost)
        return events

    def _on_billing_changed(self, shared: dict | None = None):
        """Called by `live` when a webhook changed this org's billing (e.g. seats in the portal).
        Private: a public method would be an event any browser could send, run on the event loop."""
        try:
            self._reload(self._actor(shared, keep_org=True))
        except AppError:
            pass

    @rx.event(background=True)
    async def load_cost(self):
        """The price of one more seat, from Stripe's preview (a background event: Stripe calls).

        The page asks for it for admins only; a member's forged event is refused before it costs
        the org anything, and each preview counts against the org's Stripe limit."""
        try:
            actor = await self._actor_in_background(keep_org=True)
            org_id = actor.require_role(Role.ADMIN)
            await limits.hit_in_thread(limits.STRIPE_ORG, org_id)
            cost = await asyncio.to_thread(invite_cost, org_id, including_new=False)
        except AppError:
            return
        async with self:
            self.cost_preview = f"Inviting one more person {cost.message}." if cost else ""

    async def _run(self, busy: str, fn, *, admin: bool = True, stripe: bool = True, reload: bool = True):
        """Run fn(actor) in a thread; show the outcome. Returns (result, ok).

        `admin`: refused to anyone else before a Stripe call is counted, and a member's own events
        (leave) count against the member's limit, not the org's (limits.hit_stripe): a member's
        events spend none of the admins' (the services check the role again).

        As on the billing page (BillingState._act): the same action again while it runs (a
        double-click) is ignored, a session gone sends the tab to login, and after a change the
        org's other open pages refresh."""
        async with self:
            if self.busy == busy:
                return None, False
            self.error = self.message = ""
            self.busy = busy
        try:
            actor = await self._actor_in_background(keep_org=True)
            if admin:
                actor.require_role(Role.ADMIN)
            if stripe:
                await asyncio.to_thread(limits.hit_stripe, actor)
            org_id = actor.require_org()
            result = await turns.in_turn(org_id, fn, actor)
            data = await asyncio.to_thread(_read, actor) if reload else None
        except AppError as error:
            await self._show_refusal(error)
            return None, False
        async with self:
            if data is not None:
                self._show_team(data)
            self.busy = ""
        await live.notify_after_action(org_id)
        return result, True

    @rx.event(background=True)
    async def invite(self, form: dict):
        email = form_text(form, "email")
        try:
            role = Role(form_text(form, "role") or Role.MEMBER.value)
        except ValueError:
            async with self:
                self.error = "Unknown role."
            return
        invited, ok = await self._run("invite", lambda actor: invitations.invite(actor, email=email, role=role))
        if not ok:
            yield INVITE_URL.push("")
            return
        cost = f" Once accepted, it {invited.cost.message}." if invited.cost else ""
        async with self:
            self.message = f"Invitation for {invited.invitation.email} created. We emailed them the link.{cost} It is below too, to pass on yourself."
            per_seat = self.per_seat
        yield INVITE_URL.push(invited.url)
        if per_seat:
            yield MembersState.load_cost

    @rx.event(background=True)
    async def revoke(self, invitation_id: str):
        _, ok = await self._run(f"revoke:{invitation_id}", lambda actor: invitations.revoke(actor, id_from_page(invitation_id, "No such invitation.")),
                                stripe=False)
        if ok:
            async with self:
                self.message = "Invitation revoked: its link no longer works."

    @rx.event(background=True)
    async def remove(self, user_id: str):
        row, ok = await self._run(f"remove:{user_id}", lambda actor: members.remove_member(actor, id_from_page(user_id, "Unknown member.")))
        if ok:
            async with self:
                self.message = f"{row.email} was removed from the organization."

    @rx.event(background=True)
    async def leave(self):
        _, ok = await self._run("leave", members.leave, admin=False, reload=False)
        if ok:
            yield rx.redirect(routes.HOME)

    @rx.event(background=True)
    async def change_role(self, user_id: str, role: str):
        """A background event: the change waits for the org's seat claim (a removal or a paid seat
        change may hold it), which must not hold this tab's state lock meanwhile."""
        row, ok = await self._run(f"role:{user_id}", lambda actor: members.change_role(
            actor, user_id=id_from_page(user_id, UNKNOWN_MEMBER_OR_ROLE), role=_role_from_page(role)), stripe=False)
        if ok:
            async with self:
                self.message = f"{row.email} is now {row.role.label}."
            return
        try:  # put the select back to the real role
            actor = await self._actor_in_background(keep_org=True)
            data = await asyncio.to_thread(_read, actor)
        except AppError:
            return
        async with self:
            self._show_team(data)


def _role_from_page(role) -> Role:
    try:
        return Role(role)
    except ValueError:  # not one of the roles
        raise AppError(ErrorCode.VALIDATION_ERROR, UNKNOWN_MEMBER_OR_ROLE) from None

def _role_items() -> list[rx.Component]:
    """Each role in words; its value the identifier the server takes."""
    return [rx.select.item(role.label, value=role.value) for role in Role]


def _role_cell(member) -> rx.Component:
    return rx.cond(
        AuthState.is_admin,
        rx.select.root(
            rx.select.trigger(aria_label="Role of " + member.email),
            rx.select.content(*_role_items()),
            value=member.role,
            on_change=lambda role: MembersState.change_role(member.user_id, role),
            size="2",
        ),
        rx.badge(member.role_label, variant="soft"),
    )


def _seats_card() -> rx.Component:
    return seats_card(MembersState.seats_text, MembersState.seats_used, MembersState.seats_cap, MembersState.seat_warning,
                      text_id="seats-used", warning_id="seat-warning")


def _invite_form() -> rx.Component:
    return rx.card(
        rx.form(
            rx.vstack(
                rx.heading("Invite someone", size="4", as_="h2"),
                rx.text("They get a link to accept, as the email you enter. It expires in 7 days.", size="2", color_scheme="gray"),
                rx.flex(
                    rx.input(name="email", type="email", placeholder="colleague@company.com", required=True, flex="1",
                             min_width="12em", id="invite-email", aria_label="Email to invite"),
                    rx.select.root(
                        rx.select.trigger(aria_label="Their role"),
                        rx.select.content(*_role_items()),
                        name="role", default_value="member",
                    ),
                    rx.button("Invite", type="submit", id="invite", loading=MembersState.busy == "invite"),
                    spacing="2",
                    wrap="wrap",
                    width="100%",
                ),
                rx.cond(MembersState.cost_preview != "", rx.text(MembersState.cost_preview, size="2", id="cost-preview")),
                width="100%",
            ),
            on_submit=MembersState.invite,
            reset_on_submit=True,
        ),
        width="100%",
        id="invite-card",
    )


def _new_invite_link() -> rx.Component:
    return shown_once(INVITE_URL.value, "link", id="invite-url")


def _asked_first(trigger: rx.Component, title, description, action: rx.Component) -> rx.Component:
    """`trigger` opens a question; only its `action` button acts (leaving or removing cannot be undone)."""
    return rx.alert_dialog.root(
        rx.alert_dialog.trigger(trigger),
        rx.alert_dialog.content(
            rx.alert_dialog.title(title),
            rx.alert_dialog.description(description, size="2"),
            rx.flex(
                rx.alert_dialog.cancel(rx.button("Cancel", variant="soft", color_scheme="gray")),
                rx.alert_dialog.action(action),
                spacing="3", justify="end", margin_top="1em",
            ),
        ),
    )


def _leave_button() -> rx.Component:
    return _asked_first(
        rx.button("Leave", size="1", variant="soft", color_scheme="gray", loading=MembersState.busy == "leave", id="leave-org"),
        rx.fragment("Leave ", AuthState.org_name, "?"),
        "You will need a new invitation to come back.",
        rx.button("Leave", color_scheme="red", on_click=MembersState.leave, id="confirm-leave"),
    )


def _remove_button(m) -> rx.Component:
    return _asked_first(
        rx.button("Remove", size="1", variant="soft", color_scheme="red", loading=MembersState.busy == "remove:" + m.user_id,
                  class_name="remove-member"),
        rx.fragment("Remove ", m.email, " from ", AuthState.org_name, "?"),
        rx.fragment("They lose access at once and need a new invitation to come back.", MembersState.removal_note),
        rx.button("Remove", color_scheme="red", on_click=MembersState.remove(m.user_id), class_name="confirm-remove"),
    )


def _member_row(m) -> rx.Component:
    return rx.table.row(
        rx.table.cell(m.email),
        rx.table.cell(m.name),
        rx.table.cell(_role_cell(m)),
        rx.table.cell(rx.cond(m.is_self, _leave_button(), rx.cond(AuthState.is_admin, _remove_button(m)))),
        class_name="member-row",
    )


def _invitation_row(i) -> rx.Component:
    return rx.table.row(
        rx.table.cell(i.email, rx.cond(i.last_error != "", rx.text(i.last_error, size="1", color_scheme="red", class_name="invite-error"))),
        rx.table.cell(rx.badge(i.role_label, variant="soft")),
        rx.table.cell(i.expires),
        rx.table.cell(
            rx.cond(
                AuthState.is_admin,
                rx.button("Revoke", size="1", variant="soft", color_scheme="red", on_click=MembersState.revoke(i.id),
                          loading=MembersState.busy == "revoke:" + i.id, class_name="revoke-invitation"),
            ),
        ),
        class_name="invitation-row",
    )


@rx.page(route=routes.MEMBERS, title="Members · Billing", on_load=MembersState.load)
def members_page() -> rx.Component:
    return page_frame(
        rx.heading("Members of ", AuthState.org_name, size="6"),
        error_callout(MembersState.error),
        info_callout(MembersState.message),
        _new_invite_link(),
        _seats_card(),
        rx.cond(AuthState.is_admin, _invite_form(), rx.text("Only admins can invite members or change roles.", color_scheme="gray", size="2")),
        data_table(["Email", "Name", "Role", ""], rx.foreach(MembersState.members, _member_row)),
        rx.cond(
            MembersState.invitations.length() > 0,
            rx.vstack(
                rx.heading("Pending invitations", size="4", as_="h2"),
                data_table(["Email", "Role", "Expires", ""], rx.foreach(MembersState.invitations, _invitation_row)),
                width="100%",
                id="pending-invitations",
            ),
        ),
    )
