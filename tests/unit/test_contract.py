"""The canonical contract: timestamps, Segment mapping, clock correction, the tracking plan."""

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from polars.testing import assert_series_equal

from tributary import contract, tracking_plan


def parse(values: list[str | None]) -> list[datetime | None]:
    return (
        pl.DataFrame({"t": values}, schema={"t": pl.String})
        .select(contract.parse_timestamp(pl.col("t")))["t"]
        .to_list()
    )


def test_timestamps_parse_in_every_form_clients_send():
    expected = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
    assert (
        parse(
            [
                "2026-11-25T17:00:00Z",
                "2026-11-25T18:00:00+01:00",
                "2026-11-25T17:00:00.000+0000",
                "2026-11-25 17:00:00",
                "2026-11-25T17:00:00",
                str(int(expected.timestamp() * 1000)),
            ]
        )
        == [expected] * 6
    )
    assert parse(["2026-11-25T17:00:00.123456Z"])[0] == expected + timedelta(microseconds=123456)
    assert parse(["2026-11-25"])[0] == datetime(2026, 11, 25, tzinfo=UTC)


def test_unreadable_timestamps_are_null_not_errors():
    assert parse(["yesterday", "2026-13-45T00:00:00Z", "", None]) == [None] * 4


def test_timestamps_past_the_year_9999_are_unreadable():
    """PostgreSQL cannot read such a year back from text: the event is rejected as an
    invalid timestamp instead of failing its whole batch (the API's fuzzer sent one)."""
    assert parse(["+22040-02-05T01:12:11.771Z", "22040-02-05T01:12:11Z", "999999999999999"]) == [None] * 3
    assert parse(["9999-12-31T23:59:59Z"]) == [datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)]


def test_the_client_clock_is_corrected_by_the_delay_it_measured():
    received = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    frame = pl.DataFrame(
        {
            # the client's clock is 3 hours slow; it says the event happened 10 s before sending
            "client": [received - timedelta(hours=3, seconds=10), received - timedelta(hours=3), None],
            "sent": [received - timedelta(hours=3), None, None],
            "received": [received] * 3,
        }
    )
    corrected = frame.select(
        contract.corrected_occurred_at(pl.col("client"), pl.col("sent"), pl.col("received")).alias("t")
    )["t"]
    assert corrected.to_list() == [received - timedelta(seconds=10), received - timedelta(hours=3), received]


def test_segment_call_types_become_event_types_and_aliases_resolve():
    frame = pl.DataFrame(
        {
            "wire_format": ["segment"] * 5 + ["native"] * 3,
            "call_type": ["page", "screen", "identify", "track", "track", None, None, None],
            "event_type": [None, None, None, "Order Completed", "", "page_view", "  ", "login_successful"],
        }
    )
    result = frame.select(contract.event_type(tracking_plan.load().aliases))["event_type"]
    assert_series_equal(
        result,
        pl.Series(
            "event_type",
            [
                "page_viewed",
                "screen_viewed",
                "user_identified",
                "Order Completed",
                None,
                "page_viewed",
                None,
                "user_logged_in",
            ],
        ),
    )


def test_every_raw_field_is_extracted_per_wire_format():
    sql = contract.extraction_sql(next(f for f in contract.RAW_FIELDS if f.name == "event_id"))
    assert (
        sql == "case r.wire_format when 'segment' then r.payload #>> '{messageId}' else r.payload #>> '{eventId}' end"
    )
    props = contract.extraction_sql(next(f for f in contract.RAW_FIELDS if f.name == "props"))
    assert "jsonb_typeof" in props and "'{traits}'" in props


def test_the_tracking_plan_holds_the_catalogue():
    plan = tracking_plan.load()
    assert plan.canonical("page_view") == "page_viewed"
    assert plan.category("error") == "system"
    assert plan.category("something_new") == tracking_plan.CUSTOM
    assert plan.types["payout_completed"].required == ("amount_cents", "payment_method")
    assert len(plan.types) >= 90


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("categories: [a, b]", "mapping of category"),
        ("categories:\n  user:\n    a: {required: yes}\n", "user.a.required"),
        ("categories:\n  user:\n    a: {colour: red}\n", "user.a: options"),
        ("categories:\n  user:\n    a: {}\n  other:\n    a: {}\n", "other.a: defined twice"),
        ("categories:\n  user:\n    a: {aliases: [b]}\n    b: {}\n", "b"),
        ("categories: {\n", "not valid YAML"),
    ],
)
def test_a_broken_plan_fails_loudly_naming_the_entry(text: str, message: str):
    with pytest.raises(tracking_plan.PlanError, match=message):
        tracking_plan.parse(text)


def test_uuids_are_stored_in_one_spelling_and_other_ids_as_sent():
    frame = pl.DataFrame(
        {
            "id": [
                "0F8FAD5B-D9CB-469F-A165-70867728950E",
                "0f8fad5bd9cb469fa16570867728950e",
                "0f8fad5b-d9cb-469f-a165-70867728950e",
                "ajs-next-ABC123",
                None,
            ]
        }
    )
    assert frame.select(contract.canonical_uuid(pl.col("id")))["id"].to_list() == [
        "0f8fad5b-d9cb-469f-a165-70867728950e"
    ] * 3 + ["ajs-next-ABC123", None]
