"""Text a user types that the app stores or passes on: no control characters.

PostgreSQL refuses a NUL in any text (a 500 instead of an answer) and a line break in a name
becomes a line break in an email header, so names, emails, addresses and search terms refuse
controls (NUL, CR, LF, DEL, C1), lone surrogates, line and paragraph separators, and the
bidirectional overrides that make text read otherwise than it is stored, with a clear message.
Other format characters stay allowed: the zero-width (non-)joiner is part of how Persian and
Indic names, and emoji sequences, are written.

Text that comes from Stripe is not ours to refuse: `without_nul` drops what PostgreSQL cannot
store and leaves the rest as Stripe holds it (billing/gateway.py applies it to everything read).
"""

from __future__ import annotations

import unicodedata

from billing_app.errors import AppError, ErrorCode


REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def has_control_characters(text: str) -> bool:
    return any(char in BIDI_CONTROLS or unicodedata.category(char) in REFUSED_CATEGORIES for char in text)


def has_invisible_characters(text: str) -> bool:
    """Any character of Unicode's C* categories (controls, format characters such as a zero-width
    space, private use, unassigned): stricter, for what is no name but an address (an email)."""
    return any(unicodedata.category(char).startswith("C") for char in text)


def control_characters_message(what: str) -> str:
    return f"{what} cannot contain line breaks or control characters."


def refuse_control_characters(text: str, what: str) -> str:
    """`text` unchanged, or a VALIDATION_ERROR naming `what` ("The token name")."""
    if has_control_characters(text):
        raise AppError(ErrorCode.VALIDATION_ERROR, control_characters_message(what))
    return text


def without_nul(value):
    """`value` (Stripe's JSON: dicts, lists, strings, numbers) with every NUL dropped from its strings.

    Anyone with dashboard or portal access can put a NUL in a name, an address or metadata; PostgreSQL
    refuses it in any text column, so one such value would fail every sync of that customer for good.
    Nothing else is changed (SQLite stores a NUL, but both databases mirror the same text)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value
