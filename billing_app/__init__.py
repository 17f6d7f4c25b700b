"""billing_app: an open billing front end for SaaS organizations, built on Reflex and Stripe."""
