"""BI tools' access: `tributary db url --reader`, over TCP, as `tributary_reader`.

The URL comes from the CLI as a user gets it (a subprocess with this session's
TRIBUTARY_HOME and TRIBUTARY_DB_PORT), and every check connects with it over TCP.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tributary import db
from tributary.services import PROJECT_DIR, free_port
from tributary.settings import Settings

TRIBUTARY = Path(sys.executable).parent / "tributary"
PRIVATE_SCHEMAS = ("landing", "ops", "warehouse", "staging", "intermediate")


def tributary(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(TRIBUTARY), *args], cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=60)


def reader_url_from_cli(env: dict[str, str]) -> str:
    result = tributary("db", "url", "--reader", env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="module")
def cli_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    if not settings.embedded and not settings.reader_password:
        # An external server gets the reader's password from the setting only.
        env["TRIBUTARY_READER_PASSWORD"] = f"test-{uuid.uuid4().hex}"
    return env


@pytest.fixture(scope="module")
def reader_url(cli_env: dict[str, str]) -> str:
    return reader_url_from_cli(cli_env)


@pytest.fixture
def reader(reader_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(reader_url, autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="module")
def probes(conn_module: psycopg.Connection) -> Iterator[dict[str, str]]:
    """A one-row table in marts, staging and intermediate, made by the owner as dbt would
    (so the default privileges of migration 0001 apply), whether or not dbt has run."""
    suffix = uuid.uuid4().hex[:8]
    tables = {schema: f"{schema}.reader_probe_{suffix}" for schema in ("marts", "staging", "intermediate")}
    for table in tables.values():
        conn_module.execute(f"create table {table} (x int)")
        conn_module.execute(f"insert into {table} values (1)")
    yield tables
    for table in tables.values():
        conn_module.execute(f"drop table {table}")


def test_the_reader_url_is_tributary_reader_over_tcp_with_a_password(
    settings: Settings, reader_url: str, reader: psycopg.Connection
):
    parts = urlsplit(reader_url)
    assert parts.scheme == "postgresql"
    assert parts.username == db.READER
    assert parts.password
    if settings.embedded:
        assert (parts.hostname, parts.port, parts.path) == ("127.0.0.1", settings.db_port, "/tributary")
    else:
        assert parts.hostname == conninfo_to_dict(settings.database_url).get("host")
    user, address = reader.execute("select current_user, host(inet_server_addr())").fetchone()
    assert user == db.READER
    assert address is not None, "connected over a Unix socket, not TCP"
    if settings.embedded:
        assert address == "127.0.0.1"


def test_the_reader_reads_the_marts(reader: psycopg.Connection, probes: dict[str, str], conn: psycopg.Connection):
    assert reader.execute(f"select x from {probes['marts']}").fetchall() == [(1,)]
    # And every mart dbt has built in this database, whichever they are.
    for (table,) in conn.execute(
        "select format('%I.%I', table_schema, table_name) from information_schema.tables where table_schema = 'marts'"
    ).fetchall():
        reader.execute(f"select * from {table} limit 1").fetchall()


@pytest.mark.parametrize(
    "table",
    [
        "landing.events_raw",
        "ops.tenants",
        "ops.write_keys",
        "ops.batches",
        "ops.schema_migrations",
        "warehouse.events",
        "warehouse.event_rejects",
        "warehouse.event_duplicates",
        "warehouse.dedup_keys",
        "staging",
        "intermediate",
    ],
)
def test_the_reader_is_refused_every_other_schema(reader: psycopg.Connection, probes: dict[str, str], table: str):
    table = probes.get(table, table)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        reader.execute(f"select * from {table} limit 1")


def test_the_reader_session_is_read_only_by_default(reader: psycopg.Connection, probes: dict[str, str]):
    assert reader.execute("show default_transaction_read_only").fetchone()[0] == "on"
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        reader.execute(f"insert into {probes['marts']} values (2)")


@pytest.mark.parametrize(
    "statement",
    [
        *(f"create table {schema}.reader_made (x int)" for schema in ("public", "marts", *PRIVATE_SCHEMAS)),
        "create view public.reader_view as select 1 as x",
        "create view marts.reader_view as select 1 as x",
        "create temporary table reader_temp (x int)",
        "create schema reader_own",
        "insert into {marts} values (2)",
        "update {marts} set x = 2",
        "delete from {marts}",
        "truncate {marts}",
        "alter table {marts} add column y int",
        "drop table {marts}",
        "insert into landing.events_raw (tenant_id, wire_format, payload) values (gen_random_uuid(), 'native', '{{}}')",
    ],
)
def test_the_reader_can_create_and_write_nothing_even_in_a_read_write_session(
    reader: psycopg.Connection, probes: dict[str, str], statement: str
):
    # Its privileges alone must refuse: the read-only default is one `set` away.
    reader.execute("set default_transaction_read_only = off")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        reader.execute(statement.format(marts=probes["marts"]))


def test_tcp_without_the_right_password_is_refused(reader_url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    params = conninfo_to_dict(reader_url)
    tcp = {"host": params["host"], "port": params.get("port", "5432"), "dbname": params["dbname"]}
    # passfile: no ~/.pgpass may fill in a password.
    for attempt in (
        {"user": db.READER},
        {"user": db.READER, "password": "not-the-password"},
        {"user": db.SUPERUSER},
        {"user": db.SUPERUSER, "password": ""},
    ):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(**tcp, **attempt, passfile=os.devnull, connect_timeout=5).close()


def test_the_embedded_server_listens_on_the_loopback_only_and_asks_tcp_for_scram(
    settings: Settings, conn: psycopg.Connection, reader_url: str
):
    if not settings.embedded:
        pytest.skip("the embedded server's own configuration")
    assert conn.execute("show listen_addresses").fetchone()[0] == "127.0.0.1"
    rules = conn.execute("select type, address, auth_method, error from pg_hba_file_rules").fetchall()
    assert all(error is None for *_, error in rules)
    assert {(kind, address, method) for kind, address, method, _ in rules if kind != "local"} == {
        ("host", "127.0.0.1", "scram-sha-256")
    }
    # Over TCP, the tributary database only: not `postgres`, nor Dagster's `dagster`.
    for database in ("postgres", "dagster"):
        with pytest.raises(psycopg.OperationalError, match="no pg_hba.conf entry"):
            psycopg.connect(f"{reader_url.rsplit('/', 1)[0]}/{database}", connect_timeout=5).close()
    other = _non_loopback_address()
    if other:
        with pytest.raises(OSError), socket.create_connection((other, settings.db_port), timeout=2):
            pass


def _non_loopback_address() -> str | None:
    """This machine's address on its default route, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_the_password_is_made_once_kept_private_and_printed_only_in_the_reader_url(
    settings: Settings, reader_url: str, cli_env: dict[str, str]
):
    if not settings.embedded or settings.reader_password:
        pytest.skip("the embedded server's own password file")
    password = unquote(urlsplit(reader_url).password)
    path = settings.home / "reader-password"
    assert path.read_text().strip() == password
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert reader_url_from_cli(cli_env) == reader_url, "a second call must give the same password"
    for args in (("db", "url"), ("db", "status"), ("db", "migrate"), ("tenant", "list")):
        result = tributary(*args, env=cli_env)
        assert password not in result.stdout + result.stderr, args


