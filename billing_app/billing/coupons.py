"""Coupons and promotion codes as code: their entries in plans.toml and their sync to Stripe.

`sync-catalog` creates the coupons (by the id given here) and promotion codes (by their code) that
Stripe lacks, and never edits one: a Stripe coupon's terms cannot change, so new terms need a new
id. One that differs from plans.toml is reported, not touched. `[retention]` names the coupon the
cancellation flow offers (billing/retention.py).
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from billing_app.billing import gateway, idempotency
from billing_app.formatting import format_amount


class CouponSpec(BaseModel):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,200}$")
    name: str = Field(min_length=1, max_length=40)
    percent_off: float | None = Field(default=None, gt=0, le=100)
    amount_off: int | None = Field(default=None, gt=0)
    currency: str | None = Field(default=None, pattern=r"^[a-z]{3}$")
    duration: Literal["once", "repeating", "forever"]
    duration_in_months: int | None = Field(default=None, ge=1, le=120)
    max_redemptions: int | None = Field(default=None, ge=1)
    redeem_by: date | None = None  # the last day it can be redeemed (UTC)

    @model_validator(mode="after")
    def _terms(self):
        if (self.percent_off is None) == (self.amount_off is None):
            raise ValueError(f"coupon {self.id}: give exactly one of percent_off or amount_off")
        if self.amount_off is not None and not self.currency:
            raise ValueError(f"coupon {self.id}: amount_off needs a currency")
        if (self.duration == "repeating") != (self.duration_in_months is not None):
            raise ValueError(f"coupon {self.id}: duration_in_months goes with duration = \"repeating\" (and only with it)")
        return self

    def describe(self) -> str:
        """'20% off for 3 months', '$5.00 off once', '10% off forever'."""
        off = f"{self.percent_off:g}% off" if self.percent_off is not None else f"{format_amount(self.amount_off, self.currency)} off"
        if self.duration == "repeating":
            return f"{off} for {self.duration_in_months} month{'s' if self.duration_in_months != 1 else ''}"
        return f"{off} {'once' if self.duration == 'once' else 'forever'}"


class PromotionCodeSpec(BaseModel):
    code: str = Field(pattern=r"^[A-Za-z0-9_-]{1,500}$")
    coupon: str
    max_redemptions: int | None = Field(default=None, ge=1)
    expires_at: date | None = None  # the last day it can be used (UTC)


class RetentionSpec(BaseModel):
    coupon: str


def _now() -> int:
    return int(datetime.now(timezone.utc).timestamp())


def end_of_day(day: date | None) -> int | None:
    return int(datetime.combine(day, time(23, 59, 59), timezone.utc).timestamp()) if day else None


def check_references(coupons: list[CouponSpec], codes: list[PromotionCodeSpec], retention: RetentionSpec | None) -> None:
    """Ids and codes are unique; codes and the retention offer name coupons listed here."""
    ids = [c.id for c in coupons]
    if len(ids) != len(set(ids)):
        raise ValueError("coupon ids must be unique")
    names = [p.code.upper() for p in codes]
    if len(names) != len(set(names)):
        raise ValueError("promotion codes must be unique (regardless of case)")
    for p in codes:
        if p.coupon not in ids:
            raise ValueError(f"promotion code {p.code} names an unknown coupon {p.coupon!r}")
    if retention and retention.coupon not in ids:
        raise ValueError(f"[retention] names an unknown coupon {retention.coupon!r}")


def _show(value) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


def _differences(coupon: dict, spec: CouponSpec) -> list[str]:
    wanted = {
        "percent_off": spec.percent_off, "amount_off": spec.amount_off, "currency": spec.currency if spec.amount_off else None,
        "duration": spec.duration, "duration_in_months": spec.duration_in_months, "max_redemptions": spec.max_redemptions,
        "redeem_by": end_of_day(spec.redeem_by), "name": spec.name,
    }
    out = []
    for key, value in wanted.items():
        have = coupon.get(key)
        if key == "percent_off" and have is not None and value is not None:
            same = float(have) == float(value)
        else:
            same = have == value
        if not same:
            out.append(f"{key} {_show(have)} at Stripe, {_show(value)} here")
    return out


def _creating(changes: list[str], what: str, detail: str, last_day, last_day_field: str, dry_run: bool) -> bool:
    """Whether to create `what` at Stripe now, with the line saying so: not once its last day has passed, not on a dry run."""
    if last_day and end_of_day(last_day) <= _now():
        changes.append(f"skip {what}: its {last_day_field} date has passed")
        return False
    changes.append(f"create {what}{detail}")
    return not dry_run


def sync_coupons(client, coupons: list[CouponSpec], codes: list[PromotionCodeSpec], *, dry_run: bool) -> list[str]:
    """Create what Stripe lacks; report (never edit) what differs. Returns the lines to print."""
    changes: list[str] = []
    for spec in coupons:
        try:
            existing = gateway.call(client.v1.coupons.retrieve, spec.id)
        except gateway.StripeFailure as failure:
            if failure.status != 404:
                raise
            existing = None
        if existing is not None:
            diff = _differences(existing, spec)
            if diff:
                changes.append(f"warning: coupon {spec.id} differs from plans.toml ({'; '.join(diff)}); coupons are never "
                               "edited: give new terms a new id")
            continue
        if not _creating(changes, f"coupon {spec.id}", f": {spec.describe()}", spec.redeem_by, "redeem_by", dry_run):
            continue
        params: dict = {"id": spec.id, "name": spec.name, "duration": spec.duration}
        if spec.percent_off is not None:
            params["percent_off"] = spec.percent_off
        else:
            params |= {"amount_off": spec.amount_off, "currency": spec.currency}
        if spec.duration_in_months:
            params["duration_in_months"] = spec.duration_in_months
        if spec.max_redemptions:
            params["max_redemptions"] = spec.max_redemptions
        if spec.redeem_by:
            params["redeem_by"] = end_of_day(spec.redeem_by)
        idempotency.call_once(client.v1.coupons.create, params=params, key=f"catalog-coupon-{spec.id}")
    for spec in codes:
        found = gateway.call(client.v1.promotion_codes.list, params={"code": spec.code, "limit": 10})["data"]
        if found:
            promo = next((p for p in found if p["active"]), found[0])
            coupon = (promo.get("promotion") or {}).get("coupon")
            coupon = coupon["id"] if isinstance(coupon, dict) else coupon
            if coupon != spec.coupon:
                changes.append(f"warning: promotion code {spec.code} is for coupon {coupon} at Stripe, {spec.coupon} here; left as it is")
            elif not promo["active"]:
                changes.append(f"warning: promotion code {spec.code} is inactive at Stripe; left as it is")
            continue
        if not _creating(changes, f"promotion code {spec.code}", f" for coupon {spec.coupon}", spec.expires_at, "expires_at", dry_run):
            continue
        params = {"code": spec.code, "promotion": {"type": "coupon", "coupon": spec.coupon}}
        if spec.max_redemptions:
            params["max_redemptions"] = spec.max_redemptions
        if spec.expires_at:
            params["expires_at"] = end_of_day(spec.expires_at)
        idempotency.call_once(client.v1.promotion_codes.create, params=params, key=f"catalog-promo-{spec.code}")
    return changes
