"""Starting and stopping Tributary's long-running processes: the API and Dagster.

Used by `tributary up`, `tributary demo` and the end-to-end tests. Children run in
their own process groups: `dagster dev` ignores SIGTERM, and a child started from
a shell job ignores SIGINT, so each is stopped with SIGINT to its whole group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import psycopg

from tributary import db
from tributary.settings import Settings

PROJECT_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dagster_storage_url(settings: Settings) -> str:
    """Dagster keeps its run history in the same PostgreSQL, in a database of its own
    (`dagster`) so its tables never mix with Tributary's; the main database if that
    database cannot be created (a managed server without CREATEDB)."""
    url = db.database_url(settings)
    if not settings.embedded:
        return url
    with psycopg.connect(url, autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = 'dagster'").fetchone():
            # Two commands starting at once (two `pipeline run`s) may both get here.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                conn.execute("create database dagster")
    return db.embedded_server(settings).url(database="dagster")


def prepare_dagster_home(settings: Settings) -> Path:
    """Write $TRIBUTARY_HOME/dagster/dagster.yaml (storage in PostgreSQL, telemetry off)."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(
        "# Written by tributary at start-up; edits are overwritten.\n"
        "storage:\n"
        "  postgres:\n"
        f'    postgres_url: "{dagster_storage_url(settings)}"\n'
        "telemetry:\n"
        "  enabled: false\n"
        # A failed run (a dbt build that hit a lock, a killed worker) is run again from the
        # step that failed, twice at most: the sensor starts runs only for new events, so
        # without this the marts would wait for the next event to land.
        "run_retries:\n"
        "  enabled: true\n"
        "  max_retries: 2\n"
    )
    return home


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "TRIBUTARY_HOME": str(settings.home),
        "DAGSTER_HOME": str(settings.dagster_home),
        "DO_NOT_TRACK": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "PYTHONUNBUFFERED": "1",
        # The venv's tools (dbt, dagster) first, whether or not the venv is activated.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    env.update(extra)
    return env


@dataclass
class Service:
    name: str
    process: subprocess.Popen
    url: str

    def stop(self, timeout: float = 20.0) -> None:
        if self.process.poll() is not None:
            return
        # Dagster starts code servers in sessions of their own, out of reach of a signal
        # to our child's group: note every descendant now, and end any left over after.
        try:
            descendants = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        try:
            os.killpg(self.process.pid, signal.SIGINT)
            self.process.wait(timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        for leftover in descendants:
            with contextlib.suppress(psutil.NoSuchProcess):
                leftover.terminate()
        _gone, alive = psutil.wait_procs(descendants, timeout=5)
        for leftover in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                leftover.kill()


def _spawn(argv: list[str], env: dict[str, str], log: Path | None) -> subprocess.Popen:
    output = open(log, "ab") if log else None  # noqa: SIM115 (the child owns it)
    return subprocess.Popen(
        argv,
        cwd=PROJECT_DIR,
        env=env,
        start_new_session=True,
        stdout=output,
        stderr=subprocess.STDOUT if output else None,
    )


def wait_for_http(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with code {process.returncode} before answering")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def start_api(settings: Settings, host: str, port: int, log: Path | None = None) -> Service:
    process = _spawn(
        [sys.executable, "-m", "tributary.cli", "api", "--host", host, "--port", str(port)],
        child_env(settings),
        log,
    )
    service = Service("api", process, f"http://{host}:{port}")
    try:
        wait_for_http(f"{service.url}/readyz", process, timeout=30)
    except BaseException:
        service.stop()
        raise
    return service


def start_dagster(settings: Settings, host: str, port: int, log: Path | None = None) -> Service:
    prepare_dagster_home(settings)
    dagster = Path(sys.executable).parent / "dagster"
    process = _spawn(
        [str(dagster), "dev", "-w", str(PROJECT_DIR / "workspace.yaml"), "-h", host, "-p", str(port)],
        child_env(settings),
        log,
    )
    service = Service("dagster", process, f"http://{host}:{port}")
    try:
        wait_for_http(f"{service.url}/server_info", process, timeout=120)
        _wait_for_code_location(service, timeout=120)
    except BaseException:
        service.stop()
        raise
    return service


_LOCATIONS_QUERY = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def _wait_for_code_location(service: Service, timeout: float) -> None:
    """The UI answers before it has loaded Tributary's definitions; wait for them, and fail
    loudly (rather than show an empty UI) when they do not load."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = httpx.post(f"{service.url}/graphql", json={"query": _LOCATIONS_QUERY}, timeout=10).json()
        entries = answer["data"]["workspaceOrError"].get("locationEntries", [])
        loaded = [e for e in entries if e["loadStatus"] == "LOADED"]
        if loaded and all(e["locationOrLoadError"] for e in loaded):
            errors = [
                e["locationOrLoadError"] for e in loaded if e["locationOrLoadError"]["__typename"] == "PythonError"
            ]
            if errors:
                raise RuntimeError(f"Dagster could not load Tributary's definitions: {errors[0]['message']}")
            return
        time.sleep(0.5)
    raise RuntimeError(f"Dagster did not load Tributary's definitions within {timeout:.0f} s")
