"""rxconfig.py: what Reflex is told before it writes the frontend."""

import importlib
import json


def test_the_dev_frontend_listens_on_loopback_only():
    """Reflex writes `react-router dev --host` (every interface) as the dev script of .web/package.json."""
    importlib.import_module("rxconfig")
    from reflex.utils import frontend_skeleton

    dev = json.loads(frontend_skeleton._compile_package_json())["scripts"]["dev"]
    assert dev.endswith("--host 127.0.0.1")
