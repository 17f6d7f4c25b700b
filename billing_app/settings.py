"""All configuration, read once from the environment and `.env`.

Every environment variable the app reads is a field here, and `.env.example`
documents each one. A missing or malformed value stops start-up with one line
that names the variable (see `load_settings`).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, AnyHttpUrl, BeforeValidator, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url


def _smtp_url_parses(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("must look like smtp://user:pass@host:587 or smtps://host:465")
    try:
        parts.port
    except ValueError:
        raise ValueError("the port must be a number") from None
    return value


def _redis_url_parses(value: str) -> str:
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must look like redis://host:6379/0")
    return value


def _stripe_key_shape(value: str) -> str:
    if not value.startswith(("sk_", "rk_")):
        raise ValueError("must start with sk_ or rk_")
    return value


def _webhook_secrets_shape(value: str) -> str:
    if not all(part.strip().startswith("whsec_") for part in value.split(",")):
        raise ValueError("each comma-separated secret must start with whsec_")
    return value


def _optional(check: Callable[[str], str]):
    """A setting that may be unset: absent or empty (`SMTP_URL=`) is None; a value must pass `check`."""
    return Annotated[Annotated[str, AfterValidator(check)] | None, BeforeValidator(lambda value: value or None)]


SmtpUrl = _optional(_smtp_url_parses)
RedisUrl = _optional(_redis_url_parses)
StripeSecretKey = _optional(_stripe_key_shape)
WebhookSecrets = _optional(_webhook_secrets_shape)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # SQLite by default so `make run` needs nothing; PostgreSQL via postgresql+psycopg://...
    database_url: str = "sqlite:///.data/billing.db"
    # Where users reach the app; Stripe redirects back here after Checkout and the Portal.
    app_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:3000")
    # Unset means billing is not configured: the billing pages say so instead of failing.
    stripe_secret_key: StripeSecretKey = None
    # Comma-separated so a secret can be rotated: old and new are both accepted meanwhile.
    stripe_webhook_secret: WebhookSecrets = None
    # Set only for the offline sandbox (e.g. http://127.0.0.1:12111); unset means real Stripe.
    stripe_api_base: AnyHttpUrl | None = None
    # Stripe Tax: Checkout computes tax from the billing address, and so do the subscription's invoices.
    stripe_automatic_tax: bool = False
    session_lifetime_hours: int = Field(default=24 * 7, ge=1, le=24 * 90)
    # Login throttling (growing delays, never a hard lock for a device that signed in before):
    # failures allowed for one email from one client before each attempt must wait, the wait
    # doubling from 5 s up to LOGIN_WINDOW_MINUTES; LOGIN_CLIENT_MAX_FAILURES over all emails from
    # one client, and LOGIN_EMAIL_MAX_FAILURES for one email from clients that never signed in to it.
    login_max_failures: int = Field(default=5, ge=1)
    login_window_minutes: int = Field(default=15, ge=1)
    login_client_max_failures: int = Field(default=20, ge=1)
    login_email_max_failures: int = Field(default=20, ge=1)
    # Request rate limits ("N/second|minute|hour|day", several with ";"), counted in RATE_LIMIT_STORAGE
    # (memory:// for one process; redis://host:6379 shares them between processes).
    rate_limit_storage: str = "memory://"
    rate_limit_login_ip: str = "20/minute;200/hour"
    rate_limit_login_email: str = "10/minute;60/hour"
    rate_limit_register_ip: str = "10/minute;50/hour"
    rate_limit_stripe_org: str = "120/minute;1000/hour"
    rate_limit_stripe_user: str = "30/minute;300/hour"
    rate_limit_api_token: str = "600/minute"
    # REST requests whose (well-formed) token was refused, per client address: past it, refused tokens
    # from there answer 429, so nobody can try made-up, revoked or expired tokens forever; a valid
    # token is never refused by it (a neighbour behind the same NAT keeps working).
    rate_limit_api_auth_failures_ip: str = "60/minute"
    rate_limit_account_user: str = "10/minute"
    # Invitation emails to one address (lower-cased), from any org: anyone can sign up as an admin and
    # name the org and inviter the email shows, so re-inviting must not make the app a spam relay.
    rate_limit_invitation_email: str = "5/hour;20/day"
    # Invitation emails from one organization, whatever the addresses: without it one org could
    # invite (and revoke) a new address each time and mail anyone.
    rate_limit_invitation_org: str = "20/hour;100/day"
    # Reset emails asked for from one client address, whatever the emails: one browser must not mail
    # every account it can name.
    rate_limit_reset_ip: str = "5/minute;20/hour"
    # Reset emails to one address (lower-cased), from any clients: many addresses must not flood one
    # inbox. Past it nothing is sent and /forgot answers as usual (no hint of who has an account).
    # No longer than a link's hour: whenever it holds a request back, a live link is in the inbox
    # (a daily cap would let a stranger's few requests block the owner's recovery for the day).
    rate_limit_reset_email: str = "3/hour"
    # Password hashing runs in this many threads (argon2id takes about 64 MiB and 0.1 s each); at
    # most PASSWORD_HASH_QUEUE more wait, beyond that a login is refused as busy (429).
    password_hash_workers: int = Field(default=2, ge=1, le=32)
    password_hash_queue: int = Field(default=32, ge=0)
    # API tokens: at most this many live tokens per user (over all their organizations).
    api_tokens_per_user: int = Field(default=20, ge=1)
    # A past_due subscription keeps access this many days after its period began (the failed renewal).
    past_due_grace_days: int = Field(default=7, ge=0, le=60)
    # How a seat change of a per-seat plan is billed: create_prorations (on the next invoice, so a
    # burst of changes makes no burst of invoices), always_invoice (billed at once), none.
    seat_proration: Literal["create_prorations", "always_invoice", "none"] = "create_prorations"
    # Email (billing_app/notifications): unset SMTP_URL keeps every message in the outbox, shown
    # at /dev/mail in development (never in a --prod build); nothing leaves the machine. Set, /dev/mail is off.
    # smtp://user:pass@host:587 (STARTTLS, required unless the host is loopback) or smtps://host:465;
    # the certificate is verified (system CAs, or SSL_CERT_FILE).
    smtp_url: SmtpUrl = None
    mail_from: str = "Billing <billing@localhost>"
    # The product's name in email subjects and layouts.
    product_name: str = "billing_app"
    # The webhook and mail workers run inside the backend process (one process, `make run`). Set false
    # when they run as their own processes (`python -m billing_app worker`), e.g. beside N backends.
    run_workers_in_backend: bool = True
    # The webhook worker syncs up to this many customers of one pass at once (each sync is a few
    # Stripe reads, then one short transaction): a burst of changes reaches open pages sooner.
    webhook_sync_concurrency: int = Field(default=4, ge=1, le=16)
    # An idle webhook worker looks for due events this often (retries come due on their own); a new
    # event wakes it at once: in its process directly, in a `worker` process through Redis.
    webhook_poll_seconds: float = Field(default=1.0, gt=0, le=300)
    # Several backend processes (`serve --prod --backends N`): redis://host:6379/0 carries live
    # page updates between them (billing_app/live.py) and is checked by /api/ready. Every key and
    # channel the app makes starts with REDIS_KEY_PREFIX, so two deployments (or test runs) can
    # share one Redis server.
    redis_url: RedisUrl = None
    redis_key_prefix: str = "billing_app:"

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

    @field_validator(
        "rate_limit_login_ip", "rate_limit_login_email", "rate_limit_register_ip",
        "rate_limit_stripe_org", "rate_limit_stripe_user", "rate_limit_api_token", "rate_limit_api_auth_failures_ip", "rate_limit_account_user", "rate_limit_invitation_email",
        "rate_limit_invitation_org", "rate_limit_reset_ip", "rate_limit_reset_email",
    )
    @classmethod
    def _rate_limit_parses(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError("must look like 20/minute or 20/minute;200/hour") from None
        return value

    @property
    def billing_configured(self) -> bool:
        return self.stripe_secret_key is not None

    @property
    def webhook_secrets(self) -> list[str]:
        return [s.strip() for s in (self.stripe_webhook_secret or "").split(",") if s.strip()]

    @property
    def app_origin(self) -> str:
        """scheme://host[:port] of APP_URL: the one origin allowed to call the backend with credentials."""
        url = self.app_url
        default = {"http": 80, "https": 443}.get(url.scheme)
        port = f":{url.port}" if url.port and url.port != default else ""
        return f"{url.scheme}://{url.host}{port}"

    @property
    def secure_cookies(self) -> bool:
        return self.app_url.scheme == "https"

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
