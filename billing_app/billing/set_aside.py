"""A scheduled downgrade set aside for an upgrade, and put back if the upgrade lapses unconfirmed.

An upgrade is made as a Stripe pending update, which a subscription schedule would switch back at
the period end, so a downgrade waiting there (the schedule's next phase) is released first. When the
upgrade's payment needs 3-D Secure it waits for the customer until `pending_update.expires_at`, then
Stripe discards it: without this the org would renew on the plan it asked to leave. So the change is
written down (`remember`, before the release: a process that dies after its Stripe calls leaves the
row), and every sync of the customer judges it on the subscription as Stripe has it then
(`judge_lapsed`; customer.subscription.pending_update_expired and _applied trigger one):

- the upgrade still waits for the customer: keep waiting;
- the subscription as it was (plan, quantity and period, not canceling, no schedule): the change is
  put back (`schedules.write`);
- the same, but its period over (it lapsed at the period end, which renewed it): too late to put it
  back for that period; an operator is told (`billing.scheduled_change_lost`);
- anything else (the upgrade applied, a cancellation, another plan, a schedule made since): the
  admin's later choice stands.

Then it is forgotten. Each row is judged by one holder at a time: the upgrade being made, then one
sync (a lease in the row, as the seat claim's; a holder that died is taken over), so two syncs
or an event delivered twice put it back once. A sync judges under the org's seat claim, which plan
changes hold too: an upgrade made meanwhile is never switched back by a put-back decided on the
subscription before it (while one is being made, its own re-sync judges instead). A put-back is
noted in the row before its schedule is made, so a holder that died halfway is finished by the
sync that takes its row over. The org comes from our own subscription row, never from Stripe.

Keep current plan drops it too (`dropped`): the admin's explicit choice outranks a downgrade that
would otherwise come back. It takes the row as a sync does; one held by a sync judging it (which
may be putting it back this moment) makes Keep wait its turn, never answer "nothing is scheduled".
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import delete, or_, update
from sqlmodel import select

from billing_app import owners
from billing_app.billing import gateway, schedules
from billing_app.billing.fresh import Fresh
from billing_app.billing.seats import seat_claim
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import OrgSubscription, SetAsideChange, utcnow

log = structlog.get_logger(__name__)

# Longer than the Stripe calls an upgrade makes while it holds the row (each at most
# gateway.worst_case_call_seconds()); a holder of this host that died is taken over at once.
CLAIM_SECONDS = 600
# How long a sync waits for a plan or seat change holding the org's seat claim; past that a later sync
# judges the rows (the webhook worker retries the deferred sync's events).
SEAT_WAIT_SECONDS = 5

T = SetAsideChange.__table__


def _period_end(fresh: Fresh) -> datetime:
    return datetime.fromtimestamp(fresh.stripe_sub["items"]["data"][0]["current_period_end"], tz=UTC)


def remember(sub: OrgSubscription, fresh: Fresh) -> str | None:
    """Write down the change waiting on the schedule, before it is released for an upgrade; the
    upgrade holds the row until `let_go` (returns its claim; None when no change waits)."""
    later = schedules.waiting(fresh.stripe_sub.get("schedule"))
    if not later:
        return None
    price_id, quantity = fresh.plan_and_quantity
    claim = owners.new_claim_token()
    with session_scope() as session:
        session.merge(SetAsideChange(
            subscription_id=sub.id, price_id=price_id, quantity=quantity, period_end=_period_end(fresh),
            next_items_json=json.dumps(schedules.phase_items(later[0])),
            end_behavior=fresh.stripe_sub["schedule"].get("end_behavior") or "release",
            claim_id=claim, claimed_until=utcnow() + timedelta(seconds=CLAIM_SECONDS),
        ))
    return claim


def let_go(subscription_id: int, claim: str) -> None:
    """The upgrade is made (or failed): from now on the syncs judge the change on what Stripe has."""
    with session_scope() as session:
        session.execute(update(T).where(T.c.subscription_id == subscription_id, T.c.claim_id == claim)
                        .values(claim_id=None, claimed_until=None))


def _claim(subscription_id: int) -> str | None:
    """Take the row for this sync; None when it is gone or another holder (alive) has it."""
    claim, now = owners.new_claim_token(), utcnow()
    with session_scope() as session:
        holder = session.execute(select(T.c.claim_id).where(T.c.subscription_id == subscription_id)).scalar_one_or_none()
        free = or_(T.c.claimed_until.is_(None), T.c.claimed_until < now)
        if holder and owners.is_dead(holder):
            free = or_(free, T.c.claim_id == holder)
        taken = session.execute(update(T).where(T.c.subscription_id == subscription_id, free)
                                .values(claim_id=claim, claimed_until=now + timedelta(seconds=CLAIM_SECONDS)))
    return claim if taken.rowcount == 1 else None


def _forget(subscription_id: int, claim: str) -> None:
    with session_scope() as session:
        session.execute(delete(T).where(T.c.subscription_id == subscription_id, T.c.claim_id == claim))


@contextlib.contextmanager
def dropped(subscription_id: int) -> Iterator[bool]:
    """Keep current plan: forget the change set aside on this subscription, once the caller's block
    (dropping any schedule at Stripe) succeeds; yields whether there was one. Taken before the caller
    reads Stripe, so no sync puts it back unseen meanwhile; a failed block leaves it to the syncs."""
    with session_scope() as session:
        if session.get(SetAsideChange, subscription_id) is None:
            yield False
            return
    claim = _claim(subscription_id)
    if claim is None:
        raise AppError(ErrorCode.SEAT_CHANGE_IN_PROGRESS,
                       "Another change to your organization's plan is in progress. Please try again in a moment.")
    try:
        yield True
    except BaseException:
        let_go(subscription_id, claim)
        raise
    _forget(subscription_id, claim)


class Deferred(Exception):
    """The org's seat claim stayed busy: the set-aside changes to judge are left for a later sync."""


