"""Which plan period a Stripe price is: the one place the mirror answers it (sync, plan changes,
seats, notices, pages).

The catalog's current price of a period, else one it had before (`RetiredPrice`: a repriced period's
subscribers stay on the old price and keep their plan), else, for a price object read from Stripe, its
product and interval (a price retired before history was kept, or made in Stripe's Dashboard for one
customer: it still sells that plan)."""

from __future__ import annotations

from sqlmodel import Session, select

from billing_app.models import PeriodType, Plan, PlanPeriod, RetiredPrice

_PERIOD_OF_INTERVAL = {"month": PeriodType.MONTHLY.value, "year": PeriodType.YEARLY.value}


def period_for_price(session: Session, price: str | dict | None) -> PlanPeriod | None:
    """The plan period of a price id, or of a price object (which may also be found by its product)."""
    price_id = price.get("id") if isinstance(price, dict) else price
    if not price_id:
        return None
    period = session.exec(select(PlanPeriod).where(PlanPeriod.stripe_price_id == price_id)).first()
    if period is None and (retired := session.get(RetiredPrice, price_id)) is not None:
        period = session.get(PlanPeriod, retired.plan_period_id)
    if period is None and isinstance(price, dict):
        period = _period_of_product(session, price)
    return period


def plan_for_price(session: Session, price: str | dict | None) -> Plan | None:
    period = period_for_price(session, price)
    return period.plan if period else None


def _period_of_product(session: Session, price: dict) -> PlanPeriod | None:
    """A price of a plan's own product that the catalog does not know by id: a one-time price is
    the plan's lifetime period, a monthly or yearly one its monthly or yearly period."""
    product = price.get("product")
    product_id = product.get("id") if isinstance(product, dict) else product
    recurring = price.get("recurring") or {}
    if price.get("type") == "one_time":
        period_type = PeriodType.ALL_TIME.value
    elif recurring.get("interval_count", 1) == 1:
        period_type = _PERIOD_OF_INTERVAL.get(recurring.get("interval"))
    else:
        period_type = None
    if not product_id or period_type is None:
        return None
    return session.exec(
        select(PlanPeriod).join(Plan, PlanPeriod.plan_id == Plan.id)
        .where(Plan.stripe_product_id == product_id, PlanPeriod.period_type == period_type)
    ).first()
