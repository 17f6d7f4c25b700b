"""Disputes (chargebacks): list, retrieve, update (evidence, submit) and close.

They come only from the dispute test card (billing.open_dispute). As in Stripe's test mode, evidence
whose `uncategorized_text` is `winning_evidence` wins the dispute and `losing_evidence` loses it; the
sandbox decides at once (Stripe within minutes). Closing accepts the dispute: it is lost.
"""

from __future__ import annotations

from ..api import Ctx, created_filter, equal_filter, retrieve_route, route, update_metadata
from ..billing import get_or_404
from ..errors import invalid
from ..params import as_bool

OUTCOMES = {"winning_evidence": "won", "losing_evidence": "lost"}
CLOSED = frozenset({"won", "lost", "warning_closed", "prevented"})


@route("GET", "/v1/disputes", "_dispute_list_params:DisputeListParams")
def list_disputes(ctx: Ctx):
    objs = equal_filter(ctx.store.all("dispute"), ctx.params, "charge", "payment_intent")
    return ctx.page(created_filter(objs, ctx.params.get("created")), "/v1/disputes")


retrieve_route("/v1/disputes/{id}", "_dispute_retrieve_params:DisputeRetrieveParams", "dispute")


def _open(store, id) -> dict:
    dp = get_or_404(store, "dispute", id)
    if dp["status"] in CLOSED:
        raise invalid(f"This dispute is already closed ({dp['status']}).", None)
    return dp


@route("POST", "/v1/disputes/{id}", "_dispute_update_params:DisputeUpdateParams")
def update_dispute(ctx: Ctx, id):
    store, p = ctx.store, ctx.params
    dp = _open(store, id)
    was = {"status": dp["status"], "evidence": dict(dp["evidence"])}
    evidence = p.get("evidence") if isinstance(p.get("evidence"), dict) else {}
    dp["evidence"].update({k: v for k, v in evidence.items() if k in dp["evidence"] and isinstance(v, str)})
    update_metadata(dp, p.get("metadata"))
    details = dp["evidence_details"]
    details["has_evidence"] = details["has_evidence"] or bool(evidence)
    if as_bool(p.get("submit"), "submit") is not False:  # Stripe submits unless told to stage
        details.update(submission_count=details["submission_count"] + 1, submission_method="manual")
        dp["status"] = "under_review"
    store.emit("charge.dispute.updated", dp, {k: v for k, v in was.items() if dp[k] != v})
    outcome = OUTCOMES.get(dp["evidence"]["uncategorized_text"]) if dp["status"] == "under_review" else None
    if outcome:
        _close(store, dp, outcome)
    return ctx.out(dp)


@route("POST", "/v1/disputes/{id}/close", "_dispute_close_params:DisputeCloseParams")
def close_dispute(ctx: Ctx, id):
    _close(ctx.store, _open(ctx.store, id), "lost")
    return ctx.out(ctx.store.get("dispute", id))


def _close(store, dp: dict, outcome: str) -> None:
    dp.update(status=outcome, is_charge_refundable=False)
    store.emit("charge.dispute.closed", dp)
    if outcome == "won":
        store.emit("charge.dispute.funds_reinstated", dp)
