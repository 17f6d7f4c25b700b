"""Pytest plugin for the conformance check (registered in tests/conftest.py).

* Records every request the app sends to Stripe: calls through an HTTP client class
  defined in ``billing_app`` (the gateway's), with the test that caused them.
* Runs the tests marked ``conformance_last`` after every other test, so they see
  everything the rest of the run sent and received.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import pytest
from stripe._http_client import HTTPClient

APP_REQUESTS: list[dict] = []  # {"method", "path", "raw", "test"}


def pytest_configure(config):
    config.addinivalue_line("markers", "conformance_last: run after every other test (checks what the run recorded)")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.get_closest_marker("conformance_last") is not None)  # stable: order kept otherwise


@pytest.fixture(scope="session", autouse=True)
def _record_app_requests():
    original = HTTPClient.request_with_retries

    def recording(self, method, url, headers, post_data=None, *args, **kwargs):
        if type(self).__module__.startswith("billing_app."):
            parts = urlsplit(url)
            raw = post_data.decode() if isinstance(post_data, bytes) else post_data
            APP_REQUESTS.append({"method": method, "path": parts.path, "raw": raw or parts.query,
                                 "test": os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]})
        return original(self, method, url, headers, post_data, *args, **kwargs)

    HTTPClient.request_with_retries = recording
    yield
    HTTPClient.request_with_retries = original
