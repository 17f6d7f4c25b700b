"""Why a login or sign-up form came back, as a key in the URL (never the text itself).

The session routes answer a browser form with a redirect to the form's page carrying
`?error=<key>` (and `&retry=<seconds>` for a wait); the page shows the fixed sentence for the key,
so a link can never make the page say something of its own.
"""

from __future__ import annotations

from billing_app.auth.accounts import BAD_LOGIN, FORM_MESSAGES
from billing_app.auth.passwords import BUSY_MESSAGE, MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from billing_app.errors import AppError, RateLimited

WAIT = "wait"
MESSAGES = {
    "bad_login": BAD_LOGIN,
    "email_taken": FORM_MESSAGES["taken"],
    "invalid_email": FORM_MESSAGES["invalid"],
    "org_missing": FORM_MESSAGES["org_missing"],
    "org_too_long": FORM_MESSAGES["org_too_long"],
    "org_control": FORM_MESSAGES["org_control"],
    "name_control": FORM_MESSAGES["name_control"],
    "short_password": f"Password must be at least {MIN_PASSWORD_LENGTH} characters.",
    "long_password": f"Password must be at most {MAX_PASSWORD_LENGTH} characters.",
    "busy": BUSY_MESSAGE,
    "origin": "Your browser sent this form from another site. Open the page again and retry.",
    "failed": "Something went wrong on our side. Please try again.",
}
_BY_TEXT = {text: key for key, text in MESSAGES.items()}


def key_for(error: AppError) -> str:
    if isinstance(error, RateLimited) and error.message != BUSY_MESSAGE:
        return WAIT
    return _BY_TEXT.get(error.message, "failed")


def text_for(key: str, retry: str = "") -> str:
    """The sentence for a key from the URL ("" for none or an unknown key)."""
    if key == WAIT:
        seconds = int(retry) if retry.isdigit() and len(retry) < 7 else 60
        wait = f"{-(-seconds // 60)} minutes" if seconds >= 90 else f"{seconds} seconds"
        return f"Too many attempts. Try again in {wait}."
    return MESSAGES.get(key, "")
