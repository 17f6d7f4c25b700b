"""SQLModel tables. Schema changes go through Alembic (billing_app/migrations)."""


import enum
import json
from datetime import datetime, timezone

from sqlalchemy import Column, DateTime, Float, Index, LargeBinary, UniqueConstraint, false
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, Relationship, SQLModel


# Integer ids are 32-bit in the database: a larger one from outside is refused before it reaches a
# query (SQLite cannot even bind it).
MAX_ID = 2**31 - 1


def id_from_text(text: str) -> int | None:
    """The id that `text` spells in ASCII digits (1..MAX_ID), else None: str.isdigit alone also
    takes "٧" (int() reads it as 7) and numbers too large to bind."""
    if text.isascii() and text.isdigit() and len(text) <= len(str(MAX_ID)) and 1 <= int(text) <= MAX_ID:
        return int(text)
    return None


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in and out, on every engine (dj-stripe's StripeDateTimeField idea).

    SQLite keeps no zone, so a value is stored as UTC and UTC is attached on read; PostgreSQL
    returns aware values, which are normalised to UTC. A naive value is taken as UTC already.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None or value.tzinfo is None:
            return value
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def timestamp_column(**kwargs) -> Column:
    return Column(UTCDateTime(), **kwargs)


class Role(str, enum.Enum):
    MEMBER = "member"
    ADMIN = "admin"
    SUPER_ADMIN = "super_admin"

    @property
    def rank(self) -> int:
        return {"member": 0, "admin": 1, "super_admin": 2}[self.value]

    @property
    def label(self) -> str:
        """The role in words, as pages show it ("Super admin"); the value is the identifier."""
        return self.value.replace("_", " ").capitalize()

    def at_least(self, other: "Role") -> bool:
        return self.rank >= other.rank


class Organization(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column(nullable=False))


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    # Stored lower-cased, so uniqueness ignores case.
    email: str = Field(max_length=254, unique=True, index=True)
    name: str = Field(default="", max_length=120)
    password_hash: str
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column(nullable=False))
    # Runs the SaaS (the /ops console); granted only on the command line, unrelated to org roles.
    is_operator: bool = Field(default=False, sa_column_kwargs={"server_default": false()})


class Membership(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("user_id", "org_id", name="uq_membership_user_org"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    org_id: int = Field(foreign_key="organization.id", index=True, ondelete="CASCADE")
    role: str = Field(default=Role.MEMBER.value, max_length=20)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column(nullable=False))
    # When the user last made this org their session's current one: a login starts in the latest.
    last_used_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))


class AuthSession(SQLModel, table=True):
    """A browser login. Only the token's SHA-256 is stored, so a database leak is no login."""

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    user_id: int = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    current_org_id: int | None = Field(default=None, foreign_key="organization.id", ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column(nullable=False))
    expires_at: datetime = Field(sa_column=timestamp_column(nullable=False))
    # For the user's own session list ("where am I signed in?"); never used for a decision.
    last_seen_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    user_agent: str = Field(default="", max_length=255)
    client_ip: str = Field(default="", max_length=64)


class ApiToken(SQLModel, table=True):
    """A bearer token for the REST API, bound to one user in one organization."""

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    # The first characters, shown in lists so a user can tell tokens apart.
    prefix: str = Field(max_length=16)
    name: str = Field(default="", max_length=120)
    user_id: int = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    org_id: int = Field(foreign_key="organization.id", index=True, ondelete="CASCADE")
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column(nullable=False))
    last_used_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    # Optional: a token past this moment is refused like a revoked one.
    expires_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))


class LoginThrottle(SQLModel, table=True):
    """Login attempts per throttle key, with a growing delay once too many failed.

    Keys: `ec:<email>|<client>` (one email from one device or address), `c:<client>` (one
    device or address over all emails) and `e:<email>` (one email from devices that never
    signed in to it). A client is a known device (`d:<hash>`) or an address (`ip:<addr>`).
    """

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=400, unique=True, index=True)
    failures: int = 0
    # Attempts are refused until then (set once failures reach the free allowance).
    next_allowed_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column(nullable=False, index=True))


