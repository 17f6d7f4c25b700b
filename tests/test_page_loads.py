"""No page load reads the database on the event loop.

Reflex runs a plain (synchronous) event handler on the backend's event loop, which serves every
websocket of that process: a load that reads the database there holds up every other page, and a
burst of loads (pages reconnecting after a backend restart) stalls them all. So every on_load
handler is a background event (`state.in_a_thread`, or async), except the few that only read
the page's address.
"""

from __future__ import annotations

import subprocess
import sys

from billing_app.serve import PROJECT_ROOT

# These only copy query parameters into the form: no database, nothing to wait for.
ADDRESS_ONLY = {"LoginState.open", "RegisterState.open", "ForgotState.open", "ResetState.open"}

PROBE = """
import json
from reflex.utils.prerequisites import get_and_validate_app
app = get_and_validate_app().app
app._apply_decorated_pages()
found = []
for route, page in app._unevaluated_pages.items():
    events = page.on_load or []
    for event in events if isinstance(events, list) else [events]:
        handler = getattr(event, "handler", event)
        found.append([route, handler.fn.__qualname__, bool(handler.is_background)])
print(json.dumps(found))
"""


def test_every_page_load_that_reads_the_database_runs_off_the_event_loop(tmp_path):
    # The app as the backend builds it, in a process of its own (its pages register as it loads).
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/app.db", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    import json

    loads = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"BillingState.load", "SeatsBarState.load", "HomeState.load"} <= {name for _, name, _ in loads}
    on_the_loop = sorted({f"{route}: {name}" for route, name, background in loads
                          if not background and name not in ADDRESS_ONLY})
    assert on_the_loop == []
