"""Seeded organization lifecycles for benchmarks/chaos.py.

Each organization follows its own sequence of steps, drawn before the run from
`random.Random(f"{seed}:{org}:{step}")`, so one seed gives the same sequences whatever the
timing (only the interleaving between organizations, and the moments of the kills, vary).
A step is either what an admin's script does through the REST API (buy and pay the Checkout,
two or three buys at once, change plan, cancel, reactivate, keep the current plan, look at the
Checkout's outcome, pay an abandoned session later) or what a dashboard user does straight at
Stripe (the sandbox) with the Stripe SDK (cancel a subscription now, toggle
cancel_at_period_end, refund a payment, create a Checkout behind the app's back and pay it).

Actions are not chosen by what the client believes the state is: the app must answer an
action that does not apply now with a clear 409/404, never a 5xx. A request whose connection
drops (the backend was killed) is sent again when the backend is back (up to three tries), as a
user would click again.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import stripe

PAY = "pm_card_visa"
DECLINED = "pm_card_chargeDeclined"
MANAGEABLE = {"active", "trialing", "past_due", "unpaid", "paused"}
READY_WAIT_SECONDS = 180  # how long a client waits for a killed backend to come back


@dataclass(frozen=True)
class Period:
    id: int
    plan_key: str
    period_type: str
    price_id: str

    @property
    def recurring(self) -> bool:
        return self.period_type != "ALL_TIME"

    def __str__(self) -> str:
        return f"{self.plan_key}/{self.period_type.lower()}#{self.id}"


class Stats:
    """What the clients saw: each answer by route, status and error code; dropped connections; 5xx in full."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answers: Counter = Counter()  # (route, status, error_code)
        self.dropped: Counter = Counter()  # route -> requests whose connection was lost
        self.server_errors: list[str] = []
        self.payments: Counter = Counter()  # paying a session at the sandbox: paid, declined, closed
        self.dashboard: Counter = Counter()  # (action, outcome)
        self.driver_errors: list[str] = []  # a bug in this script, not in the app
        self.steps_done = 0

    def answer(self, route: str, status: int, code: str | None) -> None:
        with self.lock:
            self.answers[(route, status, code)] += 1

    def count(self, counter: str, key) -> None:
        with self.lock:
            getattr(self, counter)[key] += 1

    def note(self, listing: str, text: str) -> None:
        with self.lock:
            getattr(self, listing).append(text)

    @property
    def http_5xx(self) -> int:
        return sum(n for (_, status, _), n in self.answers.items() if status >= 500)


class Clock:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.t0


@dataclass
class Org:
    index: int
    org_id: int
    email: str
    token: str
    plan: list[tuple[str, random.Random]] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)  # sessions the app handed out that nobody paid
    last_session: str | None = None
    log: list[str] = field(default_factory=list)

    def note(self, clock: Clock, text: str) -> None:
        self.log.append(f"{clock.now():7.2f}s {text}")


