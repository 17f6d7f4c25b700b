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
from dataclasses import dataclass, field
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


def _prepare(env: dict[str, str], *, prod: bool, use_sandbox: bool, seed: bool, sandbox_port: int, data_dir: Path,
             webhook_url: str, processes: list[subprocess.Popen], output: dict) -> None:
    """Migrate, seed when allowed, and start the sandbox (appended to `processes`) with the catalog in it."""
    python = sys.executable
    subprocess.run([python, "-m", "billing_app", "migrate"], env=env, check=True, cwd=PROJECT_ROOT, **output)
    if seeds_demo(prod=prod, use_sandbox=use_sandbox, seed=seed):
        subprocess.run([python, "-m", "billing_app", "seed"], env=env, check=True, cwd=PROJECT_ROOT, **output)
    if use_sandbox:
        data_dir.mkdir(parents=True, exist_ok=True)
        processes.append(
            subprocess.Popen(
                [python, "-m", "billing_app.sandbox", "--port", str(sandbox_port), "--webhook-url", webhook_url,
                 "--webhook-secret", SANDBOX_WEBHOOK_SECRET, "--data", str(data_dir / "sandbox.json")],
                env=env, cwd=PROJECT_ROOT, start_new_session=True, **output,
            )
        )
        _wait_until_up(f"http://127.0.0.1:{sandbox_port}/_sandbox/health", processes, timeout=30)
        # The sandbox starts empty (or from --data): give it the catalog, idempotently.
        subprocess.run([python, "-m", "billing_app", "sync-catalog"], env=env, check=True, cwd=PROJECT_ROOT, **output)


def _states_dir() -> None:
    # Reflex persists page states here; they hold no secret, and still are nobody else's business.
    states = PROJECT_ROOT / ".states"
    states.mkdir(mode=0o700, exist_ok=True)
    states.chmod(0o700)


def start(
    *, prod: bool, port: int, backend_port: int, sandbox_port: int, data_dir: Path,
    use_sandbox: bool | None = None, log=None, quiet_reflex: bool = False, seed: bool = False,
) -> list[subprocess.Popen]:
    """Start the sandbox and the app; returns the running processes (caller stops them with `stop`)."""
    if use_sandbox is None:
        use_sandbox = wants_sandbox()
    env = app_environment(port=port, backend_port=backend_port, prod=prod, sandbox_port=sandbox_port if use_sandbox else None)
    processes: list[subprocess.Popen] = []
    output = dict(stdout=log, stderr=subprocess.STDOUT) if log else {}
    _states_dir()
    try:
        _prepare(env, prod=prod, use_sandbox=use_sandbox, seed=seed, sandbox_port=sandbox_port, data_dir=data_dir,
                 webhook_url=env["REFLEX_API_URL"] + routes.API_STRIPE_WEBHOOK, processes=processes, output=output)
        command = [sys.executable, "-m", "reflex", "run", "--frontend-port", str(port)]
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
    processes, failed = _started(lambda: start(prod=prod, port=port, backend_port=backend_port, sandbox_port=sandbox_port,
                                               data_dir=PROJECT_ROOT / ".data", seed=seed))
    if failed is not None:
        return failed
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

    return _supervise(processes)


def _started(start_fn):
    """(what `start_fn` started, None), or (None, the exit code) with the reason printed."""
    try:
        return start_fn(), None
    except (RuntimeError, subprocess.CalledProcessError) as error:
        print(f"Could not start the app: {error}", file=sys.stderr)
        return None, 1
    except KeyboardInterrupt:
        return None, 130


def _supervise(processes: list[subprocess.Popen]) -> int:
    """Wait for Ctrl-C or SIGTERM (or a child dying), then stop every child by its process group."""
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


# --- several backends: `serve --prod --backends N --workers M` ------------------------------

def scaled_requirements() -> str | None:
    """Why the scaled topology cannot start (one line), or None when PostgreSQL and Redis are configured."""
    from sqlalchemy.engine import make_url

    from billing_app.settings import get_settings

    settings = get_settings()
    if make_url(settings.database_url).drivername != "postgresql+psycopg":
        return "serve --backends needs DATABASE_URL=postgresql+psycopg://... (several processes cannot share SQLite)"
    if not settings.redis_url or not settings.redis_url.startswith(("redis://", "rediss://")):
        return "serve --backends needs REDIS_URL=redis://... (page states, live updates and rate limits are shared there)"
    return None


def scaled_environment(env: dict[str, str], *, redis_url: str, workers: int) -> dict[str, str]:
    """What every backend of the scaled topology gets on top of the single-process environment."""
    env = dict(env)
    env.update(
        REFLEX_REDIS_URL=redis_url,  # Reflex's Redis state manager: a page's next connection may land anywhere
        GRANIAN_WORKERS="1",  # one process per backend: we start N of them ourselves
        REFLEX_TRUSTED_PROXY_HOPS="1",  # the balancer appends the client's address to X-Forwarded-For
    )
    env.setdefault("RATE_LIMIT_STORAGE", redis_url)  # counts shared by every backend
    if workers:
        env["RUN_WORKERS_IN_BACKEND"] = "false"  # the M `worker` processes do it instead
    return env