def judge_lapsed(client, org_id: int, subscriptions: list[dict]) -> bool:
    """Judge the org's set-aside changes whose upgrade no longer waits in `subscriptions` (a sync's
    reads); True when one was put back at Stripe (the mirror is then behind). Raises `Deferred` when
    a plan or seat change holds the org's seat claim too long: nothing else may judge them before the
    period ends, so the webhook worker retries the sync's events (the rows stay; judging is idempotent)."""
    with session_scope() as session:
        rows = session.exec(select(SetAsideChange.subscription_id, OrgSubscription.stripe_id)
                            .join(OrgSubscription, OrgSubscription.id == SetAsideChange.subscription_id)
                            .where(OrgSubscription.org_id == org_id)).all()
    waiting = {s["id"] for s in subscriptions if s.get("pending_update")}
    rows = [(subscription_id, stripe_id) for subscription_id, stripe_id in rows if stripe_id not in waiting]
    if not rows:
        return False
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(seat_claim(org_id, SEAT_WAIT_SECONDS))
        except AppError:
            log.info("billing.set_aside_change_deferred", org=org_id, reason="a plan or seat change is being made")
            raise Deferred("judging a set-aside change deferred: a plan or seat change is being made") from None
        put_back = False
        for subscription_id, stripe_id in rows:
            claim = _claim(subscription_id)
            if claim is None:
                continue  # the upgrade is still being made, or another sync is judging it
            try:
                put_back |= _judge(client, subscription_id, stripe_id, claim)
            except BaseException:
                let_go(subscription_id, claim)  # Stripe could not be read: a later sync judges it
                raise
        return put_back


def _judge(client, subscription_id: int, stripe_id: str, claim: str) -> bool:
    fresh = Fresh(gateway.call(client.v1.subscriptions.retrieve, stripe_id, params={"expand": ["schedule"]}))
    if fresh.stripe_sub.get("pending_update"):
        let_go(subscription_id, claim)  # an upgrade waits for the customer again
        return False
    with session_scope() as session:
        change = session.get(SetAsideChange, subscription_id)
    if change is None or change.claim_id != claim:
        return False  # written anew meanwhile (another upgrade set a change aside): its own syncs judge it
    next_items = json.loads(change.next_items_json)
    # A put-back begun by a holder that died after making its schedule: a schedule with nothing waiting
    # is that write, unfinished (every schedule the app or the portal makes has a phase waiting).
    unfinished = fresh.schedule_id if change.putting_back and not fresh.change_waiting else None
    as_it_was = (not fresh.ended and not fresh.canceling and fresh.schedule_id == unfinished
                 and fresh.plan_and_quantity == (change.price_id, change.quantity))
    put_back = False
    if as_it_was and _period_end(fresh) != change.period_end:
        log.error("billing.scheduled_change_lost", subscription=stripe_id, phases=[next_items],
                  error=f"the upgrade lapsed after the period it was scheduled for ended ({change.period_end.isoformat()})")
    elif as_it_was:
        _note_putting_back(subscription_id, claim)
        try:
            put_back = schedules.write(client, stripe_id, unfinished, fresh.stripe_sub["items"]["data"][0], next_items,
                                       change.end_behavior)
            # Not written: the subscription changed since it was read (the portal), and that stands.
            log.info("billing.scheduled_change_restored" if put_back else "billing.scheduled_change_superseded",
                     subscription=stripe_id, phases=[next_items])
        except gateway.StripeFailure as failure:  # the mirror shows it gone, which is the truth at Stripe
            log.error("billing.scheduled_change_lost", subscription=stripe_id, phases=[next_items], error=failure.message)
    _forget(subscription_id, claim)
    return put_back


def _note_putting_back(subscription_id: int, claim: str) -> None:
    with session_scope() as session:
        session.execute(update(T).where(T.c.subscription_id == subscription_id, T.c.claim_id == claim)
                        .values(putting_back=True))
