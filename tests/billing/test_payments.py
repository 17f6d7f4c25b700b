"""Payment history queries on a real database."""

import csv
import io
from datetime import datetime, timedelta, timezone

import pytest

from billing_app.billing.payments import PaymentFilter, export_csv, list_payments
from billing_app.errors import AppError, ErrorCode
from billing_app.formatting import format_amount, plain_amount
from billing_app.models import Payment
from tests.billing.helpers import make_org

START = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)


@pytest.fixture
def history(database_url, db):
    org = make_org("Ledger", "admin@ledger.example", "member@ledger.example")
    other = make_org("Other", "admin@other.example", "member@other.example")
    statuses = ["COMPLETED", "FAILED", "COMPLETED", "REFUNDED", "EXPIRED"]
    for day in range(60):
        db.add(Payment(org_id=org.id, stripe_id=f"in_{day}", status=statuses[day % 5], amount=1000 + day, currency="usd",
                       created=START + timedelta(days=day), description=f"Invoice {day}"))
    db.add(Payment(org_id=other.id, stripe_id="in_other", status="COMPLETED", amount=1, currency="usd", created=START, description="other"))
    db.commit()
    return org


def test_pages_newest_first_without_gaps_or_repeats(history, db):
    seen, cursor = [], None
    while True:
        page = list_payments(db, history.admin, PaymentFilter(), limit=25, cursor=cursor)
        seen += [p.stripe_id for p in page.rows]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"in_{d}" for d in range(59, -1, -1)]


def test_date_range_is_inclusive_and_status_filters(history, db):
    filters = PaymentFilter.parse("2026-01-11", "2026-01-20", "failed")
    rows = list_payments(db, history.admin, filters, limit=100).rows
    assert [r.stripe_id for r in rows] == ["in_16", "in_11"]
    assert len(list_payments(db, history.admin, PaymentFilter.parse("2026-01-11", "2026-01-20"), limit=100).rows) == 10


@pytest.mark.parametrize(
    ("start", "end", "status", "message"),
    [
        ("2026-02-01", "2026-01-01", None, "The from date must be on or before the to date."),
        ("yesterday", None, None, "The from date must look like 2026-01-31."),
        (None, None, "lost", "Unknown status 'lost'"),
    ],
)
def test_bad_filters_get_clear_errors(start, end, status, message):
    with pytest.raises(AppError) as info:
        PaymentFilter.parse(start, end, status)
    assert info.value.code == ErrorCode.VALIDATION_ERROR and message in info.value.message


def test_history_is_for_admins_of_the_org_only(history, db):
    with pytest.raises(AppError) as info:
        list_payments(db, history.member, PaymentFilter())
    assert info.value.code == ErrorCode.FORBIDDEN
    with pytest.raises(AppError):
        list_payments(db, history.admin, PaymentFilter(), cursor="garbage")


def test_csv_export_has_exactly_the_filtered_rows(history, db):
    text = "".join(export_csv(db, history.admin, PaymentFilter.parse(status="COMPLETED")))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 24 and {r["status"] for r in rows} == {"COMPLETED"}
    assert rows[0]["amount"] == "10.57" and rows[0]["currency"] == "USD"


def test_amounts_read_as_money():
    assert format_amount(2900, "usd") == "$29.00"
    assert format_amount(123456, "eur") == "€1,234.56"
    assert format_amount(500, "jpy") == "¥500"
    assert format_amount(1999, "chf") == "19.99 CHF"
    # The CSV's plain amounts: no symbol, no thousands separator, whole units where there are no cents.
    assert (plain_amount(123456, "usd"), plain_amount(500, "jpy")) == ("1234.56", "500")


def _cursor(created: str, row_id: str) -> str:
    import base64

    return base64.urlsafe_b64encode(f"{created}|{row_id}".encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        _cursor("2026-01-01T00:00:00+00:00", str(2**31)),  # past the database's integer
        _cursor("2026-01-01T00:00:00", "5"),  # no zone
        _cursor("not a time", "5"),
        "A" * 400,
    ],
)
def test_the_one_cursor_check_refuses_what_we_did_not_make(history, db, cursor):
    with pytest.raises(AppError) as info:
        list_payments(db, history.admin, PaymentFilter(), cursor=cursor)
    assert info.value.message == "That page link is not valid; start from the first page."


def test_a_to_date_at_the_end_of_the_calendar_is_refused():
    with pytest.raises(AppError, match="out of range"):
        PaymentFilter.parse(None, "9999-12-31")
