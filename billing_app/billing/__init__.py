"""Billing domain: catalog, customers, checkout, portal, subscriptions, payments, entitlements, views.

Services that call Stripe make the network calls first, then open their own short transaction.
Reads (views, entitlements, payments) take the caller's session and never call Stripe.
"""
