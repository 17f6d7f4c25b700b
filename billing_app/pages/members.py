"""Organization members: everyone sees the list; admins add members and change roles."""

from __future__ import annotations

from dataclasses import dataclass

import reflex as rx

from billing_app import routes
from billing_app.auth import accounts
from billing_app.components.layout import error_callout, info_callout, page_frame
from billing_app.db import session_scope
from billing_app.errors import AppError
from billing_app.models import Role
from billing_app.state import AuthState, form_text

ROLE_CHOICES = [r.value for r in Role]


@dataclass
class MemberRow:
    user_id: str = ""
    email: str = ""
    name: str = ""
    role: str = ""


class MembersState(AuthState):
    members: list[MemberRow] = []
    error: str = ""
    message: str = ""

    def _reload(self, actor) -> None:
        with session_scope() as session:
            rows = accounts.list_members(session, actor)
        self.members = [MemberRow(str(r.user_id), r.email, r.name, r.role.value) for r in rows]

    @rx.event
    def load(self):
        self.error = self.message = ""
        try:
            self._reload(self._actor())
        except AppError as error:
            self.members = []
            return self._signed_out(error)

    @rx.event
    def add_member(self, form: dict):
        self.error = self.message = ""
        try:
            actor = self._actor()
            role = Role(form_text(form, "role") or Role.MEMBER.value)
            with session_scope() as session:
                row = accounts.add_member(session, actor, email=form_text(form, "email"), role=role)
            self._reload(actor)
            self.message = f"Added {row.email} as {row.role.value.replace('_', ' ')}."
        except ValueError:
            self.error = "Unknown role."
        except AppError as error:
            self.error = error.message

    @rx.event
    def change_role(self, user_id: str, role: str):
        self.error = self.message = ""
        try:
            actor = self._actor()
            with session_scope() as session:
                row = accounts.change_role(session, actor, user_id=int(user_id), role=Role(role))
            self._reload(actor)
            self.message = f"{row.email} is now {row.role.value.replace('_', ' ')}."
        except (TypeError, ValueError):
            self.error = "Unknown member or role."
        except AppError as error:
            self.error = error.message
            try:
                self._reload(self._actor())  # put the select back to the real role
            except AppError:
                pass


def _role_cell(member) -> rx.Component:
    return rx.cond(
        AuthState.is_admin,
        rx.select.root(
            rx.select.trigger(aria_label="Role of " + member.email),
            rx.select.content(*[rx.select.item(choice, value=choice) for choice in ROLE_CHOICES]),
            value=member.role,
            on_change=lambda role: MembersState.change_role(member.user_id, role),
            size="2",
        ),
        rx.badge(member.role, variant="soft"),
    )


def _add_form() -> rx.Component:
    return rx.card(
        rx.form(
            rx.vstack(
                rx.heading("Add a member", size="4"),
                rx.flex(
                    rx.input(name="email", type="email", placeholder="colleague@company.com", required=True, flex="1", min_width="12em",
                             id="member-email", aria_label="Email of the person to add"),
                    rx.select.root(
                        rx.select.trigger(aria_label="Their role"),
                        rx.select.content(*[rx.select.item(choice, value=choice) for choice in ROLE_CHOICES]),
                        name="role", default_value="member",
                    ),
                    rx.button("Add member", type="submit", id="add-member"),
                    spacing="2",
                    wrap="wrap",
                    width="100%",
                ),
                width="100%",
            ),
            on_submit=MembersState.add_member,
            reset_on_submit=True,
        ),
        width="100%",
        id="add-member-card",
    )


@rx.page(route=routes.MEMBERS, title="Members · Billing", on_load=MembersState.load)
def members_page() -> rx.Component:
    return page_frame(
        rx.heading("Members of ", AuthState.org_name, size="6"),
        error_callout(MembersState.error),
        info_callout(MembersState.message),
        rx.cond(AuthState.is_admin, _add_form(), rx.text("Only admins can add members or change roles.", color_scheme="gray", size="2")),
        rx.table.root(
            rx.table.header(rx.table.row(rx.table.column_header_cell("Email"), rx.table.column_header_cell("Name"), rx.table.column_header_cell("Role"))),
            rx.table.body(
                rx.foreach(
                    MembersState.members,
                    lambda m: rx.table.row(rx.table.cell(m.email), rx.table.cell(m.name), rx.table.cell(_role_cell(m))),
                )
            ),
            width="100%",
            variant="surface",
        ),
    )
