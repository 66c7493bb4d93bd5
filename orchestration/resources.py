"""Dagster resources: the Tributary database and the dbt CLI, both from tributary.settings."""

import functools
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import dagster as dg
import psycopg
from dagster_dbt import DbtCliResource, DbtProject

from tributary import db
from tributary.settings import Settings, get_settings

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"


class TributaryDatabase(dg.ConfigurableResource):
    """The PostgreSQL that holds landing, warehouse and marts (the embedded one unless DATABASE_URL is set)."""

    @property
    def settings(self) -> Settings:
        return get_settings()

    def url(self) -> str:
        return db.database_url(self.settings)

    @contextmanager
    def connect(self, autocommit: bool = False):
        with psycopg.connect(self.url(), autocommit=autocommit) as conn:
            yield conn


@functools.cache
def dbt_project() -> DbtProject:
    project = DbtProject(project_dir=DBT_PROJECT_DIR)
    project.prepare_if_dev()
    return project


def dbt_connection_env(url: str) -> dict[str, str]:
    """The TRIBUTARY_DBT_* variables dbt_project/profiles.yml reads, from a PostgreSQL URL.

    dbt profiles take host/port/user/password/dbname, not a URL; a Unix-socket URL
    (`?host=/path`) gives the socket folder as host, which dbt-postgres accepts."""
    parts = urlparse(url)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "localhost"])[0]
    port = query.get("port", [str(parts.port or 5432)])[0]
    return {
        "TRIBUTARY_DBT_HOST": unquote(host),
        "TRIBUTARY_DBT_PORT": port,
        "TRIBUTARY_DBT_USER": unquote(parts.username or "postgres"),
        "TRIBUTARY_DBT_PASSWORD": unquote(parts.password or ""),
        "TRIBUTARY_DBT_DBNAME": parts.path.lstrip("/") or "postgres",
    }


class TributaryDbt(DbtCliResource):
    """dbt pointed at Tributary's database.

    DbtCliResource hands its own process environment to dbt, so the connection
    variables are put there, derived from settings, when dbt is first invoked (not
    at import: loading the definitions must not need a database)."""

    def cli(self, args, **kwargs):
        os.environ.update(dbt_connection_env(db.database_url(get_settings())))
        os.environ.setdefault("DO_NOT_TRACK", "1")
        os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        return super().cli(args, **kwargs)


def dbt_executable() -> str:
    """The dbt installed with Tributary, so `.venv/bin/tributary` works without an activated
    venv (and in Dagster's code server, which may not run from the venv's bin)."""
    for folder in (Path(sys.executable).parent, Path(sys.prefix) / "bin"):
        if (folder / "dbt").exists():
            return str(folder / "dbt")
    return shutil.which("dbt") or "dbt"


def dbt_resource() -> TributaryDbt:
    return TributaryDbt(project_dir=dbt_project(), profiles_dir=str(DBT_PROJECT_DIR), dbt_executable=dbt_executable())
