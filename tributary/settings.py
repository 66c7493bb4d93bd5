"""All configuration, read once from the environment.

Every other module receives a `Settings` (or calls `get_settings()`); nothing else
reads `os.environ`. The README's configuration table lists the same variables.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a whole number; unset it or give e.g. {name}={default}") from None


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a number; unset it or give e.g. {name}={default}") from None


def _port(env: dict[str, str], name: str, default: int) -> int:
    port = _int(env, name, default)
    if not 1024 <= port <= 65535:
        raise SystemExit(f"{name}={port} is not a usable port; give one from 1024 to 65535, e.g. {name}={default}")
    return port


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    """Set: use that server. Unset: start the embedded PostgreSQL under `home`."""
    home: Path
    admin_token: str | None
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    dagster_port: int = 3000
    batch_size: int = 30_000
    processing_workers: int = 2
    """Batches processed at once by a run: one runs the rules while another is written."""
    max_event_bytes: int = 32 * 1024
    max_batch_bytes: int = 1024 * 1024
    max_batch_events: int = 500
    segment_max_event_bytes: int = 32 * 1024
    segment_max_batch_bytes: int = 4 * 1024 * 1024
    segment_max_batch_events: int = 2_500
    max_compressed_bytes: int = 1024 * 1024
    """Largest gzip body accepted on the wire (the limits above apply after inflating)."""
    rate_limit_per_s: float = 10_000.0
    """Events per second each tenant may send to one API process (token bucket refill)."""
    rate_limit_burst: int = 50_000
    """Bucket size: how many events a tenant may send at once after a quiet spell."""
    api_workers: int = 2
    dagster_url: str = "http://127.0.0.1:3000"
    """Where the API asks Dagster to start a run (POST /v1/admin/flush)."""
    max_event_age_days: int = 30
    max_clock_skew_seconds: int = 300
    max_string_chars: int = 4096
    """Longest text field of an event processing keeps (longer: rejected as `oversized`)."""
    max_props_bytes: int = 16 * 1024
    """Largest props object, as JSON bytes, processing keeps (larger: rejected as `oversized`)."""
    geoip_db: Path | None = None
    """An offline MaxMind database (.mmdb) for the country of each event's IP; unset: no country."""
    sensor_interval_seconds: int = 5
    max_reject_rate: float = 0.05
    """Share of rejects among the last 24 h of processed rows above which the asset check fails."""
    max_duplicate_rate: float = 0.10
    """Share of duplicates among the last 24 h of processed rows above which the asset check fails."""
    max_backlog_age_seconds: int = 300
    """Age of the oldest unprocessed landed event above which the freshness asset check fails."""
    db_pool_size: int = 8
    db_port: int = 5433
    """Port of the embedded server: names its Unix socket, and its TCP port on 127.0.0.1 (BI tools)."""
    reader_password: str | None = field(default=None, repr=False)
    """Password of the BI role `tributary_reader`; unset: one made once, in `reader_password_file`."""

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def pg_data(self) -> Path:
        return self.home / "pg"

    @property
    def reader_password_file(self) -> Path:
        return self.home / "reader-password"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        home = Path(env.get("TRIBUTARY_HOME") or ".tributary").expanduser().absolute()
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            home=home,
            admin_token=env.get("TRIBUTARY_ADMIN_TOKEN") or None,
            api_host=env.get("TRIBUTARY_API_HOST") or "127.0.0.1",
            api_port=_int(env, "TRIBUTARY_API_PORT", 8000),
            dagster_port=_int(env, "TRIBUTARY_DAGSTER_PORT", 3000),
            batch_size=_int(env, "TRIBUTARY_BATCH_SIZE", 30_000),
            processing_workers=max(1, _int(env, "TRIBUTARY_PROCESSING_WORKERS", 2)),
            max_event_bytes=_int(env, "TRIBUTARY_MAX_EVENT_BYTES", 32 * 1024),
            max_batch_bytes=_int(env, "TRIBUTARY_MAX_BATCH_BYTES", 1024 * 1024),
            max_batch_events=_int(env, "TRIBUTARY_MAX_BATCH_EVENTS", 500),
            segment_max_event_bytes=_int(env, "TRIBUTARY_SEGMENT_MAX_EVENT_BYTES", 32 * 1024),
            segment_max_batch_bytes=_int(env, "TRIBUTARY_SEGMENT_MAX_BATCH_BYTES", 4 * 1024 * 1024),
            segment_max_batch_events=_int(env, "TRIBUTARY_SEGMENT_MAX_BATCH_EVENTS", 2_500),
            max_compressed_bytes=_int(env, "TRIBUTARY_MAX_COMPRESSED_BYTES", 1024 * 1024),
            rate_limit_per_s=_float(env, "TRIBUTARY_RATE_LIMIT_PER_S", 10_000.0),
            rate_limit_burst=_int(env, "TRIBUTARY_RATE_LIMIT_BURST", 50_000),
            api_workers=_int(env, "TRIBUTARY_API_WORKERS", 2),
            dagster_url=env.get("TRIBUTARY_DAGSTER_URL")
            or f"http://127.0.0.1:{_int(env, 'TRIBUTARY_DAGSTER_PORT', 3000)}",
            max_event_age_days=_int(env, "TRIBUTARY_MAX_EVENT_AGE_DAYS", 30),
            max_clock_skew_seconds=_int(env, "TRIBUTARY_MAX_CLOCK_SKEW_SECONDS", 300),
            max_string_chars=_int(env, "TRIBUTARY_MAX_STRING_CHARS", 4096),
            max_props_bytes=_int(env, "TRIBUTARY_MAX_PROPS_BYTES", 16 * 1024),
            geoip_db=Path(env["TRIBUTARY_GEOIP_DB"]).expanduser() if env.get("TRIBUTARY_GEOIP_DB") else None,
            sensor_interval_seconds=_int(env, "TRIBUTARY_SENSOR_INTERVAL_SECONDS", 5),
            max_reject_rate=_float(env, "TRIBUTARY_MAX_REJECT_RATE", 0.05),
            max_duplicate_rate=_float(env, "TRIBUTARY_MAX_DUPLICATE_RATE", 0.10),
            max_backlog_age_seconds=_int(env, "TRIBUTARY_MAX_BACKLOG_AGE_SECONDS", 300),
            db_pool_size=_int(env, "TRIBUTARY_DB_POOL_SIZE", 8),
            db_port=_port(env, "TRIBUTARY_DB_PORT", 5433),
            reader_password=env.get("TRIBUTARY_READER_PASSWORD") or None,
        )


@functools.cache
def get_settings() -> Settings:
    return Settings.from_env()
