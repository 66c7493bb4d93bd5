"""One batch through the rules, on small hand-made frames (no database)."""

from datetime import UTC, datetime, timedelta

import polars as pl
from polars.testing import assert_frame_equal

from orchestration.processing.batch import process
from orchestration.processing.validate import Limits
from tributary import contract, tracking_plan

RECEIVED = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def raw(*rows: dict) -> pl.DataFrame:
    base = {"tenant_id": "t1", "received_at": int(RECEIVED.timestamp() * 1_000_000), "wire_format": "native"}
    return pl.DataFrame([{**base, **row} for row in rows], schema=contract.RAW_SCHEMA)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def run(frame: pl.DataFrame):
    return process(frame, tracking_plan.load(), Limits(max_age_days=30, max_clock_skew_seconds=300))


def test_every_landed_row_ends_in_exactly_one_outcome():
    outcome = run(
        raw(
            {"landing_id": 1, "event_id": "a", "event_type": "page_view", "occurred_at": iso(RECEIVED)},
            {"landing_id": 2, "event_id": "a", "event_type": "page_view", "occurred_at": iso(RECEIVED)},
            {"landing_id": 3, "event_id": "b", "event_type": None},
            {"landing_id": 4, "event_id": "c", "event_type": "x", "occurred_at": iso(RECEIVED - timedelta(days=31))},
            {"landing_id": 5, "event_id": "d", "event_type": "x", "occurred_at": iso(RECEIVED + timedelta(minutes=6))},
            {"landing_id": 6, "event_id": "e", "event_type": "x", "occurred_at": iso(RECEIVED + timedelta(minutes=4))},
            {"landing_id": 7, "event_id": "f", "event_type": "x", "occurred_at": "next tuesday"},
        )
    )
    assert outcome.claimed == 7
    assert outcome.events["landing_id"].to_list() == [1, 6]
    assert_frame_equal(
        outcome.rejects.select("landing_id", "reason_code"),
        pl.DataFrame(
            {
                "landing_id": [3, 4, 5, 7],
                "reason_code": ["missing_event_type", "too_old", "in_future", "invalid_timestamp"],
            }
        ),
    )
    assert_frame_equal(
        outcome.duplicates,
        pl.DataFrame({"landing_id": [2], "rule": ["event_id"], "duplicate_of_event_id": ["a"]}),
    )


def test_the_first_landed_copy_wins_whatever_the_row_order():
    outcome = run(
        raw(
            {"landing_id": 9, "event_id": "a", "event_type": "x"},
            {"landing_id": 4, "event_id": "a", "event_type": "x"},
            {"landing_id": 7, "event_id": "a", "event_type": "x"},
        )
    )
    assert outcome.events["landing_id"].to_list() == [4]
    assert sorted(outcome.duplicates["landing_id"].to_list()) == [7, 9]


def test_the_same_event_id_in_two_tenants_is_not_a_duplicate():
    outcome = run(
        raw(
            {"landing_id": 1, "event_id": "a", "event_type": "x"},
            {"landing_id": 2, "event_id": "a", "event_type": "x", "tenant_id": "t2"},
        )
    )
    assert outcome.events.height == 2 and outcome.duplicates.height == 0


def test_an_invalid_copy_does_not_hide_a_valid_one():
    outcome = run(
        raw(
            {"landing_id": 1, "event_id": "a", "event_type": "x", "occurred_at": "garbage"},
            {"landing_id": 2, "event_id": "a", "event_type": "x"},
        )
    )
    assert outcome.events["landing_id"].to_list() == [2]
    assert outcome.rejects["landing_id"].to_list() == [1]


def test_events_get_a_category_and_defaults():
    outcome = run(
        raw(
            {
                "landing_id": 1,
                "event_id": "a",
                "event_type": "page_view",
                "page_url": "https://example.com/docs/start?x=1#top",
                "header_user_agent": "curl/8",
            },
            {"landing_id": 2, "event_id": "b", "event_type": "my_own_thing", "source": "api", "props": '{"k": 1}'},
        )
    )
    rows = outcome.events.select("event_type", "category", "source", "page_path", "user_agent", "props", "occurred_at")
    assert rows.row(0) == ("page_viewed", "navigation", "web", "/docs/start", "curl/8", "{}", RECEIVED)
    assert rows.row(1) == ("my_own_thing", "custom", "api", None, None, '{"k": 1}', RECEIVED)
