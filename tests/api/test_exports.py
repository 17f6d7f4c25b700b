"""The payments CSV export route: the browser session cookie, the admin role, the filters."""

import csv
import io
from datetime import datetime, timezone

from starlette.testclient import TestClient

from billing_app.api import build_api
from billing_app.auth import accounts
from billing_app.db import session_scope
from billing_app.models import Payment
from billing_app.state import SESSION_COOKIE
from tests.billing.helpers import PASSWORD, make_org


def cookie_for(email, org_id):
    """A browser session of `email`, switched to `org_id`."""
    with session_scope() as s:
        token = accounts.login(s, email=email, password=PASSWORD)
        accounts.switch_org(s, token, org_id)
    return {SESSION_COOKIE: token}


def test_csv_export_for_admins_with_filters(database_url, db):
    org = make_org("Exporter", "admin@exp.example", "member@exp.example")
    for day, status in ((1, "COMPLETED"), (2, "FAILED"), (3, "COMPLETED")):
        db.add(Payment(org_id=org.id, stripe_id=f"in_{day}", status=status, amount=900, currency="usd",
                       created=datetime(2026, 3, day, tzinfo=timezone.utc), description=f"Invoice {day}"))
    db.commit()
    client = TestClient(build_api())

    answer = client.get("/api/billing/payments.csv?status=COMPLETED&start=2026-03-02", cookies=cookie_for("admin@exp.example", org.id))
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [r["stripe_id"] for r in rows] == ["in_3"]

    member = client.get("/api/billing/payments.csv", cookies=cookie_for("member@exp.example", org.id))
    assert member.status_code == 403 and member.json()["error_code"] == "FORBIDDEN"
    assert client.get("/api/billing/payments.csv").status_code == 401
    bad = client.get("/api/billing/payments.csv?start=2026-03-05&end=2026-03-01", cookies=cookie_for("admin@exp.example", org.id))
    assert bad.status_code == 422 and bad.json()["message"] == "The from date must be on or before the to date."
