"""Lifecycle notifications by email.

The outbox (`outbox.py`, table `Notification`) is written in the same transaction as the change
that causes it, keyed per (kind, cause); the mail worker (`worker.py`, a lifespan task) sends it
over SMTP (`mailer.py`), or keeps it for /dev/mail when no SMTP_URL is set. Billing kinds come
from what a sync changed (`billing.py`); invitations and password resets through hooks (`hooks.py`).
"""
