"""Freshness benchmark: seconds from an event's 2xx to the moment it counts in `marts.agg_tenant_daily`.

    .venv/bin/python bench/freshness.py [--seconds 120] [--rate 300] [--probe-every 2]

Starts the stack as `make up` runs it, in a temporary TRIBUTARY_HOME with free ports and a
database port of its own (never a developer's `.tributary`, :8000, :3000 or :5433): the
embedded PostgreSQL, the API (`tributary api`, via tributary.services.start_api) and
`dagster dev` with its daemon running the backlog sensor (start_dagster). Nothing here
starts a run: the sensor does, as in production.

It posts steady realistic traffic (tributary.synthetic, batches of 100 over HTTP, about
--rate events/s) to one tenant for --seconds, and every --probe-every seconds one probe:
a single page view, the only event of a tenant of its own. A probe is counted in the mart
exactly when `agg_tenant_daily` first has a row for its tenant, so a poll every 0.5 s (a
separate thread and connection, autocommit) sees each probe arrive on its own, whatever
else the run carried. A probe's latency runs from its 202 to the end of the first poll
that saw its row; the poll before did not see it, so the figure is late by less than one
poll (the summary prints that resolution).

Afterwards every probe is traced through the pipeline (its warehouse row's batch → that
batch's Dagster run → the run's steps and events, from Dagster's GraphQL API) and its
latency split into consecutive phases that add up to it: waiting for a run in flight,
for the sensor's next tick, in the run queue, for the run worker to launch, its start-up,
processing, the checks before dbt, and dbt until the mart showed it. Human-readable
figures first; the last line is one JSON object: p50_seconds, p95_seconds, max_seconds,
events (acknowledged by the API, probes included), and a few more (probes, runs, the
sensor interval, the highest load average seen, the median of each phase).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from tributary import db, migrations, services, synthetic, tenants  # noqa: E402
from tributary.settings import Settings, get_settings  # noqa: E402

HOST = "127.0.0.1"
POLL_SECONDS = 0.5
TRAFFIC_BATCH = 100
JOB = "process_and_build"
PROCESSING_STEP = "process_landed_events"
DBT_STEP = "tributary_dbt_models"


def backlog(conn) -> int:
    """Landed rows not yet processed: landing.backlog holds their ids (migration 0005); before it,
    a null processed_at marked them."""
    if conn.execute("select to_regclass('landing.backlog')").fetchone()[0]:
        return conn.execute("select count(*) from landing.backlog").fetchone()[0]
    return conn.execute("select count(*) from landing.events_raw where processed_at is null").fetchone()[0]


@dataclass
class Probe:
    tenant_id: str
    write_key: str
    acked: float | None = None
    """Wall-clock time (time.time()) of the probe's 2xx answer."""
    seen: float | None = None
    """End of the first poll that found the probe's tenant in the mart."""
    unseen: float | None = None
    """Start of the last poll that did not find it (after the ack)."""

    @property
    def latency(self) -> float | None:
        return None if self.acked is None or self.seen is None else self.seen - self.acked


@dataclass
class State:
    stop_traffic: threading.Event = field(default_factory=threading.Event)
    stop_polling: threading.Event = field(default_factory=threading.Event)
    events_acked: int = 0
    requests_failed: dict[str, int] = field(default_factory=dict)
    probes: list[Probe] = field(default_factory=list)
    polls: int = 0
    errors: list[str] = field(default_factory=list)
    errors_polling: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


# --- load -------------------------------------------------------------------------------


