"""CSV export of the payment history, for the payments page's "Export CSV" link.

A plain HTTP route (not the websocket) so a large export streams to a file; the
browser's session cookie authenticates it, with the same checks as the page (the link names the org
the page shows, so a switch in another tab since is refused, ORG_SWITCHED, and so is a user no longer
in that org, NOT_A_MEMBER). The filters are checked by `PaymentFilter.parse`, as for the page and
the REST API; a refusal is the API's envelope.
"""

from __future__ import annotations

import asyncio

from starlette.concurrency import iterate_in_threadpool
from starlette.requests import Request
from starlette.responses import StreamingResponse

from billing_app.api.rest.errors import envelope
from billing_app.auth import accounts
from billing_app.billing.payments import PaymentFilter, export_csv
from billing_app.db import session_scope
from billing_app.errors import AppError
from billing_app.models import Role, id_from_text
from billing_app.state import SESSION_COOKIE, refuse_if_switched


def _admin(cookie: str, shown_org: str | None) -> accounts.Actor:
    with session_scope() as session:
        actor = accounts.actor_for_session(session, cookie)
        if shown_org is not None:  # the page's link names the org it shows: a switch in another tab since is refused
            refuse_if_switched(actor, accounts.organizations_of(session, actor.user_id), id_from_text(shown_org) or 0)
    # Checked here too (export_csv checks again) so a refusal gets its status before streaming starts.
    actor.require_role(Role.ADMIN)
    return actor


async def payments_csv(request: Request):
    params = request.query_params
    try:
        # In a thread, as the rows are: the session lookup is database work, not for the event loop.
        actor = await asyncio.to_thread(_admin, request.cookies.get(SESSION_COOKIE, ""), params.get("org"))
        filters = PaymentFilter.parse(params.get("start"), params.get("end"), params.get("status"))
    except AppError as error:
        return envelope(error.http_status, error.code, error.message)  # the REST API's envelope

    def chunks():
        with session_scope() as session:
            yield from export_csv(session, actor, filters)

    return StreamingResponse(
        iterate_in_threadpool(chunks()),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="payments.csv"'},
    )
