"""A value written at Stripe (the Dashboard, the portal, the API) that PostgreSQL cannot store, a NUL,
never breaks the mirror: the sync drops the NUL and mirrors everything else, at every later sync too.

On SQLite a NUL can be stored, so there the defect never broke a sync; the tests run on both
databases anyway, since the mirror shows the same text on each.
"""

from __future__ import annotations

import json

from sqlmodel import select

from billing_app.billing.sync import sync_customer
from billing_app.db import session_scope
from billing_app.models import BillingProfile, OrgSubscription, OrphanCustomer, Payment
from billing_app.ops import reconcile
from tests.billing.helpers import buy
from tests.ops.helpers import customer_of_org, mirror_of


def _profile(org_id: int) -> BillingProfile:
    with session_scope() as s:
        return s.get(BillingProfile, org_id)


def _invoice(org_id: int) -> Payment:
    with session_scope() as s:
        return s.exec(select(Payment).where(Payment.org_id == org_id, Payment.stripe_id.startswith("in_"))).one()


def _nul_everywhere(stripe_env, customer: str, invoice_id: str) -> None:
    """What someone with dashboard access (or the portal) can type: text with a NUL in it."""
    c = stripe_env.client
    c.v1.customers.update(customer, params={
        "name": "Acme\x00 Inc", "address": {"line1": "1 Main\x00 St", "city": "Springfield", "country": "US"},
        "metadata": {"note": "from the\x00 dashboard"},
    })
    c.v1.invoices.update(invoice_id, params={"description": "Starter\x00 plan"})


def test_a_nul_typed_at_stripe_is_dropped_and_the_rest_is_mirrored(org, stripe_env):
    buy(org, sandbox=stripe_env)
    customer, invoice_id = customer_of_org(org.id), _invoice(org.id).stripe_id
    _nul_everywhere(stripe_env, customer, invoice_id)

    sync_customer(customer)  # on PostgreSQL this raised (a NUL in a text column), at every sync
    profile = _profile(org.id)
    assert profile.name == "Acme Inc"
    assert json.loads(profile.address_json)["line1"] == "1 Main St"
    assert _invoice(org.id).description == "Starter plan"
    with session_scope() as s:
        assert s.exec(select(OrgSubscription.status).where(OrgSubscription.org_id == org.id)).one() == "active"

    # The mirror keeps following Stripe: the next change arrives as any other.
    stripe_env.client.v1.customers.update(customer, params={"email": "ap@acme.example"})
    sync_customer(customer)
    assert (_profile(org.id).email, _profile(org.id).name) == ("ap@acme.example", "Acme Inc")


def test_the_bulk_reconcile_mirrors_it_as_sync_customer_does(org, stripe_env):
    buy(org, sandbox=stripe_env)
    customer, invoice_id = customer_of_org(org.id), _invoice(org.id).stripe_id
    _nul_everywhere(stripe_env, customer, invoice_id)

    reconcile.bulk_reconcile()
    healed = mirror_of(org.id)
    assert _invoice(org.id).description == "Starter plan" and _profile(org.id).name == "Acme Inc"
    sync_customer(customer)
    assert mirror_of(org.id) == healed


def test_an_orphan_customer_with_a_nul_in_its_name_is_recorded_for_the_operator(stripe_env):
    stray = stripe_env.client.v1.customers.create(params={"name": "Stray\x00 Co", "email": "stray@example.com",
                                                           "metadata": {"org_id": "1\x00"}})
    report = sync_customer(stray.id)
    assert report.org_id is None
    with session_scope() as s:
        orphan = s.exec(select(OrphanCustomer).where(OrphanCustomer.stripe_customer_id == stray.id)).one()
    assert (orphan.name, orphan.claimed_org_id) == ("Stray Co", "1")