class World:
    """What the lifecycles share: the backend's address and readiness, the sandbox, the catalog, the figures."""

    def __init__(self, *, api_base: str, sandbox_base: str, api_key: str, ready: threading.Event,
                 periods: list[Period], customer_of: Callable[[int], str | None], stats: Stats, clock: Clock):
        self.api_base, self.sandbox_base, self.api_key = api_base, sandbox_base, api_key
        self.ready, self.periods, self.customer_of, self.stats, self.clock = ready, periods, customer_of, stats, clock
        self._local = threading.local()

    # One HTTP client and one Stripe client per thread.
    @property
    def http(self) -> httpx.Client:
        if not hasattr(self._local, "http"):
            self._local.http = httpx.Client(base_url=self.api_base, timeout=120)
        return self._local.http

    @property
    def stripe(self) -> stripe.StripeClient:
        if not hasattr(self._local, "stripe"):
            self._local.stripe = stripe_client(self.sandbox_base, self.api_key)
        return self._local.stripe

    def rest(self, org: Org, method: str, path: str, route: str | None = None, json: dict | None = None) -> httpx.Response | None:
        """One REST call as the org's admin; None if the connection dropped three times."""
        route = route or path
        for _ in range(3):
            if not self.ready.wait(READY_WAIT_SECONDS):
                raise RuntimeError("the backend did not come back")
            try:
                response = self.http.request(method, "/api" + path, json=json, headers={"Authorization": f"Bearer {org.token}"})
            except httpx.TransportError as error:
                self.stats.count("dropped", route)
                org.note(self.clock, f"{method} {route}: connection lost ({type(error).__name__}); again once the backend is back")
                time.sleep(0.2)  # the controller clears `ready` before it kills, so this waits for the restart
                continue
            code = error_code(response)
            self.stats.answer(route, response.status_code, code)
            if response.status_code >= 500:
                self.stats.note("server_errors", f"org {org.index} {method} {route} -> {response.status_code} {response.text[:300]}")
            return response
        return None

    def pay(self, org: Org, session_id: str, card: str = PAY) -> str:
        """Pay a Checkout at the sandbox as the buyer would (its test helper)."""
        try:
            self.stripe.raw_request("post", f"/v1/test_helpers/checkout/sessions/{session_id}/complete", payment_method=card)
            outcome = "paid"
        except stripe.CardError:
            outcome = "declined"
        except stripe.InvalidRequestError as error:
            outcome = f"refused ({error.code or 'invalid'})"  # expired or already complete
        self.stats.count("payments", outcome.split(" ")[0])
        org.note(self.clock, f"  pay {session_id[-8:]} with {card} -> {outcome}")
        return outcome


def stripe_client(base: str, key: str) -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": base}, max_network_retries=2)


def error_code(response: httpx.Response) -> str | None:
    if response.status_code < 400:
        return None
    try:
        return response.json().get("error_code")
    except ValueError:
        return None


def _describe(response: httpx.Response | None) -> str:
    if response is None:
        return "no answer (connection lost three times)"
    if response.status_code < 400:
        return str(response.status_code)
    return f"{response.status_code} {error_code(response)}"


# --- REST steps --------------------------------------------------------------------------------

def _purchasable(world: World, rng: random.Random) -> Period:
    recurring = [p for p in world.periods if p.recurring]
    lifetime = [p for p in world.periods if not p.recurring]
    return rng.choice(lifetime) if lifetime and rng.random() < 0.12 else rng.choice(recurring)


def _after_buy(world: World, org: Org, session_id: str, rng: random.Random) -> None:
    roll = rng.random()
    if roll < 0.72:
        if world.pay(org, session_id) == "paid" and rng.random() < 0.5:
            confirm = world.rest(org, "GET", f"/subscriptions/checkout-session/{session_id}", "/subscriptions/checkout-session/{id}")
            org.note(world.clock, f"  confirm -> {_describe(confirm)}")
    elif roll < 0.82:
        world.pay(org, session_id, DECLINED)
        org.abandoned.append(session_id)
    else:
        org.abandoned.append(session_id)
        org.note(world.clock, "  left unpaid")


def buy(world: World, org: Org, rng: random.Random) -> None:
    period = _purchasable(world, rng)
    response = world.rest(org, "POST", "/subscriptions/buy", json={"subscriptionPeriodId": period.id})
    org.note(world.clock, f"buy {period} -> {_describe(response)}")
    if response is not None and response.status_code == 200:
        org.last_session = response.json()["sessionId"]
        _after_buy(world, org, org.last_session, rng)


def duplicate_buys(world: World, org: Org, rng: random.Random) -> None:
    """Two or three buys at once (a double click, two tabs), then every session they got paid at once."""
    count = rng.choice([2, 2, 3])
    same = rng.random() < 0.5
    first = _purchasable(world, rng)
    periods = [first if same else _purchasable(world, rng) for _ in range(count)]
    answers: list = [None] * count
    gate = threading.Barrier(count)

    def one(i: int) -> None:
        gate.wait()
        answers[i] = world.rest(org, "POST", "/subscriptions/buy", json={"subscriptionPeriodId": periods[i].id})

    _together([lambda i=i: one(i) for i in range(count)])
    org.note(world.clock, "duplicate buys " + ", ".join(f"{p} -> {_describe(a)}" for p, a in zip(periods, answers)))
    sessions = sorted({a.json()["sessionId"] for a in answers if a is not None and a.status_code == 200})
    outcomes: list = [None] * len(sessions)
    pay_gate = threading.Barrier(max(1, len(sessions)))

    def pay(i: int) -> None:
        pay_gate.wait()
        outcomes[i] = world.pay(org, sessions[i])

    _together([lambda i=i: pay(i) for i in range(len(sessions))])
    if sessions:
        org.last_session = sessions[-1]
    if sum(1 for o in outcomes if o == "paid") > 1:
        world.stats.count("payments", "two_paid_at_once")


