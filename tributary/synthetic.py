"""Synthetic but realistic traffic, for `tributary demo`, the benchmarks and the tests.

Visitors arrive anonymously, browse in sessions (page views, clicks, searches),
some log in (from then on they carry a userId, which is what identity stitching
joins on) and run transcription jobs through their lifecycle. Like real clients,
a few re-send events (same eventId) and a few send events the pipeline must refuse.
Deterministic for a given seed.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

PAGES = ["/", "/pricing", "/docs", "/docs/getting-started", "/blog", "/blog/launch", "/app", "/app/jobs", "/signup"]
REFERRERS = [None, None, "https://www.google.com/", "https://twitter.com/", "https://news.ycombinator.com/"]
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
]


@dataclass
class Traffic:
    """Events to post, and what the pipeline should make of them."""

    events: list[dict] = field(default_factory=list)
    resent: int = 0
    """Copies of an already-sent eventId among `events` (→ duplicates)."""
    stale: int = 0
    """Events older than the 30-day window (→ rejects)."""
    malformed: list[dict] = field(default_factory=list)
    """Not events at all by the API's contract (→ 400, never landed)."""


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def generate(visitors: int = 300, seed: int = 7, now: datetime | None = None) -> Traffic:
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    traffic = Traffic()
    for _ in range(visitors):
        traffic.events.extend(_visitor(rng, now))
    rng.shuffle(traffic.events)

    for original in rng.sample(traffic.events, k=len(traffic.events) // 30):
        traffic.events.append(dict(original))  # a client retry: same eventId
        traffic.resent += 1
    for _ in range(max(1, len(traffic.events) // 50)):
        traffic.events.append(
            {
                "eventType": "page_viewed",
                "eventId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "anonymousId": f"anon-{rng.getrandbits(40):x}",
                "occurredAt": _iso(now - timedelta(days=40 + rng.randint(0, 30))),
                "context": {"page": {"url": "https://example.com/old"}},
            }
        )
        traffic.stale += 1
    traffic.malformed = [
        {"eventType": "page_viewed", "sessionId": "not-a-uuid"},
        {"eventType": ""},
        {"eventType": "asset_viewed", "entityId": "ckx1asset"},
        {"props": {"missing": "eventType"}},
        {"eventType": 42},
    ]
    return traffic


def _visitor(rng: random.Random, now: datetime) -> Iterator[dict]:
    anonymous_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    user_id: str | None = None
    user_agent = rng.choice(USER_AGENTS)
    moment = now - timedelta(hours=rng.uniform(1, 20))
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
        # Half of the sessions carry the client's sessionId; the rest are sessionised by inactivity.
        session_id = str(uuid.UUID(int=rng.getrandbits(128), version=4)) if rng.random() < 0.5 else None
        referrer = rng.choice(REFERRERS)
        campaign = rng.random() < 0.2
        for step in range(rng.randint(1, 8)):
            if moment > now - timedelta(minutes=20):
                return  # nothing from the future: jobs below run up to 16 minutes on
            page = rng.choice(PAGES)
            event = _event(rng, "page_viewed", moment, anonymous_id, user_id, session_id, user_agent)
            event["context"]["page"] = {
                "url": f"https://example.com{page}" + ("?utm_source=newsletter&utm_medium=email" if campaign else ""),
                "referrer": referrer if step == 0 else f"https://example.com{rng.choice(PAGES)}",
                "title": page.strip("/") or "home",
            }
            if campaign:
                event["attribution"] = {"utmSource": "newsletter", "utmMedium": "email", "utmCampaign": "launch"}
            yield event
            moment += timedelta(seconds=rng.randint(5, 240))
            if rng.random() < 0.4:
                yield _event(
                    rng,
                    rng.choice(["cta_clicked", "button_clicked", "search_performed"]),
                    moment,
                    anonymous_id,
                    user_id,
                    session_id,
                    user_agent,
                    props={"page": page},
                )
                moment += timedelta(seconds=rng.randint(1, 30))
            if user_id is None and page == "/app" and rng.random() < 0.6:
                user_id = f"user-{rng.getrandbits(32):08x}"
                yield _event(
                    rng,
                    "user_logged_in",
                    moment,
                    anonymous_id,
                    user_id,
                    session_id,
                    user_agent,
                    props={"method": "password"},
                )
            if user_id and page == "/app/jobs" and rng.random() < 0.7:
                yield from _job(rng, moment, anonymous_id, user_id, session_id, user_agent)
        moment += timedelta(minutes=rng.randint(35, 300))  # a pause longer than the 30-minute timeout


def _job(rng, moment, anonymous_id, user_id, session_id, user_agent) -> Iterator[dict]:
    job_id = f"job_{rng.getrandbits(48):012x}"
    yield _event(
        rng,
        "job_created",
        moment,
        anonymous_id,
        user_id,
        session_id,
        user_agent,
        props={"job_id": job_id, "file_size": rng.randint(10_000, 90_000_000)},
        source="api",
    )
    started = moment + timedelta(seconds=rng.randint(1, 60))
    yield _event(
        rng,
        "job_started",
        started,
        anonymous_id,
        user_id,
        session_id,
        user_agent,
        props={"job_id": job_id},
        source="system",
    )
    finished = started + timedelta(seconds=rng.randint(20, 900))
    if rng.random() < 0.85:
        yield _event(
            rng,
            "job_completed",
            finished,
            anonymous_id,
            user_id,
            session_id,
            user_agent,
            props={"job_id": job_id, "word_count": rng.randint(100, 20_000)},
            source="system",
        )
    else:
        yield _event(
            rng,
            "job_failed",
            finished,
            anonymous_id,
            user_id,
            session_id,
            user_agent,
            props={"job_id": job_id, "error_message": "audio could not be decoded", "failure_stage": "decode"},
            source="system",
        )


def _event(rng, event_type, moment, anonymous_id, user_id, session_id, user_agent, props=None, source="web") -> dict:
    event: dict = {
        "eventType": event_type,
        "eventId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "source": source,
        "anonymousId": anonymous_id,
        "occurredAt": _iso(moment),
        "props": props or {},
        "context": {"userAgent": user_agent, "locale": "en-GB"},
    }
    if user_id:
        event["userId"] = user_id
    if session_id:
        event["sessionId"] = session_id
    if event_type.startswith("job_"):
        event["entityType"] = "job"
        event["entityId"] = event["props"]["job_id"]
    return event
