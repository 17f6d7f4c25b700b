"""Production never gets the demo admins (whose password is public) unless asked."""

import subprocess

import pytest

from billing_app import serve


@pytest.mark.parametrize("prod, sandbox, asked, seeded", [
    (False, False, False, True),   # development
    (True, True, False, True),     # the production build with the offline sandbox (demo, browser tests)
    (True, False, False, False),   # production with real Stripe
    (True, False, True, True),     # ... unless asked: serve --prod --seed
])
def test_serve_seeds_the_demo_logins_only_in_development_with_the_sandbox_or_when_asked(monkeypatch, tmp_path, prod, sandbox, asked, seeded):
    commands = []

    class FakeProcess:
        pid, returncode, args = 0, None, ["fake"]

        def poll(self):
            return None

    monkeypatch.setattr(subprocess, "run", lambda command, **_: commands.append(command[2:]))
    monkeypatch.setattr(subprocess, "Popen", lambda command, **_: (commands.append(command[2:]), FakeProcess())[1])
    monkeypatch.setattr(serve, "_wait_until_up", lambda *a, **k: None)
    serve.start(prod=prod, port=1, backend_port=2, sandbox_port=3, data_dir=tmp_path, use_sandbox=sandbox, seed=asked)
    assert (["billing_app", "seed"] in commands) is seeded
    assert ["billing_app", "migrate"] in commands


def test_the_serve_command_takes_seed():
    from billing_app.cli import build_parser

    assert build_parser().parse_args(["serve", "--prod", "--seed"]).seed is True
    assert build_parser().parse_args(["serve", "--prod"]).seed is False
