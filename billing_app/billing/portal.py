"""The Stripe Customer Portal: one configuration per catalog generation and audience."""

from __future__ import annotations

from sqlmodel import select

from billing_app import routes
from billing_app.auth.accounts import Actor, admin_now
from billing_app.billing import gateway, idempotency, retention
from billing_app.billing.catalog import load_catalog
from billing_app.billing.customers import customer_id_for
from billing_app.billing.entitlements import current_subscription
from billing_app.billing.retention import PAUSE_MONTHS
from billing_app.billing.subscriptions import CANCELLATION_FEEDBACK
from billing_app.db import session_scope
from billing_app.errors import AppError, ErrorCode
from billing_app.models import Plan, PlanPeriod, Role
from billing_app.settings import get_settings

FLOWS = ("payment_method_update", "subscription_cancel", "subscription_update", "subscription_pause", "customer_update")
# Flows about the organization's subscription (flow_data[type][subscription]).
SUBSCRIPTION_FLOWS = ("subscription_cancel", "subscription_update", "subscription_pause")
# Bumped when the configuration's features change: a configuration is made once per (generation, audience, this).
FEATURES_VERSION = "2"
_config_cache: dict[tuple[int, str], str] = {}


def _switchable_products(legacy: bool) -> list[dict]:
    """Recurring prices a customer of this audience may switch among in the portal."""
    with session_scope() as session:
        rows = session.exec(
            select(Plan.stripe_product_id, PlanPeriod.stripe_price_id, Plan.per_seat, Plan.min_seats)
            .join(PlanPeriod, PlanPeriod.plan_id == Plan.id)
            .where(Plan.active == True, Plan.legacy == legacy, PlanPeriod.active == True)  # noqa: E712
            .where(PlanPeriod.period_type != "ALL_TIME")
        ).all()
    products: dict[str, list[str]] = {}
    # A per-seat plan's seats can be changed in the portal too (never below min_seats); the app
    # mirrors the new quantity and warns when it falls below the members.
    adjustable: dict[str, dict] = {}
    for product_id, price_id, per_seat, min_seats in rows:
        if product_id and price_id:
            products.setdefault(product_id, []).append(price_id)
            if per_seat:
                adjustable[product_id] = {"enabled": True, "minimum": min_seats}
    return [
        {"product": product, "prices": prices} | ({"adjustable_quantity": adjustable[product]} if product in adjustable else {})
        for product, prices in sorted(products.items())
    ]


def _configuration_id(legacy: bool) -> str:
    """Find or create the portal configuration for (catalog generation, audience); reused after."""
    generation = load_catalog().generation
    audience = "legacy" if legacy else "current"
    key = (generation, audience)
    if key in _config_cache:
        return _config_cache[key]
    client = gateway.stripe_client()
    for config in gateway.list_all(client.v1.billing_portal.configurations.list, {}):
        metadata = config.get("metadata") or {}
        if (metadata.get("generation") == str(generation) and metadata.get("audience") == audience
                and metadata.get("features") == FEATURES_VERSION and config["active"]):
            _config_cache[key] = config["id"]
            return config["id"]
    products = _switchable_products(legacy)
    features = {
        "payment_method_update": {"enabled": True},
        "invoice_history": {"enabled": True},
        "customer_update": {"enabled": True, "allowed_updates": ["email", "name", "address", "tax_id"]},
        # The same choices as the app's cancellation flow: a reason, a pause of 1 to 3 months, the
        # retention coupon (in the cancel flow's flow_data, see portal_url).
        "subscription_cancel": {
            "enabled": True,
            "mode": "at_period_end",
            "cancellation_reason": {"enabled": True, "options": list(CANCELLATION_FEEDBACK)},
        },
        "subscription_pause": {
            "enabled": True,
            "duration": {"type": "interval_options",
                         "interval_options": [{"interval": "month", "interval_count": n} for n in PAUSE_MONTHS]},
        },
    }
    if products:
        seats = any("adjustable_quantity" in p for p in products)
        features["subscription_update"] = {
            "enabled": True,
            "default_allowed_updates": ["price", "quantity"] if seats else ["price"],
            "proration_behavior": "create_prorations",
            "products": products,
        }
    config = idempotency.call_once(
        client.v1.billing_portal.configurations.create,
        params={
            "business_profile": {"headline": "Manage your subscription"},
            "features": features,
            "metadata": {"generation": str(generation), "audience": audience, "features": FEATURES_VERSION},
        },
        key=f"portal-config-{generation}-{audience}-{FEATURES_VERSION}",
    )
    _config_cache[key] = config["id"]
    return config["id"]


def portal_url(actor: Actor, flow: str | None = None) -> str:
    actor.require_role(Role.ADMIN)
    if flow is not None and flow not in FLOWS:
        raise AppError(ErrorCode.VALIDATION_ERROR, f"Unknown portal flow {flow!r}.")
    org_id = admin_now(actor).require_role(Role.ADMIN)  # as it is now, after any wait
    customer_id = customer_id_for(org_id)
    if customer_id is None:
        raise AppError(ErrorCode.NO_BILLING_ACCOUNT, "No active subscription found. Please subscribe to a plan first.")
    with session_scope() as session:
        sub = current_subscription(session, org_id)
        legacy = bool(sub and sub.period and sub.period.plan.legacy)
    return_url = get_settings().url(routes.BILLING)
    params = {"customer": customer_id, "return_url": return_url}
    try:
        params["configuration"] = _configuration_id(legacy)
        if flow in ("payment_method_update", "customer_update"):
            params["flow_data"] = {"type": flow}
        elif flow in SUBSCRIPTION_FLOWS:
            if sub is None or sub.one_off:
                raise AppError(ErrorCode.SUBSCRIPTION_NOT_FOUND, "There is no subscription to change.")
            params["flow_data"] = {"type": flow, flow: {"subscription": sub.stripe_id}}
            if flow == "subscription_cancel":
                with session_scope() as session:
                    offer = retention.offer_for(session, org_id)
                if offer is not None:
                    params["flow_data"][flow]["retention"] = {"type": "coupon_offer", "coupon_offer": {"coupon": offer.id}}
                    retention.note_offered(org_id, offer.id)
        session_obj = gateway.call(gateway.stripe_client().v1.billing_portal.sessions.create, params=params)
    except gateway.StripeFailure:
        raise AppError(ErrorCode.STRIPE_PORTAL_FAILED, "We could not open the billing portal. Please try again.") from None
    return session_obj["url"]
