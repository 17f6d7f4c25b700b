"""All configuration, read once from the environment and `.env`.

Every environment variable the app reads is a field here, and `.env.example`
documents each one. A missing or malformed value stops start-up with one line
that names the variable (see `load_settings`).
"""

from __future__ import annotations

import functools
import sys

from pydantic import AnyHttpUrl, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # SQLite by default so `make run` needs nothing; PostgreSQL via postgresql+psycopg://...
    database_url: str = "sqlite:///.data/billing.db"
    # Where users reach the app; Stripe redirects back here after Checkout and the Portal.
    app_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:3000")
    # Unset means billing is not configured: the billing pages say so instead of failing.
    stripe_secret_key: str | None = None
    # Comma-separated so a secret can be rotated: old and new are both accepted meanwhile.
    stripe_webhook_secret: str | None = None
    # Set only for the offline sandbox (e.g. http://127.0.0.1:12111); unset means real Stripe.
    stripe_api_base: AnyHttpUrl | None = None
    session_lifetime_hours: int = Field(default=24 * 7, ge=1, le=24 * 90)
    # Login throttling: this many failures for one email within the window locks it for the window.
    login_max_failures: int = Field(default=5, ge=1)
    login_window_minutes: int = Field(default=15, ge=1)
    # A past_due subscription keeps access this many days after its period began (the failed renewal).
    past_due_grace_days: int = Field(default=7, ge=0, le=60)

    @field_validator("database_url")
    @classmethod
    def _database_url_parses(cls, value: str) -> str:
        try:
            url = make_url(value)
        except Exception as exc:  # sqlalchemy raises ArgumentError with a long text
            raise ValueError("not a database URL (e.g. sqlite:///.data/billing.db)") from exc
        if url.get_backend_name() not in {"sqlite", "postgresql"}:
            raise ValueError("only sqlite:// and postgresql+psycopg:// are supported")
        return value

    @field_validator("stripe_secret_key")
    @classmethod
    def _stripe_key_shape(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("sk_", "rk_")):
            raise ValueError("must start with sk_ or rk_")
        return value

    @field_validator("stripe_webhook_secret")
    @classmethod
    def _webhook_secret_shape(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not all(part.strip().startswith("whsec_") for part in value.split(",")):
            raise ValueError("each comma-separated secret must start with whsec_")
        return value

    @property
    def billing_configured(self) -> bool:
        return self.stripe_secret_key is not None

    @property
    def webhook_secrets(self) -> list[str]:
        return [s.strip() for s in (self.stripe_webhook_secret or "").split(",") if s.strip()]

    def url(self, path: str) -> str:
        """An absolute URL of the app for `path` (used in links Stripe redirects to)."""
        return str(self.app_url).rstrip("/") + path


def describe_error(error: ValidationError) -> str:
    """One line naming each bad variable, as the user would type it."""
    parts = []
    for item in error.errors():
        name = str(item["loc"][0]).upper() if item["loc"] else "configuration"
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{name}: {message}")
    return "Configuration error: " + "; ".join(parts)


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings; on a bad value, print one clear line and exit (no traceback)."""
    try:
        return Settings()
    except ValidationError as error:
        print(describe_error(error), file=sys.stderr)
        raise SystemExit(2) from None
