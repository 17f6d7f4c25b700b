"""An offline, Stripe-compatible sandbox server.

It speaks the part of Stripe's REST API (version 2026-10-28.endive) that billing_app
uses, so the official ``stripe`` SDK works against it with only the base address and
key switched.  See README.md beside this file.  It imports nothing from billing_app:
the app knows it only as a URL.
"""

from .objects import API_VERSION

__all__ = ["API_VERSION", "create_app"]


def create_app(*args, **kwargs):
    from .app import create_app as _create

    return _create(*args, **kwargs)
