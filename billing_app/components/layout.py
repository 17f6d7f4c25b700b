"""The page frame: a navbar (app name, current org and role, links, user menu) and content."""

from __future__ import annotations

import json

import reflex as rx
from reflex.vars import FunctionStringVar

from billing_app import routes
from billing_app.state import AuthState

MOBILE_ONLY = rx.breakpoints(initial="flex", md="none")
NAV_LINKS = [("Pricing", routes.PRICING), ("Billing", routes.BILLING)]
# Shown to admins only: a member may not open them.
ADMIN_LINKS = [("Payments", routes.PAYMENTS)]


def link_button(*children, href, is_external: bool = False, **button_props) -> rx.Component:
    """A link that looks like a button: one <a> (a button inside a link is two controls in one)."""
    return rx.button(rx.link(*children, href=href, is_external=is_external, underline="none"), as_child=True, **button_props)


def focus_on_close(*selectors: str) -> FunctionStringVar:
    """A dialog's `on_close_auto_focus` when a plain button opens it (no Radix trigger, which Radix
    would refocus itself): keyboard focus goes to the first of `selectors` on the page, not <body>."""
    return FunctionStringVar.create(
        f"(e) => {{ e.preventDefault(); {json.dumps(list(selectors))}"
        ".map((s) => document.querySelector(s)).find(Boolean)?.focus(); }"
    )


def _nav_link(label: str, href: str) -> rx.Component:
    return rx.link(label, href=href, size="3", weight="medium", color_scheme="gray", high_contrast=True)


def _org_badge() -> rx.Component:
    return rx.cond(
        AuthState.org_id != 0,
        rx.hstack(
            rx.text(AuthState.org_name, size="2", weight="bold", trim="both", id="nav-org"),
            rx.badge(AuthState.role_label, variant="soft", color_scheme="iris", id="nav-role"),
            align="center",
            spacing="2",
        ),
        # Left or removed from their last one: no name and no role to show (the home page offers a new one).
        rx.text("No organization", size="2", color_scheme="gray", trim="both", id="nav-org"),
    )


def _menu_label(text) -> rx.Component:
    return rx.box(rx.text(text, size="1", color_scheme="gray"), padding_x="0.75em", padding_y="0.35em")


def _user_menu() -> rx.Component:
    return rx.menu.root(
        rx.menu.trigger(
            rx.button(rx.icon("user", size=16), rx.text("Account", display=["none", "none", "inline"]), variant="soft", id="user-menu",
                      aria_label="Account"),
        ),
        rx.menu.content(
            _menu_label(AuthState.user_email),
            # On narrow screens the navbar links live here instead.
            *[rx.menu.item(label, on_select=rx.redirect(href), display=MOBILE_ONLY) for label, href in NAV_LINKS],
            *[rx.cond(AuthState.is_admin, rx.menu.item(label, on_select=rx.redirect(href), display=MOBILE_ONLY)) for label, href in ADMIN_LINKS],
            rx.menu.separator(display=MOBILE_ONLY),
            rx.menu.item("Members", on_select=rx.redirect(routes.MEMBERS)),
            rx.menu.item("API tokens", on_select=rx.redirect(routes.ACCOUNT_TOKENS)),
            rx.menu.item("Account security", on_select=rx.redirect(routes.ACCOUNT_SECURITY)),
            rx.cond(AuthState.is_admin, rx.menu.item("Email notifications", on_select=rx.redirect(routes.ACCOUNT_NOTIFICATIONS))),
            rx.cond(
                AuthState.orgs.length() > 1,
                rx.fragment(
                    rx.menu.separator(),
                    _menu_label("Switch organization"),
                    rx.foreach(
                        AuthState.orgs,
                        lambda org: rx.menu.item(
                            org["name"],
                            on_select=AuthState.switch_org(org["id"]),
                            disabled=org["id"] == AuthState.org_id.to_string(),
                        ),
                    ),
                ),
            ),
            rx.menu.separator(),
            rx.menu.item("Log out", color="red", on_select=AuthState.logout, id="logout"),
        ),
    )


def navbar() -> rx.Component:
    return rx.box(
        rx.hstack(
            rx.hstack(
                rx.link(
                    # The app's name, not a heading: each page's own title is its one h1.
                    rx.hstack(rx.icon("credit-card", size=22), rx.text("Billing", size="5", weight="bold"), align="center", spacing="2"),
                    href=routes.HOME,
                    underline="none",
                    color_scheme="gray",
                    high_contrast=True,
                ),
                rx.hstack(
                    *[_nav_link(label, href) for label, href in NAV_LINKS],
                    *[rx.cond(AuthState.is_admin, _nav_link(label, href)) for label, href in ADMIN_LINKS],
                    spacing="5", padding_left="1.5em", display=rx.breakpoints(initial="none", md="flex"),
                ),
                align="center",
            ),
            rx.cond(
                AuthState.is_authenticated,
                rx.hstack(_org_badge(), _user_menu(), align="center", spacing="3"),
                rx.hstack(
                    link_button("Log in", href=routes.LOGIN, variant="soft"),
                    link_button("Sign up", href=routes.REGISTER),
                    spacing="2",
                ),
            ),
            justify="between",
            align="center",
            width="100%",
            wrap="wrap",
            spacing="3",
        ),
        padding_x=["1em", "1.5em", "2em"],
        padding_y="0.9em",
        border_bottom="1px solid var(--gray-a5)",
        background="var(--color-panel-solid)",
        position="sticky",
        top="0",
        z_index="10",
        width="100%",
    )