def traffic_events(events_needed: int, seed: int) -> list[dict]:
    """Realistic events (page views, clicks, logins, jobs, re-sends, some too old), enough for the run."""
    events: list[dict] = []
    while len(events) < events_needed:
        visitors = max(50, (events_needed - len(events)) // 10)
        events.extend(synthetic.generate(visitors=visitors, seed=seed + len(events)).events)
    return events[:events_needed]


def post_traffic(state: State, api_url: str, key: str, events: list[dict], rate: float) -> None:
    """Batches of TRAFFIC_BATCH at `rate` events/s on a fixed schedule (late sends catch up)."""
    interval = TRAFFIC_BATCH / rate
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=30) as client:
        next_send = time.monotonic()
        index = 0
        while not state.stop_traffic.is_set() and index < len(events):
            delay = next_send - time.monotonic()
            if delay > 0 and state.stop_traffic.wait(delay):
                break
            next_send += interval
            batch = events[index : index + TRAFFIC_BATCH]
            index += TRAFFIC_BATCH
            try:
                response = client.post("/v1/events/batch", json={"events": batch})
            except httpx.HTTPError as error:
                with state.lock:
                    state.requests_failed[type(error).__name__] = state.requests_failed.get(type(error).__name__, 0) + 1
                continue
            if response.is_success:
                with state.lock:
                    state.events_acked += response.json()["successful"]
            else:
                with state.lock:
                    state.requests_failed[str(response.status_code)] = (
                        state.requests_failed.get(str(response.status_code), 0) + 1
                    )


def post_probes(state: State, api_url: str, probes: list[Probe], every: float) -> None:
    """One probe every `every` seconds: a page view, the only event of its tenant."""
    with httpx.Client(base_url=api_url, timeout=30) as client:
        next_send = time.monotonic()
        for n, probe in enumerate(probes):
            delay = next_send - time.monotonic()
            if delay > 0 and state.stop_traffic.wait(delay):
                return
            if state.stop_traffic.is_set():
                return
            next_send += every
            event = {
                "eventType": "page_viewed",
                "eventId": str(uuid.uuid4()),
                "anonymousId": f"probe-{n}",
                "occurredAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "context": {"page": {"url": f"https://example.com/probe/{n}"}, "userAgent": "tributary-probe/1"},
            }
            try:
                response = client.post("/v1/events", json=event, headers={"Authorization": f"Bearer {probe.write_key}"})
            except httpx.HTTPError as error:
                state.errors.append(f"probe {n}: {error!r}")
                continue
            if response.status_code == 202:
                probe.acked = time.time()
                with state.lock:
                    state.probes.append(probe)
            else:
                state.errors.append(f"probe {n}: {response.status_code} {response.text[:200]}")


def poll_mart(state: State, url: str) -> None:
    """Every POLL_SECONDS: which acknowledged probes' tenants does agg_tenant_daily hold now?"""
    with psycopg.connect(url, autocommit=True) as conn:
        while not state.stop_polling.is_set():
            started = time.time()
            with state.lock:
                pending = [p for p in state.probes if p.seen is None]
            # Only probes acknowledged before this poll began can be judged by it.
            pending = [p for p in pending if p.acked is not None and p.acked <= started]
            if pending:
                try:
                    found = {
                        row[0]
                        for row in conn.execute(
                            "select distinct tenant_id::text from marts.agg_tenant_daily where tenant_id = any(%s)",
                            ([p.tenant_id for p in pending],),
                        )
                    }
                except psycopg.errors.UndefinedTable:
                    found = set()  # the first dbt build has not made the mart yet
                except psycopg.Error as error:
                    # dbt may swap the table under a waiting query ("could not open relation"):
                    # this poll tells nothing, the next one will.
                    state.errors_polling.append(repr(error))
                    state.stop_polling.wait(POLL_SECONDS)
                    continue
                finished = time.time()
                for probe in pending:
                    if probe.tenant_id in found:
                        probe.seen = finished
                    else:
                        probe.unseen = started
                state.polls += 1
            state.stop_polling.wait(max(0.0, POLL_SECONDS - (time.time() - started)))


# --- tracing a probe through the pipeline ------------------------------------------------

_RUNS_QUERY = """query Runs($filter: RunsFilter) { runsOrError(filter: $filter, limit: 1000) {
  __typename ... on Runs { results { runId status creationTime startTime endTime
    stepStats { stepKey status startTime endTime } } }
  ... on PythonError { message } } }"""
_EVENTS_QUERY = """query Events($runId: ID!) { logsForRun(runId: $runId, limit: 1000) {
  __typename ... on EventConnection { events { __typename ... on MessageEvent { timestamp } } } } }"""


@dataclass
class Run:
    run_id: str
    status: str
    created: float
    started: float | None
    ended: float | None
    steps: dict[str, tuple[float | None, float | None]]
    dequeued: float | None = None
    """When the run coordinator handed the run to the launcher (its RUN_STARTING event)."""


