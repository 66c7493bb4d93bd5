"""`tributary`: the command line. Thin: each command calls into the modules that do the work.

The API and the orchestration are imported inside the commands that need them, so
`tributary db status` does not pay for loading Dagster.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click
import psycopg

from tributary import db, migrations, summary, tenants
from tributary.settings import Settings, get_settings

DEMO_TENANT = "demo"


def _settings() -> Settings:
    return get_settings()


def _ready_database(settings: Settings, quiet: bool = False) -> str:
    """Start the embedded server if needed, apply migrations, return the URL."""
    try:
        if settings.embedded and db.embedded_server(settings).start() and not quiet:
            click.echo(f"started the embedded PostgreSQL in {settings.pg_data}", err=True)
        url = db.database_url(settings)
        with db.connect(settings, autocommit=True) as conn:
            applied = migrations.migrate(conn)
            _set_reader_password(settings, conn)
    except (db.DatabaseError, OSError) as error:
        raise click.ClickException(str(error)) from error
    if applied and not quiet:
        click.echo(f"applied migrations: {', '.join(applied)}", err=True)
    return url


def _set_reader_password(settings: Settings, conn: psycopg.Connection) -> None:
    """Give the BI role its password (a no-op when it has it). A server where Tributary's
    role may not do that gets a warning, not a failure: ingest does not depend on it."""
    password = db.reader_password(settings)
    if password is None:
        return
    try:
        db.ensure_reader_password(conn, password)
    except psycopg.errors.InsufficientPrivilege as error:
        click.echo(f"warning: could not set the password of {db.READER}: {error}".rstrip(), err=True)


def _cli() -> str:
    """How to call this CLI from the current folder: `.venv/bin/tributary` from a checkout."""
    script = Path(sys.executable).parent / "tributary"
    if not script.exists():
        return "tributary"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return "tributary" if os.environ.get("VIRTUAL_ENV") else str(script)


def _reader_where(settings: Settings) -> str:
    """Where BI tools connect, without the password."""
    if settings.embedded:
        return f"{db.TCP_HOST}:{settings.db_port}, database {db.DATABASE}, user {db.READER}"
    return f"DATABASE_URL's server, user {db.READER}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Tributary: a self-hosted product-analytics event pipeline."""


# ── db ──────────────────────────────────────────────────────────────────────────


@main.group("db")
def db_group() -> None:
    """The PostgreSQL database (embedded unless DATABASE_URL is set)."""


@db_group.command("start")
def db_start() -> None:
    """Start the embedded PostgreSQL (initialising it on first use) and migrate."""
    settings = _settings()
    if not settings.embedded:
        raise click.ClickException("DATABASE_URL is set, so Tributary uses that server and starts none of its own")
    url = _ready_database(settings, quiet=True)
    click.echo(f"PostgreSQL is running: {url}")


