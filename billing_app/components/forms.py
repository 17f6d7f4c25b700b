"""Form pieces with their labels tied on (`<label for>`): what a screen reader and `get_by_label` need."""

from __future__ import annotations

import reflex as rx


def field_label(text, control_id: str) -> rx.Component:
    return rx.el.label(text, html_for=control_id, class_name="field-label")


def labelled(label, control: rx.Component, control_id: str) -> rx.Component:
    """A control under its label."""
    return rx.vstack(field_label(label, control_id), control, spacing="1", width="100%")


def native_select(control_id: str, name: str, options: list[tuple[str, str]], placeholder: str = "", **props) -> rx.Component:
    """A native <select>: labelled by its <label>, keyboard-friendly, styled like the theme (layout.FRAME_STYLE)."""
    items = ([rx.el.option(placeholder, value="")] if placeholder else []) + [rx.el.option(text, value=value) for value, text in options]
    return rx.el.select(*items, id=control_id, name=name, class_name="native-select", **props)
