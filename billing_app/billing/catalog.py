"""The catalog: plans.toml, its sync to Stripe, and its mirror in Plan / PlanPeriod."""

from __future__ import annotations

import functools
import json
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints, ValidationError, model_validator
from sqlmodel import Session, select

from billing_app.billing import gateway, idempotency
from billing_app.billing.coupons import CouponSpec, PromotionCodeSpec, RetentionSpec, check_references, sync_coupons
from billing_app.db import insert_if_absent
from billing_app.models import PeriodType, Plan, PlanPeriod, RetiredPrice

CATALOG_PATH = Path(__file__).resolve().parent.parent / "plans.toml"


class PeriodSpec(BaseModel):
    type: PeriodType
    amount: int = Field(gt=0)
    currency: str = Field(pattern=r"^[a-z]{3}$")
    lookup_key: str = Field(min_length=1, max_length=200)
    trial_days: int | None = Field(default=None, ge=1, le=730)

    @model_validator(mode="after")
    def _no_trial_on_one_off(self):
        if self.type == PeriodType.ALL_TIME and self.trial_days:
            raise ValueError("a one-off (ALL_TIME) period cannot have a trial")
        return self


FeatureKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]+$")]


class GrantSpec(BaseModel):
    """What an organization may use: boolean features and numeric limits (-1 = unlimited)."""

    features: dict[FeatureKey, bool] = {}
    limits: dict[FeatureKey, Annotated[int, Field(ge=-1)]] = {}


class PlanSpec(GrantSpec):
    key: str = Field(pattern=r"^[a-z0-9_-]+$")
    name: str
    description: str = ""
    # The marketing lines on the pricing page (apart from the features the product checks).
    bullets: list[str] = []
    display_order: int = 0
    legacy: bool = False
    most_popular: bool = False
    # Billed per seat: the Stripe subscription item's quantity follows the members (at least min_seats).
    per_seat: bool = False
    min_seats: int = Field(default=1, ge=1, le=10_000)
    periods: list[PeriodSpec] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _bullets_from_old_features(cls, data):
        # Before boolean features, `features` held the marketing lines.
        if isinstance(data, dict) and isinstance(data.get("features"), list) and "bullets" not in data:
            data = {**data, "bullets": data["features"], "features": {}}
        return data

    @model_validator(mode="after")
    def _one_period_per_type(self):
        types = [p.type for p in self.periods]
        if len(types) != len(set(types)):
            raise ValueError(f"plan {self.key} lists a period type twice")
        if self.per_seat and any(p.type == PeriodType.ALL_TIME for p in self.periods):
            raise ValueError(f"plan {self.key} is billed per seat, so it cannot be sold once (ALL_TIME)")
        return self


class CatalogSpec(BaseModel):
    generation: int = Field(ge=1)
    # An organization with no live subscription gets these.
    free: GrantSpec = GrantSpec()
    plans: list[PlanSpec]
    coupons: list[CouponSpec] = []
    promotion_codes: list[PromotionCodeSpec] = []
    retention: RetentionSpec | None = None

    @model_validator(mode="after")
    def _coupon_references(self):
        check_references(self.coupons, self.promotion_codes, self.retention)
        return self

    @model_validator(mode="after")
    def _unique_keys(self):
        keys = [p.key for p in self.plans]
        lookups = [q.lookup_key for p in self.plans for q in p.periods]
        if len(keys) != len(set(keys)) or len(lookups) != len(set(lookups)):
            raise ValueError("plan keys and lookup keys must be unique")
        return self


class CatalogError(ValueError):
    pass


def load_catalog(path: Path = CATALOG_PATH) -> CatalogSpec:
    try:
        return CatalogSpec.model_validate(tomllib.loads(path.read_text()))
    except (tomllib.TOMLDecodeError, ValidationError) as error:
        raise CatalogError(f"{path.name} is not a valid catalog: {error}") from None


@functools.lru_cache(maxsize=1)
def free_tier() -> GrantSpec:
    """The features and limits of an organization with no live subscription ([free] in plans.toml)."""
    return load_catalog().free


def _price_matches(price, spec: PeriodSpec, product_id: str) -> bool:
    interval = price["recurring"]["interval"] if price.get("recurring") else None
    return (
        price["unit_amount"] == spec.amount
        and price["currency"] == spec.currency
        and interval == spec.type.interval
        and price["product"] == product_id
        and price["active"]
    )


def price_matches_period(price, period: PlanPeriod) -> bool:
    """Does Stripe's price still say what our period says (amount, currency, interval)?"""
    interval = price["recurring"]["interval"] if price.get("recurring") else None
    return (
        price["active"]
        and price["unit_amount"] == period.amount
        and price["currency"] == period.currency
        and interval == PeriodType(period.period_type).interval
    )


def _find_product(client, plan_key: str) -> dict | None:
    for product in gateway.list_all(client.v1.products.list, {}):
        if (product.get("metadata") or {}).get("plan_key") == plan_key:
            return product
    return None