@db_group.command("stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL (committed data is kept)."""
    settings = _settings()
    if not settings.embedded:
        raise click.ClickException("DATABASE_URL is set: Tributary does not manage that server")
    stopped = db.embedded_server(settings).stop()
    click.echo("PostgreSQL stopped" if stopped else "PostgreSQL was not running")


@db_group.command("status")
def db_status() -> None:
    """Say whether the database is up, and how many events wait to be processed."""
    settings = _settings()
    if settings.embedded:
        status = db.embedded_server(settings).status()
        if not status.running:
            click.echo(f"embedded PostgreSQL: stopped (data in {settings.pg_data})")
            sys.exit(1)
        click.echo(f"embedded PostgreSQL: running, pid {status.pid}, data in {settings.pg_data}")
        if status.listen_address:
            click.echo(f"BI tools: {status.listen_address}:{status.port} as {db.READER} (`tributary db url --reader`)")
    try:
        with db.connect(settings, autocommit=True) as conn:
            version = conn.execute("select current_setting('server_version')").fetchone()[0]
            applied = conn.execute("select to_regclass('ops.schema_migrations')").fetchone()[0]
            click.echo(f"server version {version}; url {db.database_url(settings, start=False)}")
            if applied:
                click.echo(summary.render(summary.counts(conn)))
            else:
                click.echo("not migrated yet: run `tributary db migrate`")
    except Exception as error:  # noqa: BLE001 — report any connection failure as a status
        click.echo(f"cannot connect: {error}")
        sys.exit(1)


@db_group.command("url")
@click.option(
    "--reader",
    is_flag=True,
    help="The URL for BI tools instead: the read-only role tributary_reader (marts only) over TCP, with its password.",
)
def db_url(reader: bool) -> None:
    """Print the URL that psql and other tools can use (Tributary's own, over the local socket)."""
    settings = _settings()
    try:
        click.echo(db.reader_database_url(settings) if reader else db.database_url(settings, start=False))
    except (db.DatabaseError, psycopg.Error, OSError) as error:
        raise click.ClickException(str(error).strip()) from error


@db_group.command("migrate")
def db_migrate() -> None:
    """Apply the schema migrations that are missing (a no-op when up to date)."""
    settings = _settings()
    try:
        with db.connect(settings, autocommit=True) as conn:
            applied = migrations.migrate(conn)
            _set_reader_password(settings, conn)
    except (db.DatabaseError, OSError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"applied: {', '.join(applied)}" if applied else "the schema is up to date")


# ── tenants ─────────────────────────────────────────────────────────────────────


@main.group("tenant")
def tenant_group() -> None:
    """Tenants and their write keys."""


@tenant_group.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help='Print {"tenantId", "writeKey"} only.')
def tenant_create(name: str, as_json: bool) -> None:
    """Create tenant NAME and print its write key (shown this once; only its hash is kept)."""
    settings = _settings()
    _ready_database(settings, quiet=as_json)
    with db.connect(settings, autocommit=True) as conn:
        if tenants.get_by_name(conn, name):
            raise click.ClickException(f"a tenant named {name!r} exists already; pick another name")
        tenant, key = tenants.create(conn, name)
    if as_json:
        click.echo(json.dumps({"tenantId": str(tenant.id), "writeKey": key}))
        return
    click.echo(f"tenant    {tenant.name}\ntenant id {tenant.id}\nwrite key {key}")
    click.echo("Keep the key now: it is stored hashed and cannot be shown again.")


@tenant_group.command("list")
def tenant_list() -> None:
    """List tenants with their ids and number of active write keys."""
    settings = _settings()
    _ready_database(settings, quiet=True)
    with db.connect(settings, autocommit=True) as conn:
        rows = tenants.list_all(conn)
    if not rows:
        click.echo("no tenants yet: create one with `tributary tenant create NAME`")
        return
    click.echo(f"{'tenant id':<36}  {'keys':>4}  {'created':<19}  name")
    for tenant, keys in rows:
        click.echo(f"{tenant.id!s:<36}  {keys:>4}  {tenant.created_at:%Y-%m-%d %H:%M:%S}  {tenant.name}")
    click.echo(f"{len(rows)} tenant(s)")


# ── api and pipeline ────────────────────────────────────────────────────────────


@main.command("api")
@click.option("--host", default=None, help="Default TRIBUTARY_API_HOST (127.0.0.1).")
@click.option("--port", type=int, default=None, help="Default TRIBUTARY_API_PORT (8000).")
def api(host: str | None, port: int | None) -> None:
    """Serve the ingest API until interrupted (TRIBUTARY_API_WORKERS processes)."""
    # Granian with two processes gave the best and steadiest throughput on two cores, where
    # PostgreSQL needs CPU too (README, "Performance", has the measurements).
    from granian import Granian
    from granian.constants import Interfaces, Loops

    settings = _settings()
    _ready_database(settings)
    Granian(
        "ingest_api.app:create_app",
        factory=True,
        address=host or settings.api_host,
        port=port or settings.api_port,
        interface=Interfaces.ASGI,
        workers=max(1, settings.api_workers),
        loop=Loops.uvloop,
        websockets=False,
        log_level="warning",
        log_access=False,
        # A worker that dies (out of memory, say) is replaced instead of leaving the API short.
        respawn_failed_workers=True,
        # On SIGINT/SIGTERM a worker first answers its requests in flight; one still busy
        # after this long is killed.
        workers_kill_timeout=30,
    ).serve()


