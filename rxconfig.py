import reflex as rx
from reflex.plugins.sitemap import SitemapPlugin
from reflex_base.constants.installer import PackageJson

from billing_app.settings import get_settings

# Reflex runs its dev frontend (Vite, `make run`) as `react-router dev --host`, on every interface;
# loopback only, like every server we start (a dev server is not for the network).
PackageJson.Commands.DEV = "react-router dev --host 127.0.0.1"

config = rx.Config(
    app_name="billing_app",
    # Loopback only; `python -m billing_app serve` sets REFLEX_* ports and api_url for other ports.
    backend_host="127.0.0.1",
    api_url="http://127.0.0.1:8000",
    deploy_url="http://127.0.0.1:3000",
    # Credentialed cross-origin requests (the event socket, /api/*) only from the app's own origin
    # (APP_URL), never any origin that asks: a page elsewhere on the same site cannot read an
    # admin's CSV export through the browser's cookie.
    cors_allowed_origins=[get_settings().app_origin],
    telemetry_enabled=False,
    show_built_with_reflex=False,
    disable_plugins=[SitemapPlugin],
    plugins=[
        rx.plugins.RadixThemesPlugin(
            theme=rx.theme(appearance="light", accent_color="iris", gray_color="slate", radius="large"),
        ),
    ],
)
