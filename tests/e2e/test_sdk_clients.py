"""The real Segment and RudderStack Python SDKs, pointed at the API, land events that processing maps right.

Both clients run in sync mode: each call posts its own one-message batch before returning
and raises if the API did not answer 200, so there is no background thread to race.
What they send (read from the SDKs' source): HTTP Basic with the key as user name and an
empty password; `{"batch": [message], "sentAt": ...}` on /v1/batch, `sentAt` only at the
batch level; Segment's also puts `writeKey` in the body and sends plain JSON, RudderStack's
gzips the body.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from rudderstack.analytics import Client as RudderClient
from segment.analytics import Client as SegmentClient

UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15"
)
COLUMNS = (
    "event_type",
    "user_id",
    "anonymous_id",
    "occurred_at",
    "page_url",
    "page_path",
    "page_referrer",
    "page_title",
    "user_agent",
    "locale",
    "utm_source",
    "utm_campaign",
    "props",
)


def calls(client, prefix: str, at: datetime, page_in_context: bool) -> dict[str, dict]:
    """The same six calls through one SDK; the messages it sent, by name (messageId included)."""
    user, anon = f"{prefix}-user", f"{prefix}-anon"
    page = {
        "url": f"https://shop.example/{prefix}/pricing?utm_source=news&utm_campaign=spring",
        "path": f"/{prefix}/pricing",
        "referrer": "https://www.google.com/",
        "title": "Pricing | Shop",
    }
    page_call = (
        # A browser-made message: the page in context, as analytics.js and RudderStack's JS SDK send it.
        {"context": {"page": page, "userAgent": UA, "locale": "de-DE"}, "properties": {"plan": "pro"}}
        if page_in_context
        # A server-made one: the page in the call's properties.
        else {"context": {"userAgent": UA, "locale": "de-DE"}, "properties": {**page, "plan": "pro"}}
    )
    sent = {
        "track": client.track(
            user_id=user,
            event="Order Completed",
            properties={"total": 30, "currency": "EUR"},
            context={"userAgent": UA, "locale": "en-GB", "campaign": {"source": "news", "name": "spring"}},
            timestamp=at,
            message_id=str(uuid.uuid4()),
        ),
        "page": client.page(anonymous_id=anon, name="Pricing", timestamp=at + timedelta(minutes=1), **page_call),
        "screen": client.screen(
            user_id=user, name="Home", properties={"tab": "feed"}, timestamp=at + timedelta(minutes=2)
        ),
        "identify": client.identify(
            user_id=user,
            anonymous_id=anon,
            traits={"email": f"{prefix}@example.com", "plan": "pro"},
            timestamp=at + timedelta(minutes=3),
        ),
        "group": client.group(
            user_id=user, group_id="acme", traits={"name": "Acme"}, timestamp=at + timedelta(minutes=4)
        ),
        "alias": client.alias(previous_id=anon, user_id=user, timestamp=at + timedelta(minutes=5)),
    }
    for name, (queued, _) in sent.items():
        assert queued, name
    return {name: message for name, (_, message) in sent.items()}


@pytest.fixture(scope="module")
def delivered(api, settings, conn_module, tenant_module, pipeline_run):
    """Six calls through each SDK, then the pipeline (without dbt)."""
    tenant, key = tenant_module
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    segment = SegmentClient(write_key=key, host=api.url, sync_mode=True, max_retries=0, timeout=10)
    rudder = RudderClient(write_key=key, host=api.url, sync_mode=True, max_retries=0, timeout=10)
    sent = {
        "segment": calls(segment, "segment", at, page_in_context=False),
        "rudder": calls(rudder, "rudder", at + timedelta(minutes=10), page_in_context=True),
    }
    run = pipeline_run("--no-dbt")
    assert run.returncode == 0, run.stdout + run.stderr
    rows = conn_module.execute(
        f"select event_id, {', '.join(COLUMNS)} from warehouse.events where tenant_id = %s", (tenant.id,)
    ).fetchall()
    stored = {row[0]: dict(zip(COLUMNS, row[1:], strict=True)) for row in rows}
    return tenant, at, sent, stored


def test_every_sdk_call_lands_in_the_warehouse_under_the_message_id_the_sdk_made(delivered, conn_module):
    tenant, _, sent, stored = delivered

    assert set(stored) == {message["messageId"] for by_call in sent.values() for message in by_call.values()}
    rejects = conn_module.execute("select count(*) from warehouse.event_rejects where tenant_id = %s", (tenant.id,))
    assert rejects.fetchone() == (0,)


@pytest.mark.parametrize("sdk", ["segment", "rudder"])
def test_each_call_type_becomes_its_event_type_with_the_ids_the_sdk_sent(delivered, sdk):
    _, _, sent, stored = delivered
    user, anon = f"{sdk}-user", f"{sdk}-anon"

    got = {name: stored[message["messageId"]] for name, message in sent[sdk].items()}

    assert {name: (row["event_type"], row["user_id"], row["anonymous_id"]) for name, row in got.items()} == {
        "track": ("Order Completed", user, None),
        "page": ("page_viewed", None, anon),
        "screen": ("screen_viewed", user, None),
        "identify": ("user_identified", user, anon),
        "group": ("group_identified", user, None),
        "alias": ("user_aliased", user, anon),  # previousId
    }


@pytest.mark.parametrize("sdk", ["segment", "rudder"])
def test_occurred_at_is_the_timestamp_given_to_the_sdk(delivered, sdk):
    _, at, sent, stored = delivered
    start = at if sdk == "segment" else at + timedelta(minutes=10)
    offsets = {"track": 0, "page": 1, "screen": 2, "identify": 3, "group": 4, "alias": 5}

    for name, message in sent[sdk].items():
        occurred = stored[message["messageId"]]["occurred_at"]
        # Corrected by the batch-level sentAt: off by the request's transit time, no more.
        assert abs(occurred - (start + timedelta(minutes=offsets[name]))) < timedelta(seconds=5), name


@pytest.mark.parametrize("sdk", ["segment", "rudder"])
def test_a_page_call_carries_its_page_user_agent_and_locale_from_context_or_properties(delivered, sdk):
    _, _, sent, stored = delivered

    page = stored[sent[sdk]["page"]["messageId"]]

    assert (page["page_url"], page["page_path"], page["page_referrer"], page["page_title"]) == (
        f"https://shop.example/{sdk}/pricing?utm_source=news&utm_campaign=spring",
        f"/{sdk}/pricing",
        "https://www.google.com/",
        "Pricing | Shop",
    )
    assert (page["user_agent"], page["locale"]) == (UA, "de-DE")
    assert page["props"]["plan"] == "pro"


@pytest.mark.parametrize("sdk", ["segment", "rudder"])
def test_properties_and_traits_become_props_and_the_campaign_becomes_utm(delivered, sdk):
    _, _, sent, stored = delivered
    got = {name: stored[message["messageId"]] for name, message in sent[sdk].items()}

    assert got["track"]["props"] == {"total": 30, "currency": "EUR"}
    assert (got["track"]["utm_source"], got["track"]["utm_campaign"], got["track"]["locale"]) == (
        "news",
        "spring",
        "en-GB",
    )
    assert got["screen"]["props"] == {"tab": "feed"}
    assert got["screen"]["page_title"] == "Home"
    # Segment sends identify traits at the top, RudderStack in context.traits.
    assert got["identify"]["props"] == {"email": f"{sdk}@example.com", "plan": "pro"}
    assert got["group"]["props"] == {"name": "Acme"}


def test_the_write_key_is_stored_nowhere_and_both_sdks_are_seen_in_the_envelope(delivered, conn_module, tenant_module):
    tenant, key = tenant_module

    rows = conn_module.execute(
        "select payload::text, user_agent, wire_format from landing.events_raw where tenant_id = %s", (tenant.id,)
    ).fetchall()

    assert len(rows) == 12
    assert all('"writeKey"' not in payload and key not in payload for payload, _, _ in rows)
    assert {wire_format for _, _, wire_format in rows} == {"segment"}
    assert {user_agent.split("/")[0] for _, user_agent, _ in rows} == {"analytics-python"}
