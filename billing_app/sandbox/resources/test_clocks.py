"""Test clocks: customers created on a clock live at its frozen time; advancing runs their billing."""

from __future__ import annotations

from .. import objects as o
from ..api import Ctx, retrieve_route, route
from ..billing import cancel_now, get_or_404, next_milestone, real_now, run_until
from ..errors import invalid
from ..ids import gen_id
from ..params import as_int


@route("POST", "/v1/test_helpers/test_clocks", "test_helpers._test_clock_create_params:TestClockCreateParams")
def create_clock(ctx: Ctx):
    p = ctx.params
    clock = o.test_clock(gen_id("clock"), real_now(), as_int(p["frozen_time"], "frozen_time"), p.get("name"))
    ctx.store.put(clock)
    ctx.store.emit("test_helpers.test_clock.created", clock)
    return ctx.out(clock)


retrieve_route("/v1/test_helpers/test_clocks/{id}", "test_helpers._test_clock_retrieve_params:TestClockRetrieveParams", "test_helpers.test_clock", "test_clock")


@route("GET", "/v1/test_helpers/test_clocks", "test_helpers._test_clock_list_params:TestClockListParams")
def list_clocks(ctx: Ctx):
    return ctx.page(ctx.store.all("test_helpers.test_clock"), "/v1/test_helpers/test_clocks")


@route("DELETE", "/v1/test_helpers/test_clocks/{id}", "test_helpers._test_clock_delete_params:TestClockDeleteParams")
def delete_clock(ctx: Ctx, id):
    store = ctx.store
    clock = get_or_404(store, "test_helpers.test_clock", id, "test_clock")
    # Stripe deletes the clock's customers and their subscriptions with it.
    for cust in [c for c in store.all("customer") if c["test_clock"] == id]:
        for sub in store.all("subscription"):
            if sub["customer"] == cust["id"] and sub["status"] not in ("canceled", "incomplete_expired"):
                cancel_now(store, sub, clock["frozen_time"])
        store.delete("customer", cust["id"])
        store.emit("customer.deleted", cust)
    store.delete("test_helpers.test_clock", id)
    store.emit("test_helpers.test_clock.deleted", clock)
    return o.deleted("test_helpers.test_clock", id)


@route("POST", "/v1/test_helpers/test_clocks/{id}/advance", "test_helpers._test_clock_advance_params:TestClockAdvanceParams")
def advance_clock(ctx: Ctx, id):
    """Stripe advances asynchronously (status 'advancing', then 'ready'); the sandbox finishes
    within the request and returns 'ready', emitting both events, so polling code works unchanged."""
    store = ctx.store
    clock = get_or_404(store, "test_helpers.test_clock", id, "test_clock")
    target = as_int(ctx.params["frozen_time"], "frozen_time")
    if target < clock["frozen_time"]:
        raise invalid("The test clock can only be advanced forward in time.", "frozen_time")
    advance(store, clock, target)
    return ctx.out(clock)


def advance(store, clock: dict, target: int) -> None:
    clock["status"] = "advancing"
    clock["status_details"] = {"advancing": {"target_frozen_time": target}}
    store.emit("test_helpers.test_clock.advancing", clock)
    customers = {c["id"] for c in store.all("customer") if c["test_clock"] == clock["id"]}
    subs = [s for s in store.all("subscription") if s["customer"] in customers]
    # Step subscriptions in time order, so events across subscriptions come out chronologically.
    for _ in range(100000):
        due = [(m[0], s["_seq"], s) for s in subs if (m := next_milestone(store, s)) and m[0] <= target]
        if not due:
            break
        at, _, sub = min(due, key=lambda x: (x[0], x[1]))
        clock["frozen_time"] = at
        run_until(store, sub, at)
    clock["frozen_time"] = target
    clock["status"] = "ready"
    clock["status_details"] = {}
    store.emit("test_helpers.test_clock.ready", clock)
