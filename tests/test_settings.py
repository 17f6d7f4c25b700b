"""Bad configuration stops start-up with one line naming the variable, never a traceback."""

import os
import subprocess
import sys

import pytest


def run_cli(env_overrides: dict, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "STRIPE_SECRET_KEY"}}
    env.update(env_overrides)
    env["PYTHONPATH"] = os.getcwd()
    return subprocess.run([sys.executable, "-m", "billing_app", "migrate"], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "mysql://db/billing"),
        ("DATABASE_URL", "not a url"),
        ("APP_URL", "nowhere"),
        ("SESSION_LIFETIME_HOURS", "forever"),
        ("SESSION_LIFETIME_HOURS", "0"),
        ("STRIPE_SECRET_KEY", "pk_test_publishable"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_ok,oops"),
        ("STRIPE_API_BASE", "12111"),
    ],
)
def test_malformed_value_stops_with_one_line_naming_it(tmp_path, name, value):
    result = run_cli({name: value}, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Configuration error: " + name), lines[0]
    assert "Traceback" not in result.stderr


def test_dotenv_file_is_read(tmp_path):
    (tmp_path / ".env").write_text("SESSION_LIFETIME_HOURS=never\n")
    result = run_cli({}, tmp_path)
    assert "SESSION_LIFETIME_HOURS" in result.stderr


def test_defaults_need_no_configuration(tmp_path):
    result = run_cli({}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / ".data" / "billing.db").exists()


def test_webhook_secrets_allow_rotation(monkeypatch):
    from billing_app.settings import Settings

    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_old, whsec_new")
    assert Settings().webhook_secrets == ["whsec_old", "whsec_new"]


def test_env_example_documents_every_setting():
    """The README says .env.example documents every variable: each setting's name is in it (set or commented)."""
    from pathlib import Path

    from billing_app.settings import Settings

    example = (Path(__file__).resolve().parents[1] / ".env.example").read_text()
    missing = [name.upper() for name in Settings.model_fields if f"{name.upper()}=" not in example]
    assert not missing, f".env.example does not document {missing}"


def test_every_rate_limit_is_checked_at_start_up():
    """A limit that does not parse stops start-up naming it, not the first request that counts against it."""
    from pydantic import ValidationError

    from billing_app.settings import Settings

    limits = [name for name in Settings.model_fields if name.startswith("rate_limit_") and name != "rate_limit_storage"]
    assert len(limits) >= 12
    for name in limits:
        with pytest.raises(ValidationError, match=name):
            Settings(**{name: "twenty a minute"})
