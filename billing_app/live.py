"""Live updates: when a webhook changes an org's billing, its open billing pages refresh.

Push, not poll: a page registers its browser (client token) and state class for the
org on load; after the webhook worker syncs a customer it calls `notify(org_id)`,
which re-reads the mirror inside each registered state through Reflex's
`app.modify_state`, and Reflex sends the change down that browser's socket. The
registry is in memory, so it covers the backend process the worker runs in (our
deployment: one backend process); a page whose browser left is simply forgotten
when its refresh fails.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

log = logging.getLogger(__name__)
MAX_WATCHERS_PER_ORG = 100
_watchers: dict[int, OrderedDict[tuple[str, type], None]] = {}
_lock = threading.Lock()


def watch(org_id: int, client_token: str, state_cls: type) -> None:
    """Remember that this browser shows `state_cls` for the org (newest kept when full)."""
    if not client_token:
        return
    with _lock:
        watchers = _watchers.setdefault(org_id, OrderedDict())
        watchers.pop((client_token, state_cls), None)
        watchers[(client_token, state_cls)] = None
        while len(watchers) > MAX_WATCHERS_PER_ORG:
            watchers.popitem(last=False)


def watchers_of(org_id: int) -> list[tuple[str, type]]:
    with _lock:
        return list(_watchers.get(org_id, ()))


async def notify(org_id: int) -> int:
    """Refresh every registered page of the org. Returns how many were refreshed."""
    import reflex as rx
    from reflex.utils.prerequisites import get_and_validate_app

    app = get_and_validate_app().app
    refreshed = 0
    for client_token, state_cls in watchers_of(org_id):
        try:
            async with app.modify_state(rx.BaseStateToken(ident=client_token, cls=state_cls)) as root:
                page_state = await root.get_state(state_cls)
                page_state.on_billing_changed()
            refreshed += 1
        except Exception as error:  # a closed tab or an old token: forget it, keep going
            log.info("live update skipped for one page: %s", error)
            with _lock:
                _watchers.get(org_id, OrderedDict()).pop((client_token, state_cls), None)
    return refreshed