def sync_catalog(session: Session, *, dry_run: bool = False, spec: CatalogSpec | None = None) -> list[str]:
    """Make Stripe and the mirror match the catalog. Returns what changed (or would change)."""
    spec = spec or load_catalog()
    client = gateway.stripe_client()
    changes: list[str] = []
    seen_plans: set[str] = set()
    for plan_spec in spec.plans:
        seen_plans.add(plan_spec.key)
        product = _find_product(client, plan_spec.key)
        if product is None:
            changes.append(f"create product {plan_spec.name} ({plan_spec.key})")
            if not dry_run:
                product = idempotency.call_once(
                    client.v1.products.create,
                    params={"name": plan_spec.name, "metadata": {"plan_key": plan_spec.key}}
                    | ({"description": plan_spec.description} if plan_spec.description else {}),
                    key=f"catalog-product-{plan_spec.key}",
                )
        elif product["name"] != plan_spec.name or (product.get("description") or "") != plan_spec.description:
            changes.append(f"update product {plan_spec.key}: name/description")
            if not dry_run:
                product = gateway.call(
                    client.v1.products.update, product["id"],
                    params={"name": plan_spec.name, "description": plan_spec.description or ""},
                )
        plan = session.exec(select(Plan).where(Plan.key == plan_spec.key)).first() or Plan(key=plan_spec.key, name=plan_spec.name)
        plan.name, plan.description = plan_spec.name, plan_spec.description
        plan.features_json, plan.limits_json = json.dumps(plan_spec.bullets), json.dumps(plan_spec.limits)
        plan.feature_flags_json = json.dumps(plan_spec.features)
        plan.per_seat, plan.min_seats = plan_spec.per_seat, plan_spec.min_seats if plan_spec.per_seat else 1
        plan.display_order, plan.legacy, plan.most_popular, plan.active = (
            plan_spec.display_order, plan_spec.legacy, plan_spec.most_popular, True,
        )
        plan.stripe_product_id = product["id"] if product else None
        session.add(plan)
        session.flush()

        kept_types = set()
        for period_spec in plan_spec.periods:
            kept_types.add(period_spec.type.value)
            price_id = _sync_price(client, period_spec, plan_spec.key, product, dry_run, changes)
            period = session.exec(
                select(PlanPeriod).where(PlanPeriod.plan_id == plan.id, PlanPeriod.period_type == period_spec.type.value)
            ).first() or PlanPeriod(plan_id=plan.id, period_type=period_spec.type.value, amount=0, currency="", lookup_key="")
            period.amount, period.currency = period_spec.amount, period_spec.currency
            period.trial_days, period.lookup_key = period_spec.trial_days, period_spec.lookup_key
            if period.id is not None and period.stripe_price_id and period.stripe_price_id != price_id:
                # Its subscribers stay on the old price (Stripe moves no one): it still names this period.
                insert_if_absent(session, RetiredPrice.__table__, ["stripe_price_id"],
                                 stripe_price_id=period.stripe_price_id, plan_period_id=period.id)
            period.stripe_price_id, period.active = price_id, True
            session.add(period)
        for period in session.exec(select(PlanPeriod).where(PlanPeriod.plan_id == plan.id)).all():
            if period.period_type not in kept_types and period.active:
                period.active = False
                changes.append(f"retire period {plan_spec.key} {period.period_type}")
                session.add(period)
    for plan in session.exec(select(Plan).where(Plan.active == True)).all():  # noqa: E712
        if plan.key not in seen_plans:
            plan.active = False
            changes.append(f"retire plan {plan.key}")
            session.add(plan)
    changes += sync_coupons(client, spec.coupons, spec.promotion_codes, dry_run=dry_run)
    if dry_run:
        session.rollback()
    else:
        session.flush()
    return changes


def _sync_price(client, spec: PeriodSpec, plan_key: str, product, dry_run: bool, changes: list[str]) -> str | None:
    existing = gateway.call(client.v1.prices.list, params={"lookup_keys": [spec.lookup_key], "limit": 1})["data"]
    current = existing[0] if existing else None
    if current is not None and product is not None and _price_matches(current, spec, product["id"]):
        return current["id"]
    if current is None:
        changes.append(f"create price {spec.lookup_key}: {spec.amount} {spec.currency} {spec.type.value}")
    else:
        changes.append(
            f"replace price {spec.lookup_key}: {current['unit_amount']} -> {spec.amount} {spec.currency} (new price; lookup key moves)"
        )
    if dry_run or product is None:
        return current["id"] if current else None
    params = {
        "product": product["id"],
        "unit_amount": spec.amount,
        "currency": spec.currency,
        "lookup_key": spec.lookup_key,
        "transfer_lookup_key": True,
        "metadata": {"plan_key": plan_key, "period_type": spec.type.value},
    }
    if spec.type.interval:
        params["recurring"] = {"interval": spec.type.interval}
    price = gateway.call(client.v1.prices.create, params=params)
    if current is not None:
        # The old price stays valid for existing subscriptions, but is no longer sold.
        gateway.call(client.v1.prices.update, current["id"], params={"active": False})
    return price["id"]