@main.group("pipeline")
def pipeline_group() -> None:
    """Processing and marts."""


@pipeline_group.command("run")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Landed rows per batch (one transaction each). Default TRIBUTARY_BATCH_SIZE.",
)
@click.option("--no-dbt", is_flag=True, help="Process into the warehouse only; do not build the marts.")
@click.option("--quiet", is_flag=True, help="Only the summary, not Dagster's log.")
def pipeline_run(batch_size: int | None, no_dbt: bool, quiet: bool) -> None:
    """Process everything landed, build the marts, print the counts."""
    settings = _settings()
    _ready_database(settings)
    summary_ = _run_pipeline(settings, batch_size, not no_dbt, quiet)
    with db.connect(settings, autocommit=True) as conn:
        click.echo(summary.render(summary.counts(conn)))
    if not summary_.success:
        raise click.ClickException(f"the run failed; see its log in the Dagster UI (run {summary_.run_id})")


def _run_pipeline(settings: Settings, batch_size: int | None, dbt: bool, quiet: bool):
    from orchestration.runner import run_pipeline

    started = time.perf_counter()
    result = run_pipeline(settings, batch_size=batch_size, dbt=dbt, quiet=quiet)
    seconds = time.perf_counter() - started
    click.echo(
        f"run {result.run_id}: {'succeeded' if result.success else 'FAILED'} in {seconds:.1f} s — "
        f"{result.batches} batch(es), {result.claimed:,} claimed → {result.events:,} events, "
        f"{result.rejects:,} rejects, {result.duplicates:,} duplicates"
        + ("" if dbt else " (marts not built: --no-dbt)")
    )
    for check in result.failed_checks:
        click.echo(f"  check failed: {check}")
    if quiet:
        click.echo(f"  (Dagster's and dbt's log: {settings.home / 'logs' / 'pipeline.log'})")
    return result


# ── demo and up ─────────────────────────────────────────────────────────────────


