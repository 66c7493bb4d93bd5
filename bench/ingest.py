"""Ingest benchmark: how many events per second the API makes durable, against PostgreSQL's COPY.

    .venv/bin/python bench/ingest.py [--duration 10] [--server tributary|uvicorn|granian] [--workers N]

Starts its own embedded PostgreSQL in a temporary TRIBUTARY_HOME, migrates it, creates a
tenant, and starts the API as production runs it (`tributary api`, a subprocess; or another
server, to compare). A separate load process posts realistic events (tributary.synthetic)
over loopback: single events at concurrency 32, then batches of 100 and of 500. Only 2xx
answers count, and at the end landing.events_raw must hold exactly the acknowledged events.
Then one process COPYs the same payload bytes into the same columns: the limit the API is
measured against. Human-readable figures first; the last line is one JSON object.

The load generator is a small HTTP/1.1 keep-alive client on raw sockets with pre-built
requests: on two cores every cycle it spends is taken from the API and PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import queue
import re
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg
from _measure import cpu_seconds

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from tributary import db, migrations, services, synthetic, tenants  # noqa: E402
from tributary.settings import Settings  # noqa: E402

HOST = "127.0.0.1"
SINGLE_CONCURRENCY = 32
BATCH_CONCURRENCY = 8
BATCH_SIZES = (100, 500)
COPY_ROWS_PER_COMMIT = 5_000
BENCH_USER_AGENT = "tributary-bench/1 (server SDK)"


# --- the load process -------------------------------------------------------------------


@dataclass
class Load:
    """What one load phase sends; the load process builds its requests from it."""

    path: str
    events_file: str
    batch_size: int | None
    concurrency: int
    duration: float
    port: int
    write_key: str


@dataclass
class LoadResult:
    requests_ok: int = 0
    events_acked: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0
    cpu_seconds: float = 0.0
    """The load process's own CPU time: what it took from the machine."""
    api_cpu_seconds: float = 0.0
    db_cpu_seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_SUCCESSFUL = re.compile(rb'"successful":(\d+)')


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time, its answer as (status, body)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.answer: asyncio.Future[tuple[int, bytes]] | None = None
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.answer is None:
            return
        head = bytes(self.buffer[:end])
        length = _CONTENT_LENGTH.search(head)
        if length is None:
            self.answer.set_exception(RuntimeError(f"an answer without Content-Length: {head[:200]!r}"))
            return
        total = end + 4 + int(length[1])
        if len(self.buffer) < total:
            return
        body = bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        answer, self.answer = self.answer, None
        answer.set_result((int(head[9:12]), body))

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = exc or ConnectionResetError("the server closed the connection")
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(self.lost)

    async def request(self, data: bytes) -> tuple[int, bytes]:
        if self.lost is not None:
            raise self.lost
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.answer


def _requests(load: Load) -> list[bytes]:
    events = Path(load.events_file).read_bytes().splitlines()
    if load.batch_size:
        size = load.batch_size
        bodies = [b'{"events":[' + b",".join(events[i : i + size]) + b"]}" for i in range(0, len(events), size)]
        bodies = [body for body in bodies if body.count(b'"eventType"') == size]
        agents = [BENCH_USER_AGENT.encode()] * len(bodies)
    else:
        bodies = events
        agents = [json.loads(event)["context"].get("userAgent", BENCH_USER_AGENT).encode() for event in events]
    return [
        b"POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
        b"User-Agent: %s\r\nContent-Length: %d\r\n\r\n%s"
        % (load.path.encode(), HOST.encode(), load.write_key.encode(), agent, len(body), body)
        for body, agent in zip(bodies, agents, strict=True)
    ]


async def _drive(load: Load) -> LoadResult:
    requests = _requests(load)
    loop = asyncio.get_running_loop()
    connections = [(await loop.create_connection(_Connection, HOST, load.port))[1] for _ in range(load.concurrency)]
    result = LoadResult()
    per_request = load.batch_size or 1
    next_request = 0

    async def client(connection: _Connection) -> None:
        nonlocal next_request
        while time.perf_counter() < deadline:
            data = requests[next_request % len(requests)]
            next_request += 1
            sent = time.perf_counter()
            try:
                status, body = await connection.request(data)
            except (OSError, RuntimeError) as error:
                result.failures[type(error).__name__] = result.failures.get(type(error).__name__, 0) + 1
                return
            if 200 <= status < 300:
                result.latencies_ms.append((time.perf_counter() - sent) * 1000)
                result.requests_ok += 1
                if load.batch_size:
                    successful = _SUCCESSFUL.search(body)
                    result.events_acked += int(successful[1]) if successful else 0
                else:
                    result.events_acked += per_request
            else:
                result.failures[str(status)] = result.failures.get(str(status), 0) + 1

    started = time.perf_counter()
    cpu_started = time.process_time()
    deadline = started + load.duration
    # Every request sent is waited for: an answer cut off would leave its events uncounted.
    await asyncio.gather(*(client(connection) for connection in connections))
    result.elapsed = time.perf_counter() - started
    result.cpu_seconds = time.process_time() - cpu_started
    for connection in connections:
        connection.transport.close()
    return result


