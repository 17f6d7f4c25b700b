"""The billing dashboard's facts beyond plan and status, from the database only (never a Stripe call).

`dashboard_view` reads the org's `BillingProfile` (mirrored by the sync: billing/profile.py), its
subscription and its payment rows, and returns display-ready strings, which is what Reflex state
holds. Admins see everything; a member's view carries none of it (the state a member's browser
receives holds no billing details), and `member_billing_view` strips the plan card to plan,
status and seats.
"""

from __future__ import annotations

import calendar
import json
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone

from sqlmodel import Session, select

from billing_app.billing import retention
from billing_app.billing.billing_details import TAX_ID_TYPES
from billing_app.billing.entitlements import current_subscription
from billing_app.billing.views import BillingView
from billing_app.formatting import format_amount, format_date
from billing_app.models import BillingProfile, Payment, SubscriptionStatus, utcnow

EXPIRES_SOON_DAYS = 30
LAST_INVOICES = 3
STATUS_LABEL = {"COMPLETED": "Paid", "FAILED": "Failed", "REFUNDED": "Refunded", "CANCELLED": "Void", "PENDING": "Pending",
                "DISPUTED": "Disputed"}


@dataclass
class InvoiceLink:
    date: str = ""
    amount: str = ""
    status: str = ""
    url: str = ""
    pdf_url: str = ""


@dataclass
class TaxIdLine:
    id: str = ""
    label: str = ""  # "EU VAT DE123456789"
    status: str = ""  # "verified", "" when Stripe does not verify this kind


@dataclass
class DashboardView:
    """What only admins see, display-ready ("" or [] where there is nothing to show)."""

    admin: bool = False
    has_customer: bool = False
    # Payment method on file
    card: str = ""  # "Visa •••• 4242"
    card_expiry: str = ""  # "Expires 12/2034"
    card_warning: str = ""  # "Expires soon: on Dec 31, 2026" / "Expired at the end of 11/2026"
    # Next invoice (Stripe's preview when the customer last synced)
    next_amount: str = ""
    next_date: str = ""
    next_details: list[str] = field(default_factory=list)  # "Subtotal $29.00", "Discount −$5.80", ...
    # Billing details
    billing_email: str = ""
    company_name: str = ""
    address_lines: list[str] = field(default_factory=list)
    tax_ids: list[TaxIdLine] = field(default_factory=list)
    # The form's current values
    form_line1: str = ""
    form_line2: str = ""
    form_city: str = ""
    form_state: str = ""
    form_postal_code: str = ""
    form_country: str = ""
    invoices: list[InvoiceLink] = field(default_factory=list)
    discounts: list[str] = field(default_factory=list)  # "20% off until Mar 2027"
    # Pause
    paused: bool = False
    paused_until: str = ""  # "Mar 3, 2027"; "" when paused with no end
    can_pause: bool = False
    can_resume: bool = False
    # The cancellation flow's retention offer, while the org may still take it
    offer_name: str = ""
    offer_description: str = ""


def _card_lines(profile: BillingProfile, today: date) -> tuple[str, str, str]:
    if not profile.card_last4:
        return "", "", ""
    brand = {"amex": "American Express", "mastercard": "Mastercard", "visa": "Visa"}.get(profile.card_brand, profile.card_brand.title())
    label = f"{brand} •••• {profile.card_last4}"
    month, year = profile.card_exp_month, profile.card_exp_year
    if not (month and year):
        return label, "", ""
    last_day = date(year, month, calendar.monthrange(year, month)[1])  # a card works through its expiry month
    warning = ""
    if last_day < today:
        warning = f"Expired at the end of {month:02d}/{year}. Update the payment method to keep your plan."
    elif last_day - today <= timedelta(days=EXPIRES_SOON_DAYS):
        warning = f"Expires soon: the card works until {last_day.strftime('%b %-d, %Y')}. Update the payment method before then."
    return label, f"Expires {month:02d}/{year}", warning


def discount_label(d: dict) -> str:
    """'20% off until Mar 2027', '$5.00 off the next invoice', '10% off forever'."""
    off = f"{d['percent_off']:g}% off" if d.get("percent_off") is not None else f"{format_amount(d['amount_off'], d['currency'] or 'usd')} off"
    if d.get("end"):
        return f"{off} until {datetime.fromtimestamp(d['end'], timezone.utc).strftime('%b %Y')}"
    if d.get("duration") == "once":
        return f"{off} the next invoice"
    return f"{off} forever"