class KnownDevice(SQLModel, table=True):
    """A browser that signed in to this user before (a device cookie, stored as its SHA-256).

    Its owner is never locked out by failures from other clients (OWASP's device cookies).
    """

    __table_args__ = (UniqueConstraint("device_hash", "user_id", name="uq_knowndevice_device_user"),)

    id: int | None = Field(default=None, primary_key=True)
    device_hash: str = Field(max_length=64, index=True)
    user_id: int = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column(nullable=False))
    last_login_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column(nullable=False))


class PasswordReset(SQLModel, table=True):
    """A one-time password reset link (only its SHA-256 is stored); sent by the notifications hook."""

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    user_id: int = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column(nullable=False))
    expires_at: datetime = Field(sa_column=timestamp_column(nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))


class AppMeta(SQLModel, table=True):
    """Facts about this deployment (this database), e.g. its `deployment_id`."""

    key: str = Field(max_length=64, primary_key=True)
    value: str = Field(max_length=255)


# --- billing mirror (Stripe is the source of truth; these rows are what pages read) ---------


class PeriodType(str, enum.Enum):
    MONTHLY = "MONTHLY"
    YEARLY = "YEARLY"
    ALL_TIME = "ALL_TIME"

    @property
    def interval(self) -> str | None:
        """Stripe's recurring interval, or None for a one-off (lifetime) price."""
        return {"MONTHLY": "month", "YEARLY": "year", "ALL_TIME": None}[self.value]


class Plan(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(max_length=120)
    description: str = ""
    # The pricing page's marketing lines (plans.toml `bullets`).
    features_json: str = "[]"
    limits_json: str = "{}"
    # The switches the product checks (plans.toml `features`), e.g. {"sso": true}.
    feature_flags_json: str = "{}"
    # Billed per seat: the subscription item's quantity follows the members, at least min_seats.
    per_seat: bool = False
    min_seats: int = 1
    display_order: int = 0
    legacy: bool = False
    most_popular: bool = False
    # False once the plan left plans.toml; kept so old subscriptions still resolve.
    active: bool = True
    stripe_product_id: str | None = Field(default=None, max_length=255)

    @property
    def features(self) -> list[str]:
        """The marketing lines (kept under this name for the pages and GET /api/subscriptions)."""
        return json.loads(self.features_json or "[]")

    @property
    def feature_flags(self) -> dict[str, bool]:
        return json.loads(self.feature_flags_json or "{}")

    @property
    def limits(self) -> dict:
        return json.loads(self.limits_json or "{}")

    @property
    def seat_cap(self) -> int | None:
        """The most members the plan allows, or None for unlimited (limits.seats, -1 = unlimited)."""
        seats = self.limits.get("seats", -1)
        return None if seats is None or seats < 0 else seats


class PlanPeriod(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("plan_id", "period_type", name="uq_planperiod_plan_type"),)

    id: int | None = Field(default=None, primary_key=True)
    plan_id: int = Field(foreign_key="plan.id", index=True)
    period_type: str = Field(max_length=16)
    amount: int  # in the currency's minor unit (cents)
    currency: str = Field(max_length=3)
    trial_days: int | None = None
    lookup_key: str = Field(max_length=200, unique=True, index=True)
    stripe_price_id: str | None = Field(default=None, max_length=255, index=True)
    active: bool = True

    plan: Plan = Relationship()


class RetiredPrice(SQLModel, table=True):
    """A Stripe price a plan period had before the catalog gave it a new one (prices are immutable:
    a changed amount is a new price). Subscribers still on it keep that plan period (billing/prices.py)."""

    stripe_price_id: str = Field(primary_key=True, max_length=255)
    plan_period_id: int = Field(foreign_key="planperiod.id", index=True)


class BillingCustomer(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organization.id", unique=True, index=True)
    stripe_customer_id: str = Field(max_length=255, unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column(nullable=False))
    # When the Stripe reads behind the mirror's last write of this customer began, by the database's
    # clock: a sync (or reconcile) that read earlier writes nothing (billing/sync.py, fence).
    synced_read_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))


class OrphanCustomer(SQLModel, table=True):
    """A Stripe customer that reached us (a webhook, reconcile) but belongs to no org here.

    Never attached by what its metadata says: an operator attaches it explicitly
    (`python -m billing_app orphans --attach CUS --org ID`), which records who it went to.
    """

    id: int | None = Field(default=None, primary_key=True)
    stripe_customer_id: str = Field(max_length=255, unique=True, index=True)
    email: str = Field(default="", max_length=254)
    name: str = Field(default="", max_length=255)
    # What the customer's metadata claimed (shown to the operator, never trusted).
    claimed_org_id: str = Field(default="", max_length=64)
    first_seen_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column(nullable=False))
    last_seen_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column(nullable=False))
    attached_org_id: int | None = Field(default=None, foreign_key="organization.id", ondelete="SET NULL")
    attached_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))


