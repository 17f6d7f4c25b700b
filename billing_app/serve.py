"""Start everything `make run` starts, on 127.0.0.1, and stop it all on Ctrl-C.

Order: migrate the database and seed the demo logins (only in development, with the sandbox, or
when asked: their password is public), start the offline Stripe sandbox (unless a real
STRIPE_SECRET_KEY is configured) and sync the catalog into it, start Reflex, wait until the pages
and the backend answer, then print the URL and the demo logins. The browser tests start
the app through this same function, so they test what a newcomer runs.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from billing_app import routes

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCAL_BUN_BIN = PROJECT_ROOT / ".tools" / "bun" / "node_modules" / ".bin"
SANDBOX_KEY = "sk_test_sandbox"
SANDBOX_WEBHOOK_SECRET = "whsec_sandbox_local"


def sandbox_available() -> bool:
    """True once the sandbox package is runnable (`python -m billing_app.sandbox`)."""
    try:
        return importlib.util.find_spec("billing_app.sandbox.__main__") is not None
    except ModuleNotFoundError:
        return False


def wants_sandbox() -> bool:
    """The sandbox stands in for Stripe unless a real key is configured."""
    from billing_app.settings import get_settings

    return get_settings().stripe_secret_key is None and sandbox_available()


def _wait_until_up(url: str, processes: list[subprocess.Popen], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{' '.join(process.args[:4])} exited with code {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def _stop(processes: list[subprocess.Popen]) -> None:
    """Stop each child's whole process group (Reflex starts its own children), newest first."""
    for process in reversed(processes):
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for process in reversed(processes):
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def app_environment(*, port: int, backend_port: int, prod: bool, sandbox_port: int | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(LOCAL_BUN_BIN), str(Path(sys.executable).parent), env.get("PATH", "")])
    api_url = f"http://127.0.0.1:{port if prod else backend_port}"
    env.update(
        APP_URL=f"http://127.0.0.1:{port}",
        REFLEX_API_URL=api_url,
        REFLEX_DEPLOY_URL=f"http://127.0.0.1:{port}",
        REFLEX_BACKEND_HOST="127.0.0.1",
        PYTHONUNBUFFERED="1",
    )
    if sandbox_port is not None:
        env.update(
            STRIPE_SECRET_KEY=SANDBOX_KEY,
            STRIPE_API_BASE=f"http://127.0.0.1:{sandbox_port}",
            STRIPE_WEBHOOK_SECRET=SANDBOX_WEBHOOK_SECRET,
        )
    return env


def seeds_demo(*, prod: bool, use_sandbox: bool, seed: bool = False) -> bool:
    """Demo admins have a published password: only in development, with the sandbox, or when asked."""
    return seed or not prod or use_sandbox


def start(
    *, prod: bool, port: int, backend_port: int, sandbox_port: int, data_dir: Path,
    use_sandbox: bool | None = None, log=None, quiet_reflex: bool = False, seed: bool = False,
) -> list[subprocess.Popen]:
    """Start the sandbox and the app; returns the running processes (caller stops them with `stop`)."""
    if use_sandbox is None:
        use_sandbox = wants_sandbox()
    env = app_environment(port=port, backend_port=backend_port, prod=prod, sandbox_port=sandbox_port if use_sandbox else None)
    python = sys.executable
    processes: list[subprocess.Popen] = []
    output = dict(stdout=log, stderr=subprocess.STDOUT) if log else {}
    # Reflex persists page states here; they hold no secret, and still are nobody else's business.
    states = PROJECT_ROOT / ".states"
    states.mkdir(mode=0o700, exist_ok=True)
    states.chmod(0o700)
    try:
        subprocess.run([python, "-m", "billing_app", "migrate"], env=env, check=True, cwd=PROJECT_ROOT, **output)
        if seeds_demo(prod=prod, use_sandbox=use_sandbox, seed=seed):
            subprocess.run([python, "-m", "billing_app", "seed"], env=env, check=True, cwd=PROJECT_ROOT, **output)
        if use_sandbox:
            data_dir.mkdir(parents=True, exist_ok=True)
            processes.append(
                subprocess.Popen(
                    [python, "-m", "billing_app.sandbox", "--port", str(sandbox_port),
                     "--webhook-url", env["REFLEX_API_URL"] + routes.API_STRIPE_WEBHOOK,
                     "--webhook-secret", SANDBOX_WEBHOOK_SECRET, "--data", str(data_dir / "sandbox.json")],
                    env=env, cwd=PROJECT_ROOT, start_new_session=True, **output,
                )
            )
            _wait_until_up(f"http://127.0.0.1:{sandbox_port}/_sandbox/health", processes, timeout=30)
            # The sandbox starts empty (or from --data): give it the catalog, idempotently.
            subprocess.run([python, "-m", "billing_app", "sync-catalog"], env=env, check=True, cwd=PROJECT_ROOT, **output)
        command = [python, "-m", "reflex", "run", "--frontend-port", str(port)]
        command += ["--env", "prod", "--single-port"] if prod else ["--env", "dev", "--backend-port", str(backend_port)]
        if quiet_reflex:
            command += ["--loglevel", "warning"]
        processes.append(subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, start_new_session=True, **output))
        # First start installs frontend packages and compiles; later starts are quick.
        _wait_until_up(f"{env['REFLEX_API_URL']}/api/health", processes, timeout=600)
        _wait_until_up(f"http://127.0.0.1:{port}/login", processes, timeout=600)
    except BaseException:
        _stop(processes)
        raise
    return processes


stop = _stop


def serve(*, prod: bool, port: int, backend_port: int, sandbox_port: int, seed: bool = False) -> int:
    from billing_app.seed import logins_text
    from billing_app.settings import get_settings

    use_sandbox = wants_sandbox()
    try:
        processes = start(prod=prod, port=port, backend_port=backend_port, sandbox_port=sandbox_port,
                          data_dir=PROJECT_ROOT / ".data", seed=seed)
    except (RuntimeError, subprocess.CalledProcessError) as error:
        print(f"Could not start the app: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print()
    print(f"  Billing app:  http://127.0.0.1:{port}")
    if use_sandbox:
        print(f"  Stripe:       offline sandbox at http://127.0.0.1:{sandbox_port} (card 4242 4242 4242 4242 pays)")
    elif get_settings().stripe_secret_key:
        print("  Stripe:       the account of STRIPE_SECRET_KEY")
    else:
        print("  Stripe:       not configured (billing pages say so)")
    if seeds_demo(prod=prod, use_sandbox=use_sandbox, seed=seed):
        print(logins_text())
    print("  Press Ctrl-C to stop everything.\n", flush=True)

    stopping = False

    def _on_signal(_signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        while not stopping:
            if any(p.poll() is not None for p in processes):
                print("A server stopped unexpectedly; stopping the rest.", file=sys.stderr)
                _stop(processes)
                return 1
            time.sleep(0.5)
    finally:
        _stop(processes)
    print("Stopped.")
    return 0