def _load_process(load: Load, results: multiprocessing.Queue) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    results.put(asyncio.run(_drive(load)))


def run_load(load: Load) -> LoadResult:
    """One phase, in a process of its own (spawned: nothing of this process's state)."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=_load_process, args=(load, results), daemon=True)
    process.start()
    try:
        deadline = time.monotonic() + load.duration + 60
        while time.monotonic() < deadline:
            try:
                result = results.get(timeout=0.5)
            except queue.Empty:
                if not process.is_alive():
                    raise SystemExit(f"the load process died (exit code {process.exitcode})") from None
            else:
                process.join(10)
                return result
        raise SystemExit("the load process did not finish in time")
    finally:
        if process.is_alive():
            process.kill()
            process.join()


# --- the API under test -----------------------------------------------------------------


class PeakRss:
    """Samples the summed RSS of a process and its children (the API's workers)."""

    def __init__(self, pid: int, interval: float = 0.2):
        self._root = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            try:
                for process in [self._root, *self._root.children(recursive=True)]:
                    try:
                        total += process.memory_info().rss
                    except psutil.NoSuchProcess:
                        pass
            except psutil.NoSuchProcess:
                return
            self.peak = max(self.peak, total)
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()


def start_api(settings: Settings, server: str, workers: int, log: Path) -> services.Service:
    """The API as production runs it (`tributary api`), or under another server to compare."""
    port = services.free_port()
    if server == "tributary":
        return services.start_api(settings, HOST, port, log=log)
    factory = "ingest_api.app:create_app"
    argv = {
        "uvicorn": [
            *(sys.executable, "-m", "uvicorn", factory, "--factory", "--host", HOST, "--port", str(port)),
            *("--workers", str(workers), "--log-level", "warning", "--no-access-log"),
        ],
        "granian": [
            *(sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--host", HOST),
            *("--port", str(port), "--workers", str(workers), "--loop", "uvloop", "--log-level", "warning"),
            *("--no-ws", factory),
        ],
    }[server]
    process = services._spawn(argv, services.child_env(settings), log)
    service = services.Service("api", process, f"http://{HOST}:{port}")
    try:
        services.wait_for_http(f"{service.url}/readyz", process, timeout=30)
    except BaseException:
        service.stop()
        raise
    return service


# --- the limit: one process COPYing the same rows ---------------------------------------


def copy_limit(url: str, events: list[bytes], seconds: float) -> tuple[int, float]:
    """Rows per second of binary COPY from one connection, rows encoded beforehand (the
    database's share alone), in commits of COPY_ROWS_PER_COMMIT rows."""
    tenant = uuid.uuid4()
    agent = BENCH_USER_AGENT.encode()
    ip = bytes([2, 32, 0, 4, 127, 0, 0, 1])
    head = (
        struct.pack(">hi", 5, 16)
        + tenant.bytes
        + struct.pack(">i", 6)
        + b"native"
        + struct.pack(">i", len(ip))
        + ip
        + struct.pack(">i", len(agent))
        + agent
    )
    chunks = []
    for start in range(0, len(events) - COPY_ROWS_PER_COMMIT + 1, COPY_ROWS_PER_COMMIT):
        rows = [
            head + struct.pack(">i", len(p) + 1) + b"\x01" + p for p in events[start : start + COPY_ROWS_PER_COMMIT]
        ]
        chunks.append(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0) + b"".join(rows) + struct.pack(">h", -1))
    sql = "copy landing.events_raw (tenant_id, wire_format, client_ip, user_agent, payload) from stdin (format binary)"
    rows = 0
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            with conn.cursor().copy(sql) as copy:
                copy.write(chunks[(rows // COPY_ROWS_PER_COMMIT) % len(chunks)])
            rows += COPY_ROWS_PER_COMMIT
        elapsed = time.perf_counter() - started
        landed = conn.execute("select count(*) from landing.events_raw where tenant_id = %s", (tenant,)).fetchone()[0]
    if landed != rows:
        raise SystemExit(f"the COPY limit run landed {landed} rows, not {rows}")
    return rows, elapsed


# --- the run ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load phase (default 10)")
    parser.add_argument("--server", choices=["tributary", "uvicorn", "granian"], default="tributary")
    parser.add_argument("--workers", type=int, default=None, help="API worker processes (default: the setting's)")
    parser.add_argument("--batch-concurrency", type=int, default=BATCH_CONCURRENCY)
    args = parser.parse_args()
    # SIGTERM ends the run through the same clean-up as an error.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    home = Path(tempfile.mkdtemp(prefix="tributary-bench-"))
    server = None
    try:
        os.environ.update(
            {
                "TRIBUTARY_HOME": str(home),
                "TRIBUTARY_DB_PORT": str(services.free_port()),
                # The per-tenant limiter must not be what the benchmark measures.
                "TRIBUTARY_RATE_LIMIT_PER_S": "1000000000",
                "TRIBUTARY_RATE_LIMIT_BURST": "1000000000",
                "DO_NOT_TRACK": "1",
            }
        )
        os.environ.pop("DATABASE_URL", None)
        if args.workers is not None:
            os.environ["TRIBUTARY_API_WORKERS"] = str(args.workers)
        settings = Settings.from_env()
        server = db.embedded_server(settings)
        server.start()
        url = server.url()
        with psycopg.connect(url, autocommit=True) as conn:
            migrations.migrate(conn)
            tenant, write_key = tenants.create(conn, "bench")
        events = [
            json.dumps(event, separators=(",", ":")).encode()
            for event in synthetic.generate(visitors=4000, seed=11).events
        ]
        events_file = home / "events.jsonl"
        events_file.write_bytes(b"\n".join(events))
        print(
            f"{len(events):,} synthetic events, {sum(map(len, events)) / len(events):.0f} bytes on average; "
            f"API: {args.server}, workers {settings.api_workers}; {os.cpu_count()} cores"
        )

        api = start_api(settings, args.server, settings.api_workers, home / "api.log")
        port = int(api.url.rsplit(":", 1)[1])
        plan = [
            ("warm-up", "/v1/events", None, SINGLE_CONCURRENCY, 2.0),
            ("single", "/v1/events", None, SINGLE_CONCURRENCY, args.duration),
            *(
                (f"batch {size}", "/v1/events/batch", size, args.batch_concurrency, args.duration)
                for size in BATCH_SIZES
            ),
        ]
        results: dict[str, LoadResult] = {}
        try:
            with PeakRss(api.process.pid) as rss:
                for name, path, batch_size, concurrency, duration in plan:
                    load = Load(path, str(events_file), batch_size, concurrency, duration, port, write_key)
                    api_cpu, db_cpu = cpu_seconds(api.process.pid), cpu_seconds(server.status().pid)
                    results[name] = result = run_load(load)
                    result.api_cpu_seconds = cpu_seconds(api.process.pid) - api_cpu
                    result.db_cpu_seconds = cpu_seconds(server.status().pid) - db_cpu
        finally:
            api.stop()
        with psycopg.connect(url, autocommit=True) as conn:
            landed = conn.execute(
                "select count(*) from landing.events_raw where tenant_id = %s", (tenant.id,)
            ).fetchone()[0]
        copy_rows, copy_seconds = copy_limit(url, events, seconds=args.duration)
    finally:
        if server is not None:
            try:
                server.stop()
            finally:
                if not server.socket_dir.is_relative_to(home):
                    shutil.rmtree(server.socket_dir, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)

    print(
        f"\n{'phase':<10} {'conc.':>5} {'requests/s':>10} {'events/s':>9} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'CPU µs/event: API':>18} {'PostgreSQL':>10} {'load':>5}  failures"
    )
    for name, _path, _size, concurrency, _duration in plan[1:]:
        result = results[name]
        per_event = 1e6 / max(result.events_acked, 1)
        print(
            f"{name:<10} {concurrency:>5} {result.requests_ok / result.elapsed:>10,.0f}"
            f" {result.events_acked / result.elapsed:>9,.0f} {result.percentile(0.5):>7.1f}"
            f" {result.percentile(0.99):>7.1f} {result.api_cpu_seconds * per_event:>18.1f}"
            f" {result.db_cpu_seconds * per_event:>10.1f} {result.cpu_seconds * per_event:>5.1f}"
            f"  {result.failures or 'none'}"
        )
    copy_rate = copy_rows / copy_seconds
    print(f"COPY limit (one process, binary, {COPY_ROWS_PER_COMMIT:,} rows a commit): {copy_rate:,.0f} events/s")
    print(f"peak RSS of the API processes: {rss.peak / 2**20:.0f} MiB")
    acked = sum(result.events_acked for result in results.values())
    print(f"acknowledged {acked:,} events (warm-up included); landing.events_raw holds {landed:,} of the tenant's rows")
    if landed != acked:
        raise SystemExit(f"FAILED: {landed:,} rows landed for {acked:,} acknowledged events")

    single = results["single"]
    batch_rate = max(results[f"batch {size}"].events_acked / results[f"batch {size}"].elapsed for size in BATCH_SIZES)
    summary = {
        "single_requests_per_s": round(single.requests_ok / single.elapsed, 1),
        "p99_ms_single": round(single.percentile(0.99), 2),
        "batch_events_per_s": round(batch_rate, 1),
        "copy_limit_events_per_s": round(copy_rate, 1),
        "ratio_to_copy_limit": round(batch_rate / copy_rate, 3),
        "peak_rss_mb_api": round(rss.peak / 2**20, 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