def dagster_runs(dagster_url: str) -> list[Run]:
    answer = httpx.post(
        f"{dagster_url}/graphql",
        json={"query": _RUNS_QUERY, "variables": {"filter": {"pipelineName": JOB}}},
        timeout=30,
    ).json()
    runs = answer["data"]["runsOrError"]
    if runs["__typename"] != "Runs":
        raise RuntimeError(f"Dagster's GraphQL API: {runs}")
    found = sorted(
        (
            Run(
                r["runId"],
                r["status"],
                r["creationTime"],
                r["startTime"],
                r["endTime"],
                {s["stepKey"]: (s["startTime"], s["endTime"]) for s in r["stepStats"]},
            )
            for r in runs["results"]
        ),
        key=lambda run: run.created,
    )
    for run in found:
        events = httpx.post(
            f"{dagster_url}/graphql",
            json={"query": _EVENTS_QUERY, "variables": {"runId": run.run_id}},
            timeout=30,
        ).json()["data"]["logsForRun"]
        starting = [e for e in events.get("events", []) if e["__typename"] == "RunStartingEvent"]
        run.dequeued = int(starting[0]["timestamp"]) / 1000 if starting else None
    return found


SEGMENTS = [
    ("run_in_flight", "waiting for the run in flight to end (the sensor skips meanwhile)"),
    ("sensor_tick", "waiting for the sensor's next tick after that"),
    ("queue", "run created → dequeued by the daemon's run coordinator"),
    ("launch", "dequeued → run worker started (a new process imports and loads the code)"),
    ("startup", "run worker started → processing step started (imports, code load)"),
    ("processing", "processing step (claim, Polars, commit), whole step"),
    ("before_dbt", "processing step end → dbt step start (asset checks, step launch)"),
    ("dbt", "dbt step start → probe visible in agg_tenant_daily"),
]


