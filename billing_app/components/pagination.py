"""Keyset pagination shared by the list pages (payments, the operator's organizations, events and audit log)."""

from __future__ import annotations

import reflex as rx

from billing_app.state import in_a_thread


class KeysetPages(rx.State, mixin=True):
    """`cursors` opened each page so far ("" for the first), `next_cursor` the next ("" at the end).

    A page's State mixes this in, has `rows` (and `error` for `_page_refused`), and defines `_fetch(cursor) -> bool`
    (False when the page could not be read, which leaves the position unchanged), ending in
    `_show_page` or `_page_refused`.
    """

    cursors: list[str] = []
    next_cursor: str = ""

    def _fetch(self, cursor: str) -> bool:
        raise NotImplementedError

    def _show_page(self, rows: list, next_cursor: str | None) -> bool:
        self.rows, self.next_cursor = rows, next_cursor or ""
        return True

    def _page_refused(self, message: str) -> bool:
        """The page could not be read (a filter refused): say why, and show no rows and no next page."""
        self.error, self.rows, self.next_cursor = message, [], ""
        return False

    def _first_page(self) -> None:
        self.cursors = [""]
        self._fetch("")

    def _refetch(self) -> None:
        """Read the page in view again (after an action changed what it lists)."""
        self._fetch(self.cursors[-1] if self.cursors else "")

    @in_a_thread
    def next_page(self):
        cursor = self.next_cursor
        if cursor and self._fetch(cursor):
            self.cursors = [*self.cursors, cursor]

    @in_a_thread
    def previous_page(self):
        if len(self.cursors) > 1:
            self.cursors = self.cursors[:-1]
            self._fetch(self.cursors[-1])

    @rx.var
    def page_number(self) -> int:
        return len(self.cursors)


def pager(state: type[KeysetPages], prev_id: str, next_id: str) -> rx.Component:
    """Previous, the page number and Next under a list."""
    return rx.hstack(
        rx.button("Previous", variant="soft", on_click=state.previous_page, disabled=state.page_number <= 1, id=prev_id),
        rx.text("Page ", state.page_number, size="2"),
        rx.button("Next", variant="soft", on_click=state.next_page, disabled=state.next_cursor == "", id=next_id),
        justify="end",
        align="center",
        width="100%",
    )