@dataclass
class Scaled:
    """The processes of a scaled start, by role (stop them all with `stop(scaled.all)`)."""

    url: str
    sandbox: list[subprocess.Popen] = field(default_factory=list)
    frontend: subprocess.Popen | None = None
    backends: list[subprocess.Popen] = field(default_factory=list)
    backend_ports: list[int] = field(default_factory=list)
    balancer: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)

    @property
    def all(self) -> list[subprocess.Popen]:
        """In start order (`stop` stops newest first)."""
        return [*self.sandbox, *([self.frontend] if self.frontend else []), *self.backends,
                *([self.balancer] if self.balancer else []), *self.workers]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def backend_command(port: int, quiet: bool = False) -> list[str]:
    command = [sys.executable, "-m", "reflex", "run", "--env", "prod", "--backend-only", "--backend-port", str(port)]
    return command + (["--loglevel", "warning"] if quiet else [])


def start_scaled(
    *, port: int, backends: int, workers: int, sandbox_port: int, data_dir: Path, use_sandbox: bool | None = None,
    log=None, seed: bool = False, quiet_reflex: bool = False, backend_ports: list[int] | None = None,
) -> Scaled:
    """Sandbox (when no Stripe key), the frontend built once and served as static files, N backends,
    the balancer on `port` in front of them, and M workers. Raises RuntimeError when PostgreSQL or
    Redis is not configured (scaled_requirements)."""
    from billing_app.settings import get_settings

    if (problem := scaled_requirements()) is not None:
        raise RuntimeError(problem)
    if use_sandbox is None:
        use_sandbox = wants_sandbox()
    python = sys.executable
    url = f"http://127.0.0.1:{port}"
    # The browser talks to the balancer only: pages, the event socket and /api share its origin.
    base = app_environment(port=port, backend_port=port, prod=True, sandbox_port=sandbox_port if use_sandbox else None)
    env = scaled_environment(base, redis_url=get_settings().redis_url, workers=workers)
    output = dict(stdout=log, stderr=subprocess.STDOUT) if log else {}
    scaled = Scaled(url=url)
    _states_dir()
    try:
        _prepare(env, prod=True, use_sandbox=use_sandbox, seed=seed, sandbox_port=sandbox_port, data_dir=data_dir,
                 webhook_url=url + routes.API_STRIPE_WEBHOOK, processes=scaled.sandbox, output=output)
        # The frontend is built once (here) and served as static files; any web server could serve .web/build/client.
        frontend_port = _free_port()
        command = [python, "-m", "reflex", "run", "--env", "prod", "--frontend-only", "--frontend-port", str(frontend_port)]
        scaled.frontend = subprocess.Popen(command + (["--loglevel", "warning"] if quiet_reflex else []),
                                           env=env, cwd=PROJECT_ROOT, start_new_session=True, **output)
        _wait_until_up(f"http://127.0.0.1:{frontend_port}/login", scaled.all, timeout=600)
        scaled.backend_ports = list(backend_ports or [_free_port() for _ in range(backends)])
        for backend_port in scaled.backend_ports:
            scaled.backends.append(subprocess.Popen(backend_command(backend_port, quiet_reflex), env=env, cwd=PROJECT_ROOT,
                                                    start_new_session=True, **output))
        for backend_port in scaled.backend_ports:
            _wait_until_up(f"http://127.0.0.1:{backend_port}{routes.API_READY}", scaled.all, timeout=300)
        balancer = [python, "-m", "billing_app.balancer", "--port", str(port), "--frontend", f"127.0.0.1:{frontend_port}"]
        for backend_port in scaled.backend_ports:
            balancer += ["--backend", f"127.0.0.1:{backend_port}"]
        scaled.balancer = subprocess.Popen(balancer, env=env, cwd=PROJECT_ROOT, start_new_session=True, **output)
        for _ in range(workers):
            scaled.workers.append(subprocess.Popen([python, "-m", "billing_app", "worker"], env=env, cwd=PROJECT_ROOT,
                                                   start_new_session=True, **output))
        _wait_until_up(url + routes.API_READY, scaled.all, timeout=60)
        _wait_until_up(url + "/login", scaled.all, timeout=60)
    except BaseException:
        _stop(scaled.all)
        raise
    return scaled


def serve_scaled(*, port: int, backends: int, workers: int, sandbox_port: int, seed: bool = False) -> int:
    """`serve --prod --backends N --workers M`: run the scaled topology until Ctrl-C or SIGTERM."""
    if (problem := scaled_requirements()) is not None:
        print(problem, file=sys.stderr)
        return 2
    use_sandbox = wants_sandbox()
    scaled, failed = _started(lambda: start_scaled(port=port, backends=backends, workers=workers, sandbox_port=sandbox_port,
                                                   data_dir=PROJECT_ROOT / ".data", use_sandbox=use_sandbox, seed=seed))
    if failed is not None:
        return failed
    print()
    print(f"  Billing app:  {scaled.url}  (balancer)")
    print(f"  Backends:     {', '.join(f'127.0.0.1:{p}' for p in scaled.backend_ports)}")
    print(f"  Workers:      {workers} process(es)" if workers else "  Workers:      inside each backend")
    if use_sandbox:
        print(f"  Stripe:       offline sandbox at http://127.0.0.1:{sandbox_port}")
    print("  Press Ctrl-C to stop everything.\n", flush=True)
    return _supervise(scaled.all)