def breakdown(probe: Probe, run: Run, runs: list[Run]) -> dict[str, float] | None:
    """Split seen − acked into consecutive segments that add up exactly."""
    processing = run.steps.get(PROCESSING_STEP, (None, None))
    dbt = run.steps.get(DBT_STEP, (None, None))
    if None in (run.started, *processing, dbt[0]):
        return None
    # A run created before the ack and still going then was in flight: the sensor skipped.
    in_flight_end = max(
        (r.ended or probe.acked for r in runs if r.run_id != run.run_id and r.created < probe.acked < (r.ended or 0)),
        default=probe.acked,
    )
    # Consecutive moments, each clamped to the one before: a probe that landed while its own run
    # was already going (claimed by a later batch of it) spends nothing in the earlier segments.
    dequeued = run.dequeued or run.created
    moments = [probe.acked, in_flight_end, run.created, dequeued, run.started, *processing, dbt[0], probe.seen]
    for i in range(1, len(moments)):
        moments[i] = max(moments[i], moments[i - 1])
    return {name: moments[i + 1] - moments[i] for i, (name, _) in enumerate(SEGMENTS)}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# --- the run ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="how long traffic and probes run (default 120)")
    parser.add_argument("--rate", type=float, default=300.0, help="steady traffic, events/s (default 300)")
    parser.add_argument("--probe-every", type=float, default=2.0, help="seconds between probes (default 2)")
    parser.add_argument("--drain-timeout", type=float, default=300.0, help="how long to wait for the last probes")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home (logs, database) afterwards")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    home = Path(tempfile.mkdtemp(prefix="tributary-freshness-"))
    os.environ.update(
        {
            "TRIBUTARY_HOME": str(home),
            "TRIBUTARY_DB_PORT": str(services.free_port()),
            "TRIBUTARY_API_PORT": str(services.free_port()),
            "TRIBUTARY_DAGSTER_PORT": str(services.free_port()),
            "TRIBUTARY_ADMIN_TOKEN": secrets.token_urlsafe(24),
            "DO_NOT_TRACK": "1",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }
    )
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("TRIBUTARY_DAGSTER_URL", None)
    get_settings.cache_clear()
    settings = Settings.from_env()
    logs = home / "logs"
    logs.mkdir(parents=True)
    server = db.embedded_server(settings)
    running: list[services.Service] = []
    state = State()
    threads: list[threading.Thread] = []
    failed = True
    try:
        server.start()
        url = server.url()
        n_probes = max(1, int(args.seconds / args.probe_every))
        with psycopg.connect(url, autocommit=True) as conn:
            migrations.migrate(conn)
            _tenant, key = tenants.create(conn, "freshness-traffic")
            probes = []
            for n in range(n_probes):
                probe_tenant, probe_key = tenants.create(conn, f"freshness-probe-{n:04d}")
                probes.append(Probe(str(probe_tenant.id), probe_key))
        events = traffic_events(int(args.rate * args.seconds) + TRAFFIC_BATCH, seed=11)
        print(
            f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; sensor interval "
            f"{settings.sensor_interval_seconds} s (TRIBUTARY_SENSOR_INTERVAL_SECONDS); home {home}",
            flush=True,
        )

        print("starting the API …", flush=True)
        running.append(services.start_api(settings, HOST, settings.api_port, log=logs / "api.log"))
        print("starting Dagster (dagster dev: webserver and daemon with the backlog sensor) …", flush=True)
        started = time.monotonic()
        running.append(services.start_dagster(settings, HOST, settings.dagster_port, log=logs / "dagster.log"))
        api_url, dagster_url = running[0].url, running[1].url
        print(f"Dagster up in {time.monotonic() - started:.0f} s: {dagster_url}; API {api_url}", flush=True)

        print(
            f"posting ~{args.rate:.0f} events/s in batches of {TRAFFIC_BATCH} and a probe every "
            f"{args.probe_every:g} s for {args.seconds:g} s …",
            flush=True,
        )
        threads = [
            threading.Thread(target=post_traffic, args=(state, api_url, key, events, args.rate), daemon=True),
            threading.Thread(target=post_probes, args=(state, api_url, probes, args.probe_every), daemon=True),
            threading.Thread(target=poll_mart, args=(state, url), daemon=True),
        ]
        for thread in threads:
            thread.start()
        load_samples = []
        began = time.monotonic()
        while time.monotonic() - began < args.seconds:
            time.sleep(10)
            load_samples.append(os.getloadavg()[0])
            progress(state, time.monotonic() - began, url)
        state.stop_traffic.set()
        threads[0].join(60)
        threads[1].join(60)
        print(f"traffic stopped; waiting up to {args.drain_timeout:.0f} s for the last probes …", flush=True)
        deadline = time.monotonic() + args.drain_timeout
        while time.monotonic() < deadline and any(p.seen is None for p in state.probes):
            time.sleep(5)
            progress(state, time.monotonic() - began, url)
        state.stop_polling.set()
        threads[2].join(10)
        runs = dagster_runs(dagster_url)
        with psycopg.connect(url, autocommit=True) as conn:
            traced = conn.execute(
                "select e.tenant_id::text, b.run_id from warehouse.events e join ops.batches b on b.id = e.batch_id"
                " where e.tenant_id = any(%s)",
                ([p.tenant_id for p in state.probes],),
            ).fetchall()
        failed = report(state, runs, dict(traced), load_samples, settings.sensor_interval_seconds)
    finally:
        state.stop_traffic.set()
        state.stop_polling.set()
        for service in reversed(running):
            print(f"stopping {service.name} …", file=sys.stderr, flush=True)
            service.stop()
        try:
            server.stop()
        finally:
            if not server.socket_dir.is_relative_to(home):
                shutil.rmtree(server.socket_dir, ignore_errors=True)
            if args.keep or failed:
                print(f"kept {home} (logs in {logs})", file=sys.stderr)
            else:
                shutil.rmtree(home, ignore_errors=True)
    if failed:
        sys.exit(1)


def progress(state: State, elapsed: float, url: str) -> None:
    with state.lock:
        probes = list(state.probes)
        acked = state.events_acked
    done = [p.latency for p in probes if p.seen is not None]
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            waiting = backlog(conn)
    except psycopg.Error:
        waiting = -1
    latest = f" (so far: median {statistics.median(done):.1f} s, max {max(done):.1f} s)" if done else ""
    print(
        f"  {elapsed:5.0f} s: {acked:,} events acknowledged, backlog {waiting:,}; probes {len(done)}/{len(probes)} "
        f"in the mart{latest}; load {os.getloadavg()[0]:.2f}",
        flush=True,
    )