def change(world: World, org: Org, rng: random.Random) -> None:
    period = rng.choice([p for p in world.periods if p.recurring])
    preview = rng.random() < 0.2
    response = world.rest(org, "POST", "/subscriptions/change", json={"subscriptionPeriodId": period.id, "preview": preview})
    detail = ""
    if response is not None and response.status_code == 200:
        body = response.json()
        detail = f" ({'upgrade' if body['upgrade'] else 'downgrade'}{', applied' if body['applied'] else ''})"
    org.note(world.clock, f"change to {period}{' preview' if preview else ''} -> {_describe(response)}{detail}")


def cancel(world: World, org: Org, rng: random.Random) -> None:
    at_period_end = rng.random() < 0.7
    response = world.rest(org, "POST", "/subscriptions/cancel", json={"atPeriodEnd": at_period_end, "reason": "chaos"})
    org.note(world.clock, f"cancel {'at period end' if at_period_end else 'now'} -> {_describe(response)}")


def reactivate(world: World, org: Org, rng: random.Random) -> None:
    response = world.rest(org, "POST", "/subscriptions/reactivate")
    org.note(world.clock, f"reactivate -> {_describe(response)}")


def keep_current_plan(world: World, org: Org, rng: random.Random) -> None:
    response = world.rest(org, "POST", "/subscriptions/keep-current-plan")
    org.note(world.clock, f"keep current plan -> {_describe(response)}")


def confirm(world: World, org: Org, rng: random.Random) -> None:
    if org.last_session is None:
        response = world.rest(org, "GET", "/subscriptions/my")
        org.note(world.clock, f"my -> {_describe(response)}")
        return
    response = world.rest(org, "GET", f"/subscriptions/checkout-session/{org.last_session}", "/subscriptions/checkout-session/{id}")
    org.note(world.clock, f"confirm {org.last_session[-8:]} -> {_describe(response)}")


def late_payment(world: World, org: Org, rng: random.Random) -> None:
    """The buyer comes back to a Checkout tab left open earlier and pays it (the app may have expired it)."""
    if not org.abandoned:
        return buy(world, org, rng)
    session_id = org.abandoned.pop(rng.randrange(len(org.abandoned)))
    org.note(world.clock, f"late payment of {session_id[-8:]}")
    world.pay(org, session_id)


# --- dashboard steps (straight at Stripe, behind the app's back) --------------------------------

def _customer(world: World, org: Org, action: str) -> str | None:
    customer = world.customer_of(org.org_id)
    if customer is None:
        world.stats.count("dashboard", (action, "skipped: no customer yet"))
        org.note(world.clock, f"dashboard {action}: no Stripe customer yet, skipped")
    return customer


def _dashboard(world: World, org: Org, action: str, fn: Callable[[stripe.StripeClient, str], str]) -> None:
    customer = _customer(world, org, action)
    if customer is None:
        return
    try:
        outcome = fn(world.stripe, customer)
    except stripe.StripeError as error:
        outcome = f"refused: {error.code or type(error).__name__}"
    world.stats.count("dashboard", (action, outcome.split(" ")[0].rstrip(":")))
    org.note(world.clock, f"dashboard {action} -> {outcome}")


def _live_subscriptions(client: stripe.StripeClient, customer: str) -> list:
    subs = client.v1.subscriptions.list(params={"customer": customer, "status": "all", "limit": 100}).data
    return [s for s in subs if s.status in MANAGEABLE]


def dashboard_cancel_now(world: World, org: Org, rng: random.Random) -> None:
    def act(client, customer):
        live = _live_subscriptions(client, customer)
        if not live:
            return "nothing live"
        sub = rng.choice(live)
        client.v1.subscriptions.cancel(sub.id)
        return f"ok: canceled {sub.id}"
    _dashboard(world, org, "cancel_now", act)


