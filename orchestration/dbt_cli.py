"""Run the dbt CLI against Tributary's database, outside Dagster: the mart verification
and `make docs` need dbt with the connection settings the dbt resource would give it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from orchestration.resources import DBT_PROJECT_DIR, dbt_connection_env, dbt_executable
from tributary import db
from tributary.settings import Settings, get_settings


def dbt_env(settings: Settings) -> dict[str, str]:
    """This process's environment plus the TRIBUTARY_DBT_* connection variables, telemetry off."""
    return {
        **os.environ,
        **dbt_connection_env(db.database_url(settings)),
        "DO_NOT_TRACK": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


# pg_advisory_lock key, "tribdbt": one dbt build of the marts at a time. The incremental
# models keep a change log and per-model state (dbt_project/macros/incremental.sql)
# that two builds at once would both read and advance.
MARTS_BUILD_LOCK_KEY = 0x74_7269_6264_6274


@contextmanager
def marts_build_lock(settings: Settings) -> Iterator[None]:
    """Hold the marts' build lock (waiting for it) until the block ends; a session lock on a
    connection of its own, so a process that dies releases it."""
    with psycopg.connect(db.database_url(settings), autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s)", (MARTS_BUILD_LOCK_KEY,))
        try:
            yield
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (MARTS_BUILD_LOCK_KEY,))


def run_dbt(
    settings: Settings,
    args: list[str],
    *,
    target_path: Path | None = None,
    dbt_vars: dict | None = None,
) -> subprocess.CompletedProcess:
    """`dbt ARGS` in dbt_project/, its output captured. A run with other vars (another
    schema prefix) must have its own `target_path`: dbt writes the manifest there, and
    Dagster loads the one in dbt_project/target."""
    command = [dbt_executable(), *args, "--profiles-dir", str(DBT_PROJECT_DIR)]
    if target_path is not None:
        command += ["--target-path", str(target_path)]
    if dbt_vars:
        command += ["--vars", json.dumps(dbt_vars)]
    return subprocess.run(command, cwd=DBT_PROJECT_DIR, env=dbt_env(settings), capture_output=True, text=True)


def main(argv: list[str]) -> int:
    """`python -m orchestration.dbt_cli ARGS`: dbt ARGS against Tributary's database (`make docs`
    runs `docs generate` this way), its output shown as it comes."""
    command = [dbt_executable(), *argv, "--profiles-dir", str(DBT_PROJECT_DIR)]
    return subprocess.call(command, cwd=DBT_PROJECT_DIR, env=dbt_env(get_settings()))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
