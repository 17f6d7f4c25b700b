"""Every route of the app in one place, so links and redirects cannot drift apart."""

from urllib.parse import unquote, urlencode, urlsplit

HOME = "/"
LOGIN = "/login"
REGISTER = "/register"
MEMBERS = "/org/members"
PRICING = "/pricing"
BILLING = "/billing"
BILLING_CONFIRM = "/billing/confirm"
PAYMENTS = "/billing/payments"
ACCOUNT_TOKENS = "/account/tokens"
ACCOUNT_SECURITY = "/account/security"
# An invitation's link; the token is the last segment (see invite_path).
INVITE = "/invite/[token]"
# Email (billing_app/notifications): the outbox as a mailbox (development only),
# asking for a password reset link, and using one.
DEV_MAIL = "/dev/mail"
ACCOUNT_NOTIFICATIONS = "/account/notifications"
FORGOT_PASSWORD = "/forgot"
RESET_PASSWORD = "/reset"

# Custom HTTP routes served by the backend (see billing_app/api).
API_PREFIX = "/api"
API_HEALTH = "/api/health"  # liveness: the process answers
API_READY = "/api/ready"  # readiness: the database and Redis (when configured) answer too
API_PAYMENTS_CSV = "/api/billing/payments.csv"
API_STRIPE_WEBHOOK = "/api/stripe/webhook"
# The browser session: these set and clear the HttpOnly cookie (billing_app/api/session.py).
API_SESSION_LOGIN = "/api/session/login"
API_SESSION_REGISTER = "/api/session/register"
API_SESSION_LOGOUT = "/api/session/logout"


def invite_path(token: str) -> str:
    return f"/invite/{token}"


def is_local_path(path: str) -> bool:
    """Only paths on this site may be redirect targets.

    Parsed, not pattern-matched: no scheme, no host (`//evil.example`, `/\\evil`), no control
    characters or whitespace tricks, and no encoded slash or backslash that a later decoding step
    could turn into a host (`/%2F%2Fevil.example`).
    """
    if not isinstance(path, str) or not path.startswith("/") or len(path) > 2000:
        return False
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c == "\\" for c in path):
        return False
    decoded = unquote(path)
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c == "\\" for c in decoded) or decoded.startswith("//"):
        return False
    lowered = path.lower()
    if "%2f" in lowered or "%5c" in lowered:
        return False
    parts = urlsplit(path)
    return not parts.scheme and not parts.netloc and parts.path.startswith("/") and not parts.path.startswith("//")


def safe_next(path: str | None, default: str = HOME) -> str:
    """`path` when it is a local path (is_local_path), else `default`."""
    return path if path and is_local_path(path) else default


def login_url(next_path: str | None = None, reason: str | None = None) -> str:
    """The login page, returning to `next_path` afterwards; `reason` picks a fixed notice."""
    query = {}
    if next_path and is_local_path(next_path) and next_path != LOGIN:
        query["next"] = next_path
    if reason:
        query["reason"] = reason
    return f"{LOGIN}?{urlencode(query)}" if query else LOGIN


# The operator console (billing_app/ops): every page answers non-operators as an unknown page.
OPS = "/ops"
OPS_ORGS = "/ops/orgs"
OPS_ORG = "/ops/orgs/[ops_org]"
OPS_ORG_READ_ONLY = "/ops/orgs/[ops_org]/view"
OPS_EVENTS = "/ops/events"
OPS_ORPHANS = "/ops/orphans"
OPS_AUDIT = "/ops/audit"
API_OPS_ORGS_CSV = "/api/ops/orgs.csv"


def ops_org_url(org_id: int | str, read_only: bool = False) -> str:
    return f"{OPS_ORGS}/{org_id}{'/view' if read_only else ''}"