class SubscriptionStatus(str, enum.Enum):
    """Stripe's subscription statuses; a lifetime purchase row is `active`, or `canceled` once refunded."""

    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELED = "canceled"
    UNPAID = "unpaid"
    PAUSED = "paused"


def _values(*statuses: SubscriptionStatus) -> frozenset[str]:
    # Plain strings: the column holds str, and a str-enum member hashes by its name, not its value.
    return frozenset(s.value for s in statuses)


S = SubscriptionStatus
# The status sets behind the predicates below, for queries (`OrgSubscription.status.in_(...)`).
# Manageable: the org has this plan now and changes it rather than buying again.
MANAGEABLE_STATUSES = _values(S.ACTIVE, S.TRIALING, S.PAST_DUE, S.UNPAID, S.PAUSED)
# Live: the subscription still exists at Stripe (a first payment may still be incomplete).
LIVE_STATUSES = MANAGEABLE_STATUSES | _values(S.INCOMPLETE)
ENDED_STATUSES = _values(S.CANCELED, S.INCOMPLETE_EXPIRED)
PAYMENT_PROBLEM_STATUSES = _values(S.PAST_DUE, S.UNPAID)


def set_to_cancel(cancel_at_period_end: object, cancel_at: object) -> bool:
    """Stripe ends the subscription by itself: at the period end, or at a chosen time (`cancel_at`,
    e.g. the Dashboard's custom date). The model's `is_canceling` and Stripe's fresh copy both ask this."""
    return bool(cancel_at_period_end or cancel_at)


class OrgSubscription(SQLModel, table=True):
    """An org's subscription (sub_...) or one-off lifetime purchase (pi_... / cs_...)."""

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organization.id", index=True)
    stripe_id: str = Field(max_length=255, unique=True, index=True)
    one_off: bool = False
    plan_period_id: int | None = Field(default=None, foreign_key="planperiod.id")
    stripe_price_id: str | None = Field(default=None, max_length=255)
    status: str = Field(max_length=32, index=True)
    current_period_start: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    current_period_end: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    cancel_at_period_end: bool = False
    # When Stripe ends it by itself (the period end too when cancel_at_period_end); None: it renews.
    cancel_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    canceled_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    ended_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True, index=True))
    trial_end: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True, index=True))
    paused: bool = False
    auto_renew: bool = True
    # The live Stripe subscription schedule on it: a downgrade waiting for the period end, or one in
    # its last phase, which Stripe keeps until that phase ends (scheduled_* below: what still waits).
    stripe_schedule_id: str | None = Field(default=None, max_length=255)
    # The subscription item's quantity at Stripe: the purchased seats of a per-seat plan.
    quantity: int = 1
    scheduled_period_id: int | None = Field(default=None, foreign_key="planperiod.id")
    scheduled_change_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    # Collection paused (pause_collection) until then; None while not paused or paused with no end.
    pause_resumes_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    started_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True, index=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column(nullable=False))
    # A discount on each billing period (mirrored by the coupons work; MRR subtracts it).
    discount_percent_off: float | None = Field(default=None, sa_column=Column(Float(), nullable=True))
    discount_amount_off: int | None = None  # minor units per billing period, in the price's currency

    period: PlanPeriod | None = Relationship(
        sa_relationship_kwargs={"foreign_keys": "[OrgSubscription.plan_period_id]"})
    scheduled_period: PlanPeriod | None = Relationship(
        sa_relationship_kwargs={"foreign_keys": "[OrgSubscription.scheduled_period_id]"})

    # Status predicates (Laravel Cashier's habit); each decision about a status is made here.
    @property
    def is_lifetime_held(self) -> bool:
        return self.one_off and self.status == S.ACTIVE.value

    @property
    def is_live(self) -> bool:
        """It still exists at Stripe: a held lifetime purchase, or a subscription not ended."""
        return self.is_lifetime_held if self.one_off else self.status in LIVE_STATUSES

    @property
    def is_manageable(self) -> bool:
        """A subscription the org can cancel or change (and must not buy again)."""
        return not self.one_off and self.status in MANAGEABLE_STATUSES

    @property
    def holds_plan(self) -> bool:
        """The org has this plan now: another purchase would be a second charge."""
        return self.is_lifetime_held or self.is_manageable

    @property
    def has_ended(self) -> bool:
        return self.status in ENDED_STATUSES

    @property
    def is_canceling(self) -> bool:
        """Set to end by itself (at the period end or on a chosen date): Reactivate undoes it."""
        return not self.has_ended and set_to_cancel(self.cancel_at_period_end, self.cancel_at)

    @property
    def ends_at(self) -> datetime | None:
        """When a canceling subscription ends (rows mirrored before `cancel_at` have only the flag)."""
        if not self.is_canceling:
            return None
        return self.cancel_at or self.current_period_end

    @property
    def has_payment_problem(self) -> bool:
        return self.status in PAYMENT_PROBLEM_STATUSES


