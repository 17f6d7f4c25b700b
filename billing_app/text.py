"""Text a user types that the app stores or passes on: no control characters.

PostgreSQL refuses a NUL in any text (a 500 instead of an answer) and a line break in a name
becomes a line break in an email header, so names, emails, addresses and search terms refuse
every character of Unicode category C* (controls such as NUL, CR and LF, format, private use,
unassigned) with a clear message.
"""

from __future__ import annotations

import unicodedata

from billing_app.errors import AppError, ErrorCode


def has_control_characters(text: str) -> bool:
    return any(unicodedata.category(char).startswith("C") for char in text)


def control_characters_message(what: str) -> str:
    return f"{what} cannot contain line breaks or control characters."


def refuse_control_characters(text: str, what: str) -> str:
    """`text` unchanged, or a VALIDATION_ERROR naming `what` ("The token name")."""
    if has_control_characters(text):
        raise AppError(ErrorCode.VALIDATION_ERROR, control_characters_message(what))
    return text
