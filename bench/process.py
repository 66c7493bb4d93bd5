"""Processing benchmark: landed events → warehouse, without dbt, against the plain move of the same rows.

Each backlog size runs in a child process of its own (so its peak RSS is its own), with
its own embedded PostgreSQL in a temporary TRIBUTARY_HOME and its own port:

    .venv/bin/python bench/process.py                 # 1,000,000 events, then 250,000
    .venv/bin/python bench/process.py --events 200000 --second-events 0

The last line printed is one JSON object: events, events_per_s, plain_move_events_per_s,
ratio_to_plain_move, peak_rss_mb (of the first, largest backlog).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _measure import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
# TRIBUTARY_BENCH_STATEMENTS=1: also print where PostgreSQL spends its time (pg_stat_statements).
STATEMENTS = os.environ.get("TRIBUTARY_BENCH_STATEMENTS") == "1"
CHUNK = 50_000

BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{a}.0.{b}.{c} Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{a}.{c} Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS {a}_{c} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E{b}",
    "Mozilla/5.0 (X11; Linux x86_64; rv:{a}.0) Gecko/20100101 Firefox/{a}.{c}",
    "Mozilla/5.0 (Linux; Android {c}; Pixel {c}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{a}.0.{b}.0 Mobile",
]
PAGES = ["/", "/pricing", "/docs", "/docs/getting-started", "/blog", "/app", "/app/jobs", "/signup"]
TYPES = ["page_viewed", "cta_clicked", "button_clicked", "search_performed", "asset_uploaded", "project_created"]


def user_agents(rng: random.Random, n: int = 2_000) -> list[str]:
    agents: set[str] = set()
    while len(agents) < n:
        agents.add(rng.choice(BROWSERS).format(a=rng.randint(90, 130), b=rng.randint(1000, 6999), c=rng.randint(0, 9)))
    return sorted(agents)


def payloads(n: int, seed: int = 7):
    """(wire_format, payload JSON text) rows: ~70% native, ~30% Segment; ~5% duplicates spread
    over eventId, idempotencyKey and fingerprint; ~2% invalid (no type, or too old). Built as
    text from templates: json.dumps per event would dominate the landing time."""
    rng = random.Random(seed)
    agents = user_agents(rng)
    now = datetime.now(UTC)
    base = int((now - timedelta(hours=20)).timestamp())
    recent: list[tuple[str, str, str, str, str, str]] = []
    for i in range(n):
        roll = rng.random()
        if recent and roll < 0.05:
            event_id, etype, user, session, at, key = rng.choice(recent)
            if roll < 0.02:
                pass  # a retry: the same eventId
            elif roll < 0.035:
                event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))  # same idempotencyKey
            else:
                event_id, key = str(uuid.UUID(int=rng.getrandbits(128), version=4)), ""  # same-second re-send
        else:
            event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            etype = rng.choice(TYPES)
            user = f"anon-{rng.randrange(200_000):x}"
            session = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            at = datetime.fromtimestamp(base + i * 60_000 // max(n, 1), UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
                f"{rng.randrange(1000):03d}Z"
            )
            key = str(uuid.UUID(int=rng.getrandbits(128), version=4)) if rng.random() < 0.3 else ""
            recent.append((event_id, etype, user, session, at, key))
            if len(recent) > 5_000:
                recent.pop(rng.randrange(len(recent)))
        if roll > 0.99:
            at = (now - timedelta(days=45)).strftime("%Y-%m-%dT%H:%M:%SZ")  # too old
        if 0.98 < roll <= 0.99:
            etype = ""  # missing type
        ua = agents[i % len(agents)] if rng.random() < 0.5 else agents[rng.randrange(len(agents))]
        page = PAGES[i % len(PAGES)]
        if i % 10 < 7:
            idem = f', "idempotencyKey": "{key}"' if key else ""
            yield (
                "native",
                f'{{"eventId": "{event_id}", "eventType": "{etype}", "anonymousId": "{user}", '
                f'"sessionId": "{session}", "occurredAt": "{at}", "source": "web"{idem}, '
                f'"context": {{"userAgent": "{ua}", "locale": "en-GB", "page": {{"url": '
                f'"https://example.com{page}?utm_source=news&utm_medium=email", "referrer": '
                f'"https://www.google.com/", "title": "{page}"}}}}, "props": {{"plan": "pro", "n": {i % 97}}}}}',
            )
        else:
            yield (
                "segment",
                f'{{"type": "track", "messageId": "{event_id}", "event": "{etype}", "anonymousId": "{user}", '
                f'"timestamp": "{at}", "sentAt": "{at}", "context": {{"userAgent": "{ua}", '
                f'"sessionId": "{session}", "page": {{"url": "https://example.com{page}", '
                f'"path": "{page}"}}}}, "properties": {{"plan": "pro", "n": {i % 97}}}}}',
            )


def land(conn, tenant_id: str, n: int) -> float:
    started = time.perf_counter()
    rows = payloads(n)
    with conn.cursor().copy("copy landing.events_raw (tenant_id, wire_format, client_ip, payload) from stdin") as copy:
        buffer: list[str] = []
        for wire_format, payload in rows:
            buffer.append(f"{tenant_id}\t{wire_format}\t203.0.113.{len(buffer) % 250}\t{payload}\n")
            if len(buffer) == CHUNK:
                copy.write("".join(buffer).encode())
                buffer.clear()
        if buffer:
            copy.write("".join(buffer).encode())
    conn.execute("vacuum analyze landing.events_raw")
    return time.perf_counter() - started


def _pipe(source, target, copy_out: str, table: str) -> float:
    """Seconds to stream `copy_out` from `source` into `table` on `target`, chunk by chunk."""
    started = time.perf_counter()
    with source.cursor().copy(copy_out) as out, target.cursor().copy(f"copy {table} from stdin") as into:
        for chunk in out:
            into.write(chunk)
    return time.perf_counter() - started


def plain_move(url: str, logged: bool = False) -> float:
    """The floor: the same landing rows read and written elsewhere, untransformed (by
    default into an unlogged table: the issue's yardstick; `logged`: durable, as every
    table processing writes is)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as source, psycopg.connect(url, autocommit=True) as target:
        target.execute("drop table if exists bench_scratch")
        target.execute(f"create {'' if logged else 'unlogged '}table bench_scratch (like landing.events_raw)")
        target.execute("alter table bench_scratch alter column id drop identity if exists")
        seconds = _pipe(source, target, "copy (select * from landing.events_raw) to stdout", "bench_scratch")
        target.execute("drop table bench_scratch")
    return seconds


