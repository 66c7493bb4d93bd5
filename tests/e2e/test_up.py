"""`make up` as a user meets it: start, post the printed curl's event, see it in the marts (as
Tributary, and as a BI tool over TCP with the reader URL), Ctrl-C."""

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import psycopg
import pytest

from tributary import db
from tributary.services import PROJECT_DIR, free_port
from tributary.settings import Settings


@pytest.fixture
def up_env(tmp_path) -> dict[str, str]:
    # Its own home and database: `up` stops its PostgreSQL on Ctrl-C, which must not
    # be the one the other tests share. No admin token and no Dagster URL from the test
    # session: `up` makes the first and points the API at its own Dagster.
    inherited = {k: v for k, v in os.environ.items() if k not in ("TRIBUTARY_ADMIN_TOKEN", "TRIBUTARY_DAGSTER_URL")}
    return {
        **inherited,
        "TRIBUTARY_HOME": str(tmp_path / "home"),
        "TRIBUTARY_DB_PORT": str(free_port()),
        "TRIBUTARY_API_PORT": str(free_port()),
        "TRIBUTARY_DAGSTER_PORT": str(free_port()),
        "TRIBUTARY_SENSOR_INTERVAL_SECONDS": "2",
        "PYTHONUNBUFFERED": "1",
    }


def read_until(lines: "queue.Queue[str]", pattern: str, timeout: float, seen: list[str]) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        seen.append(line)
        if match := re.search(pattern, line):
            return match
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s; output:\n{''.join(seen)}")


def test_an_event_posted_under_make_up_reaches_the_marts_without_a_manual_step(up_env):
    process = subprocess.Popen(
        [sys.executable, "-m", "tributary.cli", "up"],
        cwd=PROJECT_DIR,
        env=up_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    seen: list[str] = []
    settings = Settings.from_env(up_env)
    try:
        key = read_until(lines, r"write key\s+(\S+)", 240, seen).group(1)
        admin = read_until(lines, r"admin\s+(\S+)", 10, seen).group(1)
        curl = read_until(lines, r"curl -X POST (\S+)", 10, seen).group(1)
        read_until(lines, r"Ctrl-C stops everything", 10, seen)
        response = httpx.post(
            curl,
            headers={"Authorization": f"Bearer {key}"},
            json={
                "eventType": "page_viewed",
                "anonymousId": "visitor-up",
                "context": {"page": {"url": "https://example.com/up"}},
            },
        )
        assert response.status_code == 202, response.text

        deadline = time.monotonic() + 180
        sessions = []
        with psycopg.connect(db.database_url(settings, start=False), autocommit=True) as conn:
            while time.monotonic() < deadline and not sessions:
                time.sleep(2)
                if conn.execute("select to_regclass('marts.fct_sessions')").fetchone()[0]:
                    sessions = conn.execute(
                        "select landing_page, page_views from marts.fct_sessions where anonymous_id = 'visitor-up'"
                    ).fetchall()
        assert sessions == [("/up", 1)], "".join(seen)

        # A BI tool: where `up` said, with the URL of the command it named, over TCP.
        printed = "".join(seen)
        assert f"BI tools   127.0.0.1:{settings.db_port}, database tributary, user tributary_reader" in printed
        assert "db url --reader" in printed
        reader = subprocess.run(
            [sys.executable, "-m", "tributary.cli", "db", "url", "--reader"],
            cwd=PROJECT_DIR,
            env=up_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert reader.returncode == 0, reader.stderr
        reader_url = reader.stdout.strip()
        assert (
            reader_url.startswith("postgresql://tributary_reader:") and f"@127.0.0.1:{settings.db_port}/" in reader_url
        )
        password = settings.reader_password_file.read_text().strip()
        assert password not in printed, "`up` must not print the reader's password"
        with psycopg.connect(reader_url, autocommit=True) as bi:
            assert bi.execute("select host(inet_server_addr())").fetchone()[0] == "127.0.0.1"
            assert bi.execute(
                "select landing_page, page_views from marts.fct_sessions where anonymous_id = 'visitor-up'"
            ).fetchall() == [("/up", 1)]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                bi.execute("select count(*) from landing.events_raw")

        api_url = curl.removesuffix("/v1/events")
        stats = httpx.get(f"{api_url}/v1/admin/stats", headers={"Authorization": f"Bearer {admin}"})
        assert stats.status_code == 200
        [demo] = [t for t in stats.json()["tenants"] if t["name"] == "demo"]
        assert (demo["landed"], demo["backlog"], demo["events"]) == (1, 0, 1)
        flush = httpx.post(f"{api_url}/v1/admin/flush", headers={"Authorization": f"Bearer {admin}"}, timeout=30)
        assert flush.status_code == 202, flush.text
    finally:
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(60)
    assert code == 0, "".join(seen)
    assert not db.embedded_server(settings).status().running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{settings.api_port}/healthz")