def test_tributary_reader_password_wins_and_is_given_to_the_role(
    settings: Settings, reader_url: str, cli_env: dict[str, str]
):
    chosen = f"chosen/{uuid.uuid4().hex}@:%"
    try:
        url = reader_url_from_cli({**cli_env, "TRIBUTARY_READER_PASSWORD": chosen})
        assert unquote(urlsplit(url).password) == chosen
        with psycopg.connect(url) as reader:
            assert reader.execute("select current_user").fetchone()[0] == db.READER
        if reader_url != url:
            with pytest.raises(psycopg.OperationalError, match="password"):
                psycopg.connect(reader_url, passfile=os.devnull).close()
    finally:
        # Back to this session's password (the file's, or the fixture's setting).
        assert reader_url_from_cli(cli_env) == reader_url
    psycopg.connect(reader_url).close()


def test_setting_the_password_again_changes_nothing(conn: psycopg.Connection, reader_url: str):
    password = unquote(urlsplit(reader_url).password)
    assert db.ensure_reader_password(conn, password) is False or not _is_superuser(conn)


def _is_superuser(conn: psycopg.Connection) -> bool:
    return conn.execute("select current_setting('is_superuser')").fetchone()[0] == "on"


def test_a_port_in_use_is_a_clear_error_naming_the_setting(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "TRIBUTARY_HOME": str(tmp_path / "home"), "TRIBUTARY_DB_PORT": str(port)}
        env.pop("DATABASE_URL", None)
        result = tributary("db", "start", env=env)
    assert result.returncode == 1
    assert f"127.0.0.1:{port}" in result.stderr
    assert "TRIBUTARY_DB_PORT" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "home" / "pg" / "PG_VERSION").exists(), "it should fail before initialising anything"