@main.command("demo")
@click.option("--visitors", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
def demo(visitors: int, seed: int) -> None:
    """Run the whole path once: database, tenant, traffic over HTTP, processing, marts, summary."""
    from tributary import synthetic
    from tributary.services import free_port, start_api

    settings = _settings()
    _ready_database(settings)
    with db.connect(settings, autocommit=True) as conn:
        tenant, key = tenants.create(conn, f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S-%f}")
    click.echo(f"tenant {tenant.name} ({tenant.id})")

    traffic = synthetic.generate(visitors=visitors, seed=seed)
    api_service = start_api(settings, "127.0.0.1", free_port(), log=settings.home / "demo-api.log")
    try:
        click.echo(f"posting {len(traffic.events):,} events from {visitors} visitors to {api_service.url} …")
        accepted, refused = _post_traffic(api_service.url, key, traffic)
    finally:
        api_service.stop()
    click.echo(
        f"API: {accepted:,} events accepted (including {traffic.resent} re-sends and {traffic.stale} too old), "
        f"{refused} refused with 400 as not events"
    )
    _run_pipeline(settings, None, dbt=True, quiet=True)
    with db.connect(settings, autocommit=True) as conn:
        counts = summary.counts(conn, tenant.id)
    click.echo(f"\nDemo tenant {tenant.name}:")
    click.echo(summary.render(counts))
    click.echo(
        f"\nQuery the marts: psql \"{db.database_url(settings, start=False)}\" -c 'select * from marts.agg_tenant_daily'"
    )
    if not counts.conserved:
        raise click.ClickException("conservation failed: landed ≠ events + rejects + duplicates")


def _post_traffic(url: str, key: str, traffic) -> tuple[int, int]:
    """Post the events in batches of 100 (the way SDKs flush), the malformed ones singly."""
    import httpx

    accepted = refused = 0
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for start in range(0, len(traffic.events), 100):
            response = client.post("/v1/events/batch", json={"events": traffic.events[start : start + 100]})
            response.raise_for_status()
            accepted += response.json()["successful"]
            refused += response.json()["failed"]
        for event in traffic.malformed:
            response = client.post("/v1/events", json=event)
            if response.status_code == 400:
                refused += 1
            else:
                response.raise_for_status()
                accepted += 1
    return accepted, refused


@main.command("up")
def up() -> None:
    """Start PostgreSQL, the API and the Dagster UI with its sensor, until Ctrl-C."""
    from tributary.services import start_api, start_dagster

    settings = _settings()
    _ready_database(settings)
    with db.connect(settings, autocommit=True) as conn:
        tenant = tenants.get_by_name(conn, DEMO_TENANT) or tenants.create(conn, DEMO_TENANT)[0]
        key = tenants.add_key(conn, tenant.id)
    admin_token = settings.admin_token
    if not admin_token:
        # Admin routes need a token; one made for this session is inherited by the API.
        admin_token = secrets.token_urlsafe(24)
        os.environ["TRIBUTARY_ADMIN_TOKEN"] = admin_token
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    services = []
    try:
        click.echo(f"starting the API on http://{settings.api_host}:{settings.api_port} …")
        services.append(start_api(settings, settings.api_host, settings.api_port, log=logs / "api.log"))
        click.echo(f"starting Dagster on http://127.0.0.1:{settings.dagster_port} (about 15 s) …")
        services.append(start_dagster(settings, "127.0.0.1", settings.dagster_port, log=logs / "dagster.log"))
        api_url = services[0].url
        click.echo(
            f"\nTributary is up.\n"
            f"  API        {api_url}   (OpenAPI: {api_url}/schema)\n"
            f"  Dagster    {services[1].url}   (the sensor processes new events every "
            f"{settings.sensor_interval_seconds} s)\n"
            f"  database   {db.database_url(settings, start=False)}\n"
            f"  BI tools   {_reader_where(settings)} (reads the marts only);\n"
            f"             its URL, password included: {_cli()} db url --reader\n"
            f"  logs       {logs}\n"
            f"  tenant     {tenant.name} ({tenant.id})\n"
            f"  write key  {key}   (new for this session; only its hash is stored)\n"
            f"  admin      {admin_token}   (TRIBUTARY_ADMIN_TOKEN; for {api_url}/v1/admin/stats and /flush)\n\n"
            f"Send an event:\n"
            f"  curl -X POST {api_url}/v1/events -H 'Authorization: Bearer {key}' "
            f"-H 'Content-Type: application/json' "
            f'-d \'{{"eventType": "page_viewed", "anonymousId": "visitor-1", '
            f'"context": {{"page": {{"url": "https://example.com/"}}}}}}\'\n'
            f'Then, within a minute: psql "$({_cli()} db url --reader)" '
            f"-c 'select * from marts.fct_sessions order by started_at desc limit 5'\n\n"
            f"Ctrl-C stops everything."
        )
        _wait_until_interrupted(services)
    finally:
        for service in reversed(services):
            click.echo(f"stopping {service.name} …")
            service.stop()
        if settings.embedded:
            db.embedded_server(settings).stop()
            click.echo("PostgreSQL stopped. Bye.")


def _wait_until_interrupted(services) -> None:
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while True:
            for service in services:
                if service.process.poll() is not None:
                    raise click.ClickException(
                        f"{service.name} exited with code {service.process.returncode}; see its log"
                    )
            time.sleep(1)
    except KeyboardInterrupt:
        click.echo("\ninterrupted")


if __name__ == "__main__":
    main()