class Invitation(SQLModel, table=True):
    """An invitation to join an organization, sent to an email address (auth/invitations.py).

    Only the token's SHA-256 is stored. Pending while none of accepted/declined/revoked is set and
    it has not expired; a pending invitation reserves a seat against the plan's cap.
    """

    __table_args__ = (Index("ix_invitation_org_email", "org_id", "email"),)

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organization.id", index=True, ondelete="CASCADE")
    email: str = Field(max_length=254)  # lower-cased
    role: str = Field(default=Role.MEMBER.value, max_length=20)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    invited_by_id: int | None = Field(default=None, foreign_key="user.id", ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column(nullable=False))
    expires_at: datetime = Field(sa_column=timestamp_column(nullable=False))
    accepted_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    accepted_by_id: int | None = Field(default=None, foreign_key="user.id", ondelete="SET NULL")
    declined_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    # Why the last acceptance failed (e.g. Stripe refused the seat change), shown to the admins.
    last_error: str | None = Field(default=None, max_length=500)

    organization: Organization = Relationship()

    @property
    def is_used(self) -> bool:
        return self.accepted_at is not None or self.declined_at is not None

    def is_pending(self, now: datetime | None = None) -> bool:
        return not self.is_used and self.revoked_at is None and self.expires_at > (now or utcnow())


class PurchaseReservation(SQLModel, table=True):
    """One row per org: its one open Checkout, and a short claim taken by whoever changes it.

    The claim is a value in the row (taken by a conditional UPDATE), not a database lock, so
    no lock is held across a Stripe call; a claim left by a dead process lapses on its own.
    """

    org_id: int = Field(primary_key=True, foreign_key="organization.id", ondelete="CASCADE")
    # The holder's claim token (owners.py), so a restarted process takes over a dead one's claim at once.
    claim_id: str | None = Field(default=None, max_length=255)
    claimed_until: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    checkout_session_id: str | None = Field(default=None, max_length=255)
    plan_period_id: int | None = Field(default=None, foreign_key="planperiod.id")


class SeatClaim(SQLModel, table=True):
    """One row per org: a short claim held while its seats change (billing/seats.py), taken like
    the purchase reservation's (a value in the row, never a lock held across a Stripe call)."""

    org_id: int = Field(primary_key=True, foreign_key="organization.id", ondelete="CASCADE")
    claim_id: str | None = Field(default=None, max_length=255)
    claimed_until: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))


class SetAsideChange(SQLModel, table=True):
    """A scheduled plan change (a downgrade waiting for the period end) released for an upgrade whose
    payment may wait for the customer's bank: put back if that upgrade lapses (billing/set_aside.py)."""

    subscription_id: int = Field(primary_key=True, foreign_key="orgsubscription.id", ondelete="CASCADE")
    # The plan, the quantity and the period it was set aside on: it comes back only on those.
    price_id: str = Field(max_length=255)
    quantity: int
    period_end: datetime = Field(sa_column=timestamp_column(nullable=False))
    next_items_json: str  # the schedule's next phase, as a schedule update takes it
    end_behavior: str = Field(max_length=32)
    # Who is acting on it: the upgrade being made, then a sync judging it (a lease, as the seat claim's).
    claim_id: str | None = Field(default=None, max_length=255)
    claimed_until: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    # A sync started putting it back (set before it makes the schedule): a holder taking the row over
    # finishes that write rather than take its half-made schedule for someone else's.
    putting_back: bool = Field(default=False, sa_column_kwargs={"server_default": false()})