def test_a_port_taken_after_the_check_is_the_same_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # Another program may take the port between Tributary's check and PostgreSQL's bind:
    # skip the check, so the server itself meets the taken port.
    monkeypatch.setattr(db.EmbeddedServer, "_check_port_free", lambda self: None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = db.EmbeddedServer(tmp_path / "pg", taken.getsockname()[1])
        with pytest.raises(db.DatabaseError, match="TRIBUTARY_DB_PORT") as error:
            server.start()
    assert "could not bind" in str(error.value)
    assert not server.status().running


def test_the_reader_url_of_a_stopped_embedded_server_is_a_clear_error(tmp_path: Path):
    env = {**os.environ, "TRIBUTARY_HOME": str(tmp_path / "home"), "TRIBUTARY_DB_PORT": str(free_port())}
    env.pop("DATABASE_URL", None)
    result = tributary("db", "url", "--reader", env=env)
    assert result.returncode == 1
    assert "not running" in result.stderr and "tributary db start" in result.stderr
    assert not (tmp_path / "home" / "reader-password").exists()


# ── the URL for an external server (no server needed) ─────────────────────────


@pytest.mark.parametrize(
    ("database_url", "expected"),
    [
        (
            "postgresql://tributary:tributary@postgres:5432/tributary",
            "postgresql://tributary_reader:p%40ss%2Fw%3Ard@postgres:5432/tributary",
        ),
        (
            "postgres://admin:secret@db.example.com/analytics?sslmode=require&application_name=x",
            "postgresql://tributary_reader:p%40ss%2Fw%3Ard@db.example.com/analytics?application_name=x&sslmode=require",
        ),
        (
            "host=10.0.0.5 port=6543 dbname=events user=admin password=secret sslmode=verify-full",
            "postgresql://tributary_reader:p%40ss%2Fw%3Ard@10.0.0.5:6543/events?sslmode=verify-full",
        ),
        (
            "postgresql://admin@[::1]:5432/tributary",
            "postgresql://tributary_reader:p%40ss%2Fw%3Ard@[::1]:5432/tributary",
        ),
        (
            "postgresql://admin@/tributary?host=/var/run/postgresql&port=5433",
            "postgresql://tributary_reader:p%40ss%2Fw%3Ard@/tributary?host=%2Fvar%2Frun%2Fpostgresql&port=5433",
        ),
    ],
)
def test_the_reader_url_for_database_url_keeps_its_server_and_options(database_url: str, expected: str, tmp_path):
    settings = Settings.from_env({"DATABASE_URL": database_url, "TRIBUTARY_HOME": str(tmp_path)})
    url = db.reader_url(settings, "p@ss/w:rd")
    assert url == expected
    params = conninfo_to_dict(url)
    assert (params["user"], params["password"]) == (db.READER, "p@ss/w:rd")


def test_the_reader_password_is_no_part_of_the_settings_repr(tmp_path):
    settings = Settings.from_env({"TRIBUTARY_HOME": str(tmp_path), "TRIBUTARY_READER_PASSWORD": "s3cret-value"})
    assert settings.reader_password == "s3cret-value"
    assert "s3cret-value" not in repr(settings)
    assert db.reader_password(settings) == "s3cret-value"
    assert not (tmp_path / "reader-password").exists()


@pytest.mark.parametrize("port", ["80", "0", "70000", "5433x"])
def test_an_unusable_db_port_is_a_clear_error(port: str, tmp_path):
    with pytest.raises(SystemExit, match="TRIBUTARY_DB_PORT"):
        Settings.from_env({"TRIBUTARY_HOME": str(tmp_path), "TRIBUTARY_DB_PORT": port})
