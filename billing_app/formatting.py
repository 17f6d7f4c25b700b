"""Display formatting for pages, the CSV export and the API: money and dates, in one place."""

from __future__ import annotations

from datetime import datetime

# Currencies Stripe counts in whole units (no cents).
ZERO_DECIMAL = frozenset({"jpy", "krw", "vnd", "clp", "pyg", "ugx", "xof", "xaf", "bif", "djf", "gnf", "kmf", "mga", "rwf", "vuv", "xpf"})
SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥"}
PERIOD_NAME = {"MONTHLY": "Monthly", "YEARLY": "Yearly", "ALL_TIME": "Lifetime"}


def plain_amount(amount: int, currency: str) -> str:
    """Minor units as a plain decimal for spreadsheets: 2900, 'usd' -> '29.00'; 500, 'jpy' -> '500'."""
    return str(amount) if currency.lower() in ZERO_DECIMAL else f"{amount / 100:.2f}"


def format_amount(amount: int, currency: str) -> str:
    """Minor units to a readable amount: 2900, 'usd' -> '$29.00'; zero-decimal currencies kept whole."""
    value = f"{amount:,}" if currency.lower() in ZERO_DECIMAL else f"{amount / 100:,.2f}"
    symbol = SYMBOLS.get(currency.lower())
    return f"{symbol}{value}" if symbol else f"{value} {currency.upper()}"


def plan_label(plan_name: str, period_type: str, *more: str) -> str:
    """'Starter (monthly)', 'Team (yearly, 5 seats)': a plan and its billing period, as Checkout
    descriptions, the payment history and the console name them."""
    return f"{plan_name} ({', '.join([PERIOD_NAME[period_type].lower(), *more])})"


def format_date(value: datetime | None) -> str:
    """'Dec 22, 2026', or '' for no date. Values are aware UTC (the column type sees to it)."""
    return value.strftime("%b %-d, %Y") if value is not None else ""


def format_datetime(value: datetime | None) -> str:
    """'Dec 22, 2026 14:05 UTC' (the operator console's times), or '' for none."""
    return value.strftime("%b %-d, %Y %H:%M UTC") if value is not None else ""


def api_time(value: datetime | None) -> str | None:
    """A time in the REST API: UTC to the whole second with a Z, '2026-12-22T14:05:09Z' (as
    Stripe's own times are), whether Stripe or this app made it; None stays null."""
    return value.replace(microsecond=0).isoformat().replace("+00:00", "Z") if value is not None else None


# A cell starting with one of these is a formula to a spreadsheet (CSV injection, OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: str) -> str:
    """Text that a spreadsheet shows as text (every CSV export's text from users or Stripe): a
    leading formula character gets a ' in front."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value