class PaymentStatus(str, enum.Enum):
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"
    REFUNDED = "REFUNDED"
    PENDING = "PENDING"
    DISPUTED = "DISPUTED"  # paid, then charged back: the buyer's dispute was lost (the money went back)


class Payment(SQLModel, table=True):
    __table_args__ = (
        Index("ix_payment_org_created", "org_id", "created"),
        # The console's failed-payment recovery rate (ops/metrics.py).
        Index("ix_payment_status_attempts", "status", "attempt_count"),
    )

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organization.id")
    # in_... for invoices, pi_... for one-off payments, cs_... for expired checkouts.
    stripe_id: str = Field(max_length=255, unique=True, index=True)
    status: str = Field(max_length=16)
    amount: int
    currency: str = Field(max_length=3)
    created: datetime = Field(sa_column=timestamp_column(nullable=False))
    description: str = ""
    invoice_url: str | None = None
    receipt_url: str | None = None
    pdf_url: str | None = None
    # Stripe's payment attempts on an invoice: paid with 2 or more means a failed payment recovered.
    attempt_count: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # What the amount is made of (an invoice's subtotal, discounts and tax; None where Stripe gives none).
    subtotal: int | None = None
    discount: int = 0
    tax: int = 0
    # An open invoice whose payment waits for the customer's bank (3-D Secure) on the hosted invoice page.
    action_required: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    # Refunded so far (minor units): a partial refund leaves the status COMPLETED; a full one REFUNDED.
    amount_refunded: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class BillingProfile(SQLModel, table=True):
    """The dashboard's facts about an org's Stripe customer, written by the sync (pages never ask Stripe).

    JSON columns hold small lists read whole: the address, tax IDs, the subscription's running
    discounts and the next invoice as Stripe's invoice preview priced it (see billing/profile.py).
    """

    org_id: int = Field(primary_key=True, foreign_key="organization.id", ondelete="CASCADE")
    email: str = Field(default="", max_length=254)
    name: str = Field(default="", max_length=255)
    address_json: str = "{}"
    tax_ids_json: str = "[]"
    card_brand: str = Field(default="", max_length=32)
    card_last4: str = Field(default="", max_length=4)
    card_exp_month: int | None = None
    card_exp_year: int | None = None
    discounts_json: str = "[]"
    next_invoice_json: str = ""  # "" when there is no next invoice (none live, canceling, paused)
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column(nullable=False))


class RetentionOffer(SQLModel, table=True):
    """The coupon offered once per organization before it cancels (plans.toml [retention])."""

    org_id: int = Field(primary_key=True, foreign_key="organization.id", ondelete="CASCADE")
    coupon_id: str = Field(max_length=255)
    # The offer was shown in the portal's cancel flow (a portal session made with it).
    offered_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    accepted_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    # The cancellation was confirmed while the offer stood (in the app or through the API).
    declined_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))


class WebhookEvent(SQLModel, table=True):
    """Every event Stripe sent us, stored before it is handled (the event log)."""

    __table_args__ = (
        # The worker's "what is due" and "whose events are held" queries.
        Index("ix_webhookevent_state_next_attempt", "state", "next_attempt_at"),
        Index("ix_webhookevent_customer_state", "customer_id", "state"),
    )

    id: int | None = Field(default=None, primary_key=True)
    stripe_event_id: str = Field(max_length=255, unique=True, index=True)
    type: str = Field(max_length=100)
    # The Stripe customer the event is about, so one sync can cover a burst of its events.
    customer_id: str | None = Field(default=None, max_length=255, index=True)
    received_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column(nullable=False))
    processed_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True, index=True))
    # pending -> processed | failed (after the retry limit; replayable by an admin)
    state: str = Field(default="pending", max_length=16, index=True)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    claimed_until: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    # The claim holding the row: its process (host:pid:nonce) and number; see owners.py.
    claimed_by: str | None = Field(default=None, max_length=255)
    last_error: str | None = None
    # The raw body as Stripe sent it. Text, not JSONB: a NUL typed at Stripe arrives as "\u0000",
    # which JSONB refuses (the event would be lost); text and JSON keep it.
    payload: str


