import reflex as rx
from reflex.plugins.sitemap import SitemapPlugin

config = rx.Config(
    app_name="billing_app",
    # Loopback only; `python -m billing_app serve` sets REFLEX_* ports and api_url for other ports.
    backend_host="127.0.0.1",
    api_url="http://127.0.0.1:8000",
    deploy_url="http://127.0.0.1:3000",
    telemetry_enabled=False,
    show_built_with_reflex=False,
    disable_plugins=[SitemapPlugin],
    plugins=[
        rx.plugins.RadixThemesPlugin(
            theme=rx.theme(appearance="light", accent_color="iris", gray_color="slate", radius="large"),
        ),
    ],
)
