"""Every route of the app in one place, so links and redirects cannot drift apart."""

HOME = "/"
LOGIN = "/login"
REGISTER = "/register"
MEMBERS = "/org/members"
PRICING = "/pricing"
BILLING = "/billing"
BILLING_CONFIRM = "/billing/confirm"
PAYMENTS = "/billing/payments"

# Custom HTTP routes served by the backend (see billing_app/api).
API_PREFIX = "/api"
API_HEALTH = "/api/health"


def login_url(next_path: str | None = None) -> str:
    """The login page, returning to `next_path` afterwards (only local paths are kept)."""
    if next_path and next_path.startswith("/") and not next_path.startswith("//") and next_path != LOGIN:
        from urllib.parse import quote

        return f"{LOGIN}?next={quote(next_path)}"
    return LOGIN
