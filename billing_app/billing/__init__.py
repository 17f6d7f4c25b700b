"""Billing domain: catalog, customers, checkout, portal, subscriptions, payments, entitlements."""
