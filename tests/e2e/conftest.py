"""End-to-end fixtures: the API served for real by `tributary api` (Granian) on a free port."""

import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from tributary.services import PROJECT_DIR, Service, child_env, free_port, start_api
from tributary.settings import Settings


@pytest.fixture(scope="session")
def api(settings: Settings) -> Iterator[Service]:
    service = start_api(settings, "127.0.0.1", free_port(), log=settings.home / "e2e-api.log")
    yield service
    service.stop()


@pytest.fixture(scope="session")
def pipeline_run(settings: Settings) -> Callable[..., subprocess.CompletedProcess]:
    """`tributary pipeline run --quiet [args]` as a user runs it: a subprocess of the CLI."""

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "tributary.cli", "pipeline", "run", "--quiet", *args],
            cwd=PROJECT_DIR,
            env=child_env(settings),
            capture_output=True,
            text=True,
            timeout=600,
        )

    return run
