"""Process-local caches with several backend processes: the Stripe client and the portal configuration.

Each process keeps its own Stripe client and its own cache of portal configuration ids, so the
first portal opening in every process decides for itself whether a configuration exists yet.
Several processes doing that at the same instant must still leave Stripe with one configuration:
the configuration's idempotency key is the one place that decides.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from urllib.parse import parse_qs

import pytest

from billing_app.auth import accounts
from billing_app.billing import gateway
from billing_app.billing.customers import ensure_customer
from billing_app.db import session_scope
from tests.billing.helpers import PASSWORD
from tests.scale.worker_helpers import ROOT, RequestLog, TcpProxy, wait_until

PROCESSES = 3
# A backend process opening the portal once, as the org's admin (its own Stripe client and caches).
OPEN_PORTAL = """
import json, os
from billing_app.auth import accounts
from billing_app.billing.portal import portal_url
from billing_app.db import session_scope

with session_scope() as s:
    admin = accounts.actor_for_session(s, os.environ["SESSION"])
print(json.dumps({"url": portal_url(admin)}))
"""
CREATE_CONFIGURATION = b"POST /v1/billing_portal/configurations"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the race is at Stripe, not in the database
def test_processes_opening_the_portal_for_the_first_time_at_once_make_one_configuration(org, sandbox_server, tmp_path):
    ensure_customer(org.id, "admin@acme.example")
    with session_scope() as s:
        session = accounts.login(s, email="admin@acme.example", password=PASSWORD)
    stripe = RequestLog(sandbox_server.recording)
    # The worst case, made certain: every process's "create" waits at a proxy until all of them have
    # looked, found no configuration and asked to create one.
    proxy = TcpProxy(int(sandbox_server.base_url.rsplit(":", 1)[1]))
    proxy.hold_from(CREATE_CONFIGURATION, 1)
    env = {**os.environ, "SESSION": session, "STRIPE_API_BASE": f"http://127.0.0.1:{proxy.port}"}
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_PORTAL], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(PROCESSES)]
    try:
        wait_until(lambda: proxy.seen == PROCESSES or any(p.poll() is not None for p in procs), 25,
                   "every process to ask Stripe for a new configuration")
        proxy.release()
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        proxy.close()
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0] * PROCESSES, outputs
    assert proxy.seen == PROCESSES
    assert all(json.loads(out.splitlines()[-1])["url"] for out, _ in outputs)

    client = gateway.stripe_client()
    configurations = gateway.list_all(client.v1.billing_portal.configurations.list, {})
    assert len(configurations) == 1, f"{len(configurations)} portal configurations at Stripe"
    sessions = [parse_qs(r["raw"]) for r in stripe.requests() if (r["method"], r["path"]) == ("POST", "/v1/billing_portal/sessions")]
    assert [s["configuration"][0] for s in sessions] == [configurations[0]["id"]] * PROCESSES