def report(state: State, runs: list[Run], run_of: dict[str, str], load_samples: list[float], interval: int) -> bool:
    """Print the figures; True when the run failed (a probe never arrived, requests failed)."""
    by_id = {run.run_id: run for run in runs}
    latencies = [p.latency for p in state.probes if p.latency is not None]
    missing = [p for p in state.probes if p.seen is None]
    posted = state.events_acked + len(state.probes)
    print(f"\n{len(runs)} Dagster runs of {JOB}:")
    print(
        f"  {'created':>8} {'status':<8} {'queue s':>7} {'launch s':>8} {'startup s':>9} {'processing s':>12} {'dbt s':>6} {'total s':>7}"
    )
    t0 = runs[0].created if runs else 0.0
    for run in runs:
        processing = run.steps.get(PROCESSING_STEP, (None, None))
        dbt = run.steps.get(DBT_STEP, (None, None))

        def span(a, b):
            return f"{b - a:.1f}" if a is not None and b is not None else "–"

        print(
            f"  {run.created - t0:>7.1f}s {run.status[:8]:<8} {span(run.created, run.dequeued):>7} {span(run.dequeued, run.started):>8} "
            f"{span(run.started, processing[0]):>9} {span(*processing):>12} {span(*dbt):>6} "
            f"{span(run.created, run.ended):>7}"
        )
    parts = []
    for probe in state.probes:
        run = by_id.get(run_of.get(probe.tenant_id, ""))
        if run is not None and probe.seen is not None:
            split = breakdown(probe, run, runs)
            if split is not None:
                parts.append(split)
    if parts:
        print(f"\nwhere a probe's time goes (median and max over {len(parts)} probes, seconds):")
        for name, meaning in SEGMENTS:
            values = [p[name] for p in parts]
            print(f"  {name:<14} {statistics.median(values):6.1f} {max(values):6.1f}   {meaning}")
    resolution = [p.seen - p.unseen for p in state.probes if p.seen is not None and p.unseen is not None]
    print(
        f"\nevents acknowledged: {state.events_acked:,} of traffic and {len(state.probes)} probes; failed requests: {state.requests_failed or 'none'}; "
        f"polls: {state.polls}; probes: {len(state.probes)} acknowledged, {len(latencies)} seen in the mart"
    )
    if resolution:
        print(
            f"poll resolution (last poll without → first poll with the probe): median {statistics.median(resolution):.2f} s"
        )
    if state.errors_polling:
        print(f"{len(state.errors_polling)} poll(s) failed and were retried, e.g. {state.errors_polling[0]}")
    for error in state.errors[:5]:
        print(f"  error: {error}")
    if load_samples:
        print(f"load average during the run: {min(load_samples):.2f}–{max(load_samples):.2f}")
    if not latencies:
        print(json.dumps({"p50_seconds": None, "p95_seconds": None, "max_seconds": None, "events": posted}))
        return True
    p50, p95, worst = statistics.median(latencies), percentile(latencies, 0.95), max(latencies)
    print(f"2xx → counted in marts.agg_tenant_daily: p50 {p50:.1f} s, p95 {p95:.1f} s, max {worst:.1f} s")
    if missing:
        print(f"FAILED: {len(missing)} probe(s) never reached the mart")
    summary = {
        "p50_seconds": round(p50, 2),
        "p95_seconds": round(p95, 2),
        "max_seconds": round(worst, 2) if not missing else None,
        "events": posted,
        "probes": len(state.probes),
        "runs": len(runs),
        "sensor_interval_seconds": interval,
        "load_avg_max": round(max(load_samples), 2) if load_samples else None,
        "median_breakdown_seconds": {name: round(statistics.median(p[name] for p in parts), 2) for name, _ in SEGMENTS}
        if parts
        else None,
    }
    print(json.dumps(summary))
    return bool(missing or state.requests_failed or state.errors)


if __name__ == "__main__":
    main()
