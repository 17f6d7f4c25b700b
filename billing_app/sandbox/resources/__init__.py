"""API endpoints, one module per resource family; importing them registers their routes."""

from . import (  # noqa: F401
    catalog, checkout, coupons, customers, disputes, events, invoices, portal, schedules, subscriptions, tax_ids, test_clocks,
)
