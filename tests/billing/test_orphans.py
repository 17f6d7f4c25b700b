"""Stripe metadata never picks an organization: strangers' customers become orphans for an operator."""

from sqlmodel import select

from billing_app.billing import customers
from billing_app.billing.orphans import attach_orphan, list_orphans
from billing_app.billing.sync import sync_customer
from billing_app.cli import main
from billing_app.errors import ErrorCode
from billing_app.models import BillingCustomer, OrgSubscription, PlanPeriod
from tests.billing.helpers import expect, period_id


def strangers_subscription(stripe_env, db, claimed_org_id: int) -> str:
    """What anyone with dashboard access could do: a customer claiming an org, with a paid plan."""
    customer = stripe_env.client.v1.customers.create(params={
        "email": "stranger@elsewhere.example", "name": "Stranger", "metadata": {"org_id": str(claimed_org_id)},
    })
    price = db.get(PlanPeriod, period_id("pro", "MONTHLY")).stripe_price_id
    session = stripe_env.client.v1.checkout.sessions.create(params={
        "mode": "subscription", "customer": customer.id, "line_items": [{"price": price, "quantity": 1}],
        "success_url": "http://127.0.0.1:3999/ok",
    })
    stripe_env.complete_checkout(session.id)
    return customer.id


def test_a_customer_claiming_an_org_in_its_metadata_gets_nothing(org, stripe_env, db, capsys):
    stranger = strangers_subscription(stripe_env, db, org.id)
    report = sync_customer(stranger)
    assert report.org_id is None
    db.expire_all()
    assert db.exec(select(OrgSubscription).where(OrgSubscription.org_id == org.id)).all() == []
    assert db.exec(select(BillingCustomer).where(BillingCustomer.org_id == org.id)).first() is None  # no portal either
    [orphan] = [o for o in list_orphans() if o.customer_id == stranger]
    assert orphan.claimed_org_id == str(org.id) and orphan.email == "stranger@elsewhere.example"

    assert main(["orphans"]) == 0
    out = capsys.readouterr().out
    assert stranger in out and f"metadata claims org {org.id} (not trusted)" in out


def test_an_operator_attaches_an_orphan_explicitly_and_it_syncs(org, stripe_env, db, capsys):
    stranger = strangers_subscription(stripe_env, db, 999)
    sync_customer(stranger)
    assert main(["orphans", "--attach", stranger, "--org", str(org.id)]) == 0
    assert f"Attached {stranger} to organization {org.id}." in capsys.readouterr().out
    db.expire_all()
    subscription = db.exec(select(OrgSubscription).where(OrgSubscription.org_id == org.id)).one()
    assert subscription.status == "active"
    assert stranger not in [o.customer_id for o in list_orphans()]
    # An org has one customer, and a customer one org.
    other = stripe_env.client.v1.customers.create(params={"email": "x@elsewhere.example"}).id
    expect(ErrorCode.VALIDATION_ERROR, attach_orphan, other, org.id)
    expect(ErrorCode.VALIDATION_ERROR, attach_orphan, stranger, org.id)
    expect(ErrorCode.NOT_FOUND, attach_orphan, other, 424242)
    assert main(["orphans", "--attach", other]) == 2


def test_two_deployments_sharing_a_stripe_account_never_share_a_customer(org, stripe_env, tmp_path, monkeypatch):
    from billing_app.auth import accounts
    from billing_app.db import get_engine, session_scope
    from billing_app.migrations import upgrade
    from billing_app.settings import get_settings

    first_deployment = customers.deployment_id()
    assert customers.deployment_id() == first_deployment  # made once per database
    first = customers.ensure_customer(org.id, "admin@acme.example")

    # A second database (another deployment) on the same Stripe account, with an org of the same id.
    other_db = f"sqlite:///{tmp_path}/other.db"
    upgrade(other_db)
    monkeypatch.setenv("DATABASE_URL", other_db)
    get_settings.cache_clear()
    get_engine.cache_clear()
    try:
        with session_scope() as s:
            for n in range(org.id):
                accounts.register(s, email=f"owner{n}@other.example", password="a-long-password-1", name="O", org_name=f"Other {n}")
        second = customers.ensure_customer(org.id, "owner@other.example")
        assert customers.deployment_id() != first_deployment
    finally:
        get_engine().dispose()
        get_engine.cache_clear()
        get_settings.cache_clear()
    assert second != first