def _next_invoice(profile: BillingProfile) -> tuple[str, str, list[str]]:
    if not profile.next_invoice_json:
        return "", "", []
    n = json.loads(profile.next_invoice_json)
    money = lambda amount: format_amount(amount, n["currency"])  # noqa: E731
    details = [f"Subtotal {money(n['subtotal'])}"]
    if n.get("prorations"):
        details.append(f"Prorations {'−' if n['prorations'] < 0 else '+'}{money(abs(n['prorations']))} (plan changes this period)")
    if n.get("discount"):
        details.append(f"Discount −{money(n['discount'])}")
    if n.get("tax"):
        details.append(f"Tax {money(n['tax'])}")
    if (n.get("quantity") or 1) > 1:
        details.append(f"{n['quantity']} seats")
    at = datetime.fromtimestamp(n["at"], timezone.utc) if n.get("at") else None
    return money(n["amount_due"]), format_date(at), details


def _invoices(session: Session, org_id: int) -> list[InvoiceLink]:
    rows = session.exec(
        select(Payment).where(Payment.org_id == org_id, Payment.stripe_id.startswith("in_"), Payment.invoice_url != None)  # noqa: E711
        .order_by(Payment.created.desc(), Payment.id.desc()).limit(LAST_INVOICES)
    ).all()
    return [InvoiceLink(format_date(p.created), format_amount(p.amount, p.currency), STATUS_LABEL.get(p.status, p.status.title()),
                        p.invoice_url or "", p.pdf_url or "") for p in rows]


def dashboard_view(session: Session, org_id: int, *, admin: bool, now: datetime | None = None) -> DashboardView:
    """Everything the dashboard shows an admin beyond plan and status; nothing for a member."""
    if not admin:
        return DashboardView()
    now = now or utcnow()
    view = DashboardView(admin=True)
    sub = current_subscription(session, org_id)
    if sub is not None and not sub.one_off:
        status = SubscriptionStatus(sub.status)
        view.paused = bool(sub.paused) or status == SubscriptionStatus.PAUSED
        view.paused_until = format_date(sub.pause_resumes_at) if view.paused else ""
        view.can_resume = view.paused
        view.can_pause = not view.paused and status.value in ("active", "trialing") and not sub.is_canceling
        offer = retention.offer_for(session, org_id) if sub.is_manageable and not sub.is_canceling else None
        if offer is not None:
            view.offer_name, view.offer_description = offer.name, offer.describe()
    view.invoices = _invoices(session, org_id)
    profile = session.get(BillingProfile, org_id)
    if profile is None:
        return view
    view.has_customer = True
    view.card, view.card_expiry, view.card_warning = _card_lines(profile, now.date())
    view.next_amount, view.next_date, view.next_details = _next_invoice(profile)
    view.billing_email, view.company_name = profile.email, profile.name
    address = json.loads(profile.address_json or "{}")
    if address:
        city_line = " ".join(x for x in (address.get("postal_code"), address.get("city")) if x)
        view.address_lines = [x for x in (address.get("line1"), address.get("line2"), city_line, address.get("state"),
                                          address.get("country")) if x]
        view.form_line1, view.form_line2 = address.get("line1", ""), address.get("line2", "")
        view.form_city, view.form_state = address.get("city", ""), address.get("state", "")
        view.form_postal_code, view.form_country = address.get("postal_code", ""), address.get("country", "")
    view.tax_ids = [
        TaxIdLine(t["id"], f"{TAX_ID_TYPES.get(t['type'], t['type'])} {t['value']}", t["status"] if t["status"] in ("verified", "pending", "unverified") else "")
        for t in json.loads(profile.tax_ids_json or "[]")
    ]
    view.discounts = [discount_label(d) for d in json.loads(profile.discounts_json or "[]")]
    return view


def member_billing_view(view: BillingView) -> BillingView:
    """A member sees the plan and its status (and seats); dates, price, actions and Stripe's hosted
    invoice page (amount, billing email and address, a pay button) are for admins. A payment waiting
    for the bank is not shown to a member as a failed one either."""
    return replace(view, price="", period="", renewal_label="", renewal_date="", trial_end="", start_date="", auto_renew="",
                   can_cancel=False, can_reactivate=False, can_change=False, scheduled_change="",
                   payment_problem=view.payment_problem and not view.confirm_payment_url, confirm_payment_url="")
