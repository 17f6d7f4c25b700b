"""Small steps a person takes in the browser, shared by the browser tests."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR", "screenshots"))


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


def register(page, app, *, email: str, password: str = "a-long-password-1", org: str = "Test Org", name: str = "Tess"):
    page.goto(f"{app.url}/register")
    page.fill("#name", name)
    page.fill("#email", email)
    page.fill("#password", password)
    page.fill("#org_name", org)
    page.click("#register-submit")


def login(page, app, *, email: str, password: str = "a-long-password-1"):
    page.goto(f"{app.url}/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("#login-submit")


def screenshot(page, name: str) -> None:
    """Saved for a reviewer to look at (not committed; see .gitignore)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-{page.viewport_size['width']}.png"), full_page=True)