# Keyboard focus drawn on every control, whatever draws it (Radix, native, links); native controls
# and labels in the theme's look; a Radix table scrolls in its (focusable) wrapper, not in an inner
# area a keyboard cannot reach.
FRAME_STYLE = (
    ":is(a,button,input,select,textarea,[tabindex]):focus-visible{outline:2px solid var(--accent-9);outline-offset:2px}"
    ".field-label{font-size:var(--font-size-2);font-weight:500;color:var(--gray-12)}"
    ".native-select{width:100%;padding:6px 8px;border:1px solid var(--gray-a7);border-radius:var(--radius-2);"
    "background:var(--color-surface);color:var(--gray-12);font-size:var(--font-size-2);min-height:32px}"
    ".rt-TableRoot .rt-ScrollAreaRoot,.rt-TableRoot .rt-ScrollAreaViewport{overflow:visible!important}"
)


def scroll_region(child: rx.Component, label: str, **props) -> rx.Component:
    """A wide table's scrolling box, reachable by keyboard (a scrollable region must be focusable)."""
    return rx.box(child, overflow_x="auto", width="100%", tab_index=0, role="region", aria_label=label, **props)


def data_table(headers, body, *, region: str = "", **props) -> rx.Component:
    """A surface table with one header row; `body` is its rows (an rx.foreach). It scrolls sideways
    in a keyboard-reachable scroll_region named `region`, or without one in a plain box."""
    table = rx.table.root(
        rx.table.header(rx.table.row(*[rx.table.column_header_cell(h) for h in headers])),
        rx.table.body(body),
        width="100%",
        variant="surface",
        **props,
    )
    return scroll_region(table, region) if region else rx.box(table, overflow_x="auto", width="100%")


def shown_once(secret, what: str, id: str) -> rx.Component:
    """A secret the server gives out once (a client-side var's value): shown with a Copy button while set."""
    return rx.cond(
        secret != "",
        rx.callout.root(
            rx.callout.text(rx.text.strong(f"Copy this {what} now; it will not be shown again.")),
            rx.hstack(
                # high_contrast throughout: the tint's own text colours fall below 4.5:1 on it.
                rx.code(secret, id=id, size="3", high_contrast=True, style={"word_break": "break-all"}),
                rx.button(rx.icon("copy", size=14), "Copy", size="1", variant="soft", high_contrast=True, on_click=rx.set_clipboard(secret)),
                align="center",
                wrap="wrap",
            ),
            color_scheme="green",
            high_contrast=True,
            width="100%",
        ),
    )


def page_frame(*children: rx.Component, max_width: str = "64em") -> rx.Component:
    return rx.box(
        rx.el.style(FRAME_STYLE),
        navbar(),
        # <main>: the landmark a screen reader jumps to, past the navbar.
        rx.el.main(rx.container(rx.vstack(*children, spacing="5", width="100%"), size="3", padding_x=["1em", "1.5em"], padding_y="2em", max_width=max_width)),
        min_height="100vh",
        background="var(--gray-2)",
    )


def page_heading(title, error=None, message=None) -> rx.Component:
    """A page's title, and under it the page's `error` and `message` callouts (when given) while they are set."""
    return rx.fragment(
        rx.heading(title, size="7"),
        *([error_callout(error)] if error is not None else []),
        *([info_callout(message)] if message is not None else []),
    )


def not_found() -> rx.Component:
    """Word for word what Reflex shows for a route it does not have (pages that must not be advertised)."""
    return rx.box(rx.text.span("404: Page not found"), id="not-found")


def warning_callout(message, color_scheme: str, *, alert: bool = False, **props) -> rx.Component:
    """`message` with a warning sign while it is not empty; `alert`: announced to screen readers as it appears."""
    return rx.cond(
        message != "",
        rx.callout(message, icon="triangle-alert", color_scheme=color_scheme, width="100%", **({"role": "alert"} if alert else {}), **props),
    )


def error_callout(message) -> rx.Component:
    return warning_callout(message, "red", alert=True)


def info_callout(message) -> rx.Component:
    # tabindex -1: a flow may move keyboard focus to its outcome (the cancellation dialog does).
    return rx.cond(message != "", rx.callout(message, icon="info", width="100%", role="status", tab_index=-1))
