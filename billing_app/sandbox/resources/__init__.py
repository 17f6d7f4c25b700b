"""API endpoints, one module per resource family; importing them registers their routes."""

from . import catalog, checkout, customers, events, invoices, portal, schedules, subscriptions, test_clocks  # noqa: F401
