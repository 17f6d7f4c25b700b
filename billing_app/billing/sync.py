"""sync_customer: read one Stripe customer's billing state and upsert the local mirror.

(Interface fixed first so the webhook worker can be built against it; body follows.)
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SyncReport:
    customer_id: str
    changes: list[str] = field(default_factory=list)


def sync_customer(customer_id: str) -> SyncReport:
    raise NotImplementedError
