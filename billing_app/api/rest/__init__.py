"""The REST API: the billing abilities of the UI for scripts and other front ends.

A FastAPI app mounted at `/api` inside the backend's Starlette app (see `mount()`), so the
routes are relative to `/api` and the OpenAPI 3.1 document, generated from these same
definitions, is served at `/api/openapi.json` with full paths. Every route calls the same
billing services and views as the pages.

    deps.py     who is calling (Member, Admin) and the unknown-query-parameter guard
    errors.py   the one error envelope, and which codes each route documents
    schemas.py  request and response bodies
    routes/     one APIRouter per resource: plans, subscriptions, seats, billing, entitlements, org, ops
"""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.routing import Mount

from billing_app.api.rest import errors
from billing_app.api.rest.routes import billing, entitlements, ops, org, plans, seats, subscriptions
from billing_app.routes import API_PREFIX

TAGS = [
    {"name": "plans", "description": "The public catalog."},
    {"name": "subscription", "description": "The organization's subscription: read it, buy, change, cancel, reactivate."},
    {"name": "billing", "description": "Payments, the Stripe Customer Portal, a summary and the entitlements for gating."},
    {"name": "organization", "description": "Members, invitations and seats."},
]


def docs_enabled() -> bool:
    """Swagger UI at /api/docs in development only: FastAPI's page loads its script and styles from
    a public CDN, which a production page must not. The OpenAPI document itself is always served."""
    from reflex.utils.exec import is_prod_mode

    return not is_prod_mode()


def create_app(*, docs: bool | None = None) -> FastAPI:
    """A new REST app (tests make one each; the backend mounts `rest_app`)."""
    app = FastAPI(
        title="billing_app REST API",
        version="1.0.0",
        description=(
            "The billing abilities of the app for scripts and other front ends. Authenticate with "
            "`Authorization: Bearer <token>`. Every error is `{success: false, error_code, message}`; "
            "`error_code` comes from the one list of codes shared with the UI."
        ),
        openapi_url="/openapi.json",
        docs_url="/docs" if (docs_enabled() if docs is None else docs) else None,
        redoc_url=None,
        root_path_in_servers=False,
        openapi_tags=TAGS,
        separate_input_output_schemas=False,
        generate_unique_id_function=lambda route: route.name,
    )
    errors.install(app)
    for router in (plans.router, subscriptions.router, seats.router, billing.router, entitlements.router, org.router, ops.router):
        app.include_router(router)

    def openapi() -> dict:
        # Routes are declared relative to the mount point; the document names their full paths.
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, openapi_version=app.openapi_version,
                description=app.description, routes=app.routes, tags=app.openapi_tags,
                separate_input_output_schemas=app.separate_input_output_schemas,
            )
            schema["paths"] = {API_PREFIX + path: item for path, item in schema.get("paths", {}).items()}
            # The shared envelope, for readers (each route's responses narrow its error codes).
            envelope = errors.ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(envelope.pop("$defs", {}))
            components["ErrorResponse"] = envelope
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


rest_app = create_app()


class _ApiMount(Mount):
    """Mount whose prefix match also spans a decoded newline (`%0A`) in the path.

    Starlette's `.*` stops at a newline, so `/api/x%0Ay` would miss the mount and get the outer
    app's plain-text 404 instead of the API's JSON envelope.
    """

    def __init__(self, path: str, app) -> None:
        super().__init__(path, app=app)
        self.path_regex = re.compile(self.path_regex.pattern, re.DOTALL)


def mount(app: FastAPI | None = None) -> Mount:
    """The API as a route of the backend's Starlette app, at `/api`.

    Put it after the backend's own `/api/...` routes (health, the Stripe webhook, the CSV export):
    it takes every path under `/api` that no earlier route matched, and answers unknown ones with
    the JSON 404 envelope.
    """
    return _ApiMount(API_PREFIX, app=app or rest_app)