# --- the operator console (billing_app/ops) ---------------------------------------------------


class OperatorAudit(SQLModel, table=True):
    """Every operator action: who, what, when, on which target."""

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column(nullable=False, index=True))
    operator_id: int | None = Field(default=None, foreign_key="user.id", index=True, ondelete="SET NULL")
    operator_email: str = Field(max_length=254)  # kept if the user is deleted
    action: str = Field(max_length=40, index=True)  # replay, reconcile, attach_orphan, impersonate_read, ...
    target: str = Field(max_length=255)  # org:12, evt_..., cus_..., all-failed
    detail: str = ""


class ReconcileRun(SQLModel, table=True):
    """One bulk reconcile: its progress (for the command line and /ops) and where to resume."""

    id: int | None = Field(default=None, primary_key=True)
    mode: str = Field(max_length=16)  # full | incremental
    state: str = Field(default="running", max_length=16, index=True)  # running | done | failed
    phase: str = Field(default="fetch", max_length=16)  # fetch | apply | done
    started_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column(nullable=False))
    heartbeat_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column(nullable=False))
    finished_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    # Incremental runs read objects created since this time (the last finished run's start, less a margin).
    since: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    # Per list: the `starting_after` cursor of the next page, or "done".
    cursors_json: str = "{}"
    fetched: int = 0
    customers_total: int = 0
    customers_done: int = 0
    last_customer: str = Field(default="", max_length=255)  # the apply phase resumes after this id
    changes: int = 0
    orphans: int = 0
    calls: int = 0
    started_by: str = Field(default="", max_length=254)
    error: str | None = None


class ReconcileStage(SQLModel, table=True):
    """A Stripe object a bulk run has read, kept until the run is applied (so a run can resume)."""

    __table_args__ = (
        UniqueConstraint("run_id", "stripe_id", name="uq_reconcilestage_run_object"),
        Index("ix_reconcilestage_run_customer", "run_id", "customer_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="reconcilerun.id", ondelete="CASCADE")
    kind: str = Field(max_length=16)  # customer | subscription | invoice | charge | session
    customer_id: str = Field(max_length=255)
    stripe_id: str = Field(max_length=255)
    # Which source wins when an object comes twice: a list read (2) over an event's copy (1).
    rank: int = 2
    payload: bytes = Field(sa_column=Column(LargeBinary(), nullable=False))  # zlib-compressed JSON
    # When the page holding it was requested, by the database's clock (the sync fence's read time).
    read_at: datetime = Field(sa_column=timestamp_column(nullable=False))



# --- email notifications (billing_app/notifications) -------------------------------------------


class Notification(SQLModel, table=True):
    """The outbox: one email, written in the same transaction as the change that causes it.

    `key` is unique per (kind, cause, recipient), e.g. `receipt:in_123:<address digest>`, so a webhook delivered five times
    (or a sync run twice) writes one row and sends one email. The mail worker sends pending rows
    (`state` pending -> sent | failed | canceled, an invitation withdrawn before its email went; `kept` when no
    SMTP_URL is set: shown at /dev/mail only).
    """

    __table_args__ = (Index("ix_notification_state_next_attempt", "state", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=255, unique=True)
    kind: str = Field(max_length=40, index=True)
    org_id: int | None = Field(default=None, foreign_key="organization.id", index=True, ondelete="CASCADE")
    # JSON list of addresses; one message goes to all of them. Rows are written with one address
    # (one row per recipient, the key ends with its digest); older rows may hold several.
    recipients: str
    subject: str = Field(max_length=255)
    # Emptied once sent or failed (they may hold a reset link or an invitation token); kept rows keep them.
    text_body: str
    html_body: str
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column(nullable=False, index=True))
    state: str = Field(default="pending", max_length=16)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    claimed_until: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    sent_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    last_error: str | None = None

    @property
    def to(self) -> list[str]:
        return json.loads(self.recipients)


class NotificationOptOut(SQLModel, table=True):
    """An admin who chose not to receive an optional kind (receipts, plan changes) for one org."""

    __table_args__ = (UniqueConstraint("user_id", "org_id", "kind", name="uq_notificationoptout_user_org_kind"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    org_id: int = Field(foreign_key="organization.id", ondelete="CASCADE")
    kind: str = Field(max_length=40)
