"""Every route of the app in one place, so links and redirects cannot drift apart."""

from urllib.parse import urlencode

HOME = "/"
LOGIN = "/login"
REGISTER = "/register"
MEMBERS = "/org/members"
PRICING = "/pricing"
BILLING = "/billing"
BILLING_CONFIRM = "/billing/confirm"
PAYMENTS = "/billing/payments"
ACCOUNT_TOKENS = "/account/tokens"

# Custom HTTP routes served by the backend (see billing_app/api).
API_PREFIX = "/api"
API_HEALTH = "/api/health"
API_PAYMENTS_CSV = "/api/billing/payments.csv"
API_STRIPE_WEBHOOK = "/api/stripe/webhook"


def is_local_path(path: str) -> bool:
    """Only paths on this site may be redirect targets (no //evil.example)."""
    return path.startswith("/") and not path.startswith("//") and "\\" not in path


def login_url(next_path: str | None = None, reason: str | None = None) -> str:
    """The login page, returning to `next_path` afterwards; `reason` picks a fixed notice."""
    query = {}
    if next_path and is_local_path(next_path) and next_path != LOGIN:
        query["next"] = next_path
    if reason:
        query["reason"] = reason
    return f"{LOGIN}?{urlencode(query)}" if query else LOGIN