def dashboard_toggle_cancel_at_period_end(world: World, org: Org, rng: random.Random) -> None:
    def act(client, customer):
        live = _live_subscriptions(client, customer)
        if not live:
            return "nothing live"
        sub = rng.choice(live)
        client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": not sub.cancel_at_period_end})
        return f"ok: {sub.id} cancel_at_period_end={not sub.cancel_at_period_end}"
    _dashboard(world, org, "cancel_at_period_end", act)


def dashboard_refund(world: World, org: Org, rng: random.Random) -> None:
    def act(client, customer):
        charges = client.v1.charges.list(params={"customer": customer, "limit": 100}).data
        paid = [c for c in charges if c.paid and not c.refunded and c.amount > 0]
        if not paid:
            return "nothing to refund"
        charge = rng.choice(paid)
        client.v1.refunds.create(params={"charge": charge.id})
        return f"ok: refunded {charge.id} ({charge.amount})"
    _dashboard(world, org, "refund", act)


def dashboard_checkout(world: World, org: Org, rng: random.Random) -> None:
    """A Checkout made at Stripe for the org's customer, not by the app, and paid: a second purchase
    when the org already holds a plan (the app's sync must cancel and refund it)."""
    period = _purchasable(world, rng)

    def act(client, customer):
        mode = "subscription" if period.recurring else "payment"
        session = client.v1.checkout.sessions.create(params={
            "mode": mode, "customer": customer, "line_items": [{"price": period.price_id, "quantity": 1}],
            "success_url": "https://example.com/done", "cancel_url": "https://example.com/cancel",
        })
        outcome = world.pay(org, session.id)
        return f"{'ok' if outcome == 'paid' else outcome}: {mode} {period} session {session.id[-8:]} {outcome}"
    _dashboard(world, org, "behind_the_back_checkout", act)


# First step: a purchase (most lifecycles start by buying); then any step, weighted.
STEPS: dict[str, tuple[float, Callable[[World, Org, random.Random], None]]] = {
    "buy": (14, buy),
    "duplicate_buys": (8, duplicate_buys),
    "change": (18, change),
    "cancel": (12, cancel),
    "reactivate": (9, reactivate),
    "keep_current_plan": (6, keep_current_plan),
    "confirm": (4, confirm),
    "late_payment": (5, late_payment),
    "dashboard_cancel_now": (5, dashboard_cancel_now),
    "dashboard_cancel_at_period_end": (6, dashboard_toggle_cancel_at_period_end),
    "dashboard_refund": (5, dashboard_refund),
    "dashboard_checkout": (6, dashboard_checkout),
}


def draw_plan(seed: int, org_index: int, steps: int) -> list[tuple[str, random.Random]]:
    """The org's steps, each with its own generator (so one step's outcome never shifts the next's draws)."""
    names, weights = list(STEPS), [w for w, _ in STEPS.values()]
    plan = []
    for step in range(steps):
        rng = random.Random(f"{seed}:{org_index}:{step}")
        name = rng.choice(["buy", "duplicate_buys"]) if step == 0 else rng.choices(names, weights)[0]
        plan.append((name, rng))
    return plan


def run_lifecycles(world: World, orgs: list[Org], lanes: int) -> None:
    """`lanes` threads; each takes its share of the orgs and runs their steps in turn (step 1 of each, then step 2, ...)."""
    def lane(mine: list[Org]) -> None:
        for step in range(max((len(o.plan) for o in mine), default=0)):
            for org in mine:
                if step >= len(org.plan):
                    continue
                name, rng = org.plan[step]
                try:
                    STEPS[name][1](world, org, rng)
                except Exception as error:  # noqa: BLE001 - report and carry on: one broken step must not hide the rest
                    world.stats.note("driver_errors", f"org {org.index} step {step} {name}: {type(error).__name__}: {error}")
                    org.note(world.clock, f"{name}: driver error {type(error).__name__}: {error}")
                with world.stats.lock:
                    world.stats.steps_done += 1

    _together([lambda mine=orgs[i::lanes]: lane(mine) for i in range(lanes)])


def _together(functions: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=fn, daemon=True) for fn in functions]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)  # wakes up for Ctrl-C