def outcome_copy(url: str) -> float:
    """What writing the outcome alone costs, with no rule run: the rows processing kept and
    their de-duplication keys read back and COPYed into fresh tables of the same
    definitions (indexes included), one after the other, as the plain move does."""
    import psycopg

    seconds = 0.0
    with psycopg.connect(url, autocommit=True) as source, psycopg.connect(url, autocommit=True) as target:
        for table in ("warehouse.events", "warehouse.dedup_keys"):
            target.execute(f"create table bench_outcome (like {table} including all)")
            seconds += _pipe(source, target, f"copy {table} to stdout", "bench_outcome")
            target.execute("drop table bench_outcome")
    return seconds


class PeakRss:
    """Samples this process's RSS every 20 ms while processing runs."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def child(n: int) -> dict:
    """One backlog, in a fresh home and server; returns its figures."""
    from tributary import db, migrations, services, tenants, tracking_plan

    home = Path(tempfile.mkdtemp(prefix="tributary-bench-"))
    os.environ.update({"TRIBUTARY_HOME": str(home), "TRIBUTARY_DB_PORT": str(services.free_port())})
    from tributary.settings import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    server = db.embedded_server(settings)
    try:
        import psycopg

        from orchestration.batches import drain
        from orchestration.processing.validate import Limits

        server.start()
        url = db.database_url(settings)
        if STATEMENTS:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("alter system set shared_preload_libraries = 'pg_stat_statements'")
            server.stop()
            server.start()
        with psycopg.connect(url, autocommit=True) as conn:
            migrations.migrate(conn)
            if STATEMENTS:
                conn.execute("create extension pg_stat_statements")
            tenant, _ = tenants.create(conn, "bench")
            land_seconds = land(conn, str(tenant.id), n)
            conn.execute("select count(*) from landing.events_raw where payload is not null").fetchone()
        move_seconds = plain_move(url)
        if STATEMENTS:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("select pg_stat_statements_reset()")
        workers = settings.processing_workers
        pg_cpu = cpu_seconds(server.status().pid)
        with PeakRss() as rss:
            started, cpu = time.perf_counter(), time.process_time()
            results = list(
                drain(lambda: psycopg.connect(url), tracking_plan.load(), Limits(), settings.batch_size, workers)
            )
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        pg_cpu = cpu_seconds(server.status().pid) - pg_cpu
        if STATEMENTS:
            with psycopg.connect(url, autocommit=True) as conn:
                top = conn.execute(
                    "select total_exec_time, calls, regexp_replace(left(query, 200), '\\s+', ' ', 'g')"
                    " from pg_stat_statements where toplevel order by 1 desc limit 10"
                ).fetchall()
            print("top statements while processing (ms per 10,000 events, calls):", file=sys.stderr)
            for total, calls, query in top:
                print(f"{total / n * 10_000:9.1f} {calls:6d}  {query[:110]}", file=sys.stderr)
        # After processing, so that their write-ahead log cannot bring a checkpoint into it.
        logged_move_seconds = plain_move(url, logged=True)
        outcome_seconds = outcome_copy(url)
        with psycopg.connect(url, autocommit=True) as conn:
            # From the tables, not the batches' own figures: a batch that ran before an
            # earlier-landed copy of one of its events sees that event moved to duplicates later.
            landed, waiting, events, rejects, duplicates = conn.execute(
                "select (select count(*) from landing.events_raw), (select count(*) from landing.backlog),"
                " (select count(*) from warehouse.events), (select count(*) from warehouse.event_rejects),"
                " (select count(*) from warehouse.event_duplicates)"
            ).fetchone()
        assert waiting == 0 and landed == n == events + rejects + duplicates, "conservation broken"
        return {
            "events": n,
            "batches": len(results),
            "batch_size": settings.batch_size,
            "workers": workers,
            "kept": events,
            "rejects": rejects,
            "duplicates": duplicates,
            "land_seconds": round(land_seconds, 2),
            "process_seconds": round(seconds, 2),
            "events_per_s": round(n / seconds),
            "plain_move_seconds": round(move_seconds, 2),
            "plain_move_events_per_s": round(n / move_seconds),
            "ratio_to_plain_move": round(move_seconds / seconds, 3),
            "plain_move_logged_events_per_s": round(n / logged_move_seconds),
            # Writing only what processing wrote (its events and keys), per landed event.
            "outcome_copy_events_per_s": round(n / outcome_seconds),
            "peak_rss_mb": round(rss.peak / 2**20, 1),
            # Where the time goes, per 10,000 events: this process (Polars, psycopg) and the server.
            "python_cpu_ms_per_10k": round(cpu / n * 10_000 * 1000),
            "postgres_cpu_ms_per_10k": round(pg_cpu / n * 10_000 * 1000),
        }
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--second-events", type=int, default=250_000, help="a smaller backlog (0: skip)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    figures = []
    for n in [args.events, args.second_events]:
        if n <= 0:
            continue
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(n)], cwd=ROOT, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            sys.exit(f"the {n:,}-event run failed:\n{done.stderr[-4000:]}")
        if STATEMENTS:
            print(done.stderr, end="")
        figures.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{n:>9,} events: {json.dumps(figures[-1])}", flush=True)
    if len(figures) == 2:
        print(
            f"peak RSS while processing: {figures[0]['peak_rss_mb']} MB for {figures[0]['events']:,} events,"
            f" {figures[1]['peak_rss_mb']} MB for {figures[1]['events']:,}: bounded by the batch size"
        )
    first = figures[0]
    keys = ("events", "events_per_s", "plain_move_events_per_s", "ratio_to_plain_move", "peak_rss_mb")
    print(json.dumps({k: first[k] for k in keys}))


if __name__ == "__main__":
    main()
