"""Validation on small hand-made frames: every reason code, one reason per reject."""

import json
from datetime import UTC, datetime, timedelta

import polars as pl
from polars.testing import assert_frame_equal

from orchestration.processing.batch import process
from orchestration.processing.validate import REASON_CODES, Limits
from tributary import contract, tracking_plan

RECEIVED = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LIMITS = Limits(max_age_days=30, max_clock_skew_seconds=300, max_string_chars=50, max_props_bytes=100)


def raw(*rows: dict) -> pl.DataFrame:
    base = {
        "tenant_id": "t1",
        "received_at": int(RECEIVED.timestamp() * 1_000_000),
        "wire_format": "native",
        "event_type": "page_viewed",
    }
    return pl.DataFrame(
        [{**base, "landing_id": i, "event_id": f"e{i}", **row} for i, row in enumerate(rows, 1)],
        schema=contract.RAW_SCHEMA,
    )


def reasons(*rows: dict) -> pl.DataFrame:
    """landing_id, reason_code of the rejects, in landing order."""
    outcome = process(raw(*rows), tracking_plan.load(), LIMITS)
    assert outcome.claimed == len(rows)
    return outcome.rejects.sort("landing_id").select("landing_id", "reason_code")


def expect(codes: list[str | None]) -> pl.DataFrame:
    return pl.DataFrame(
        {"landing_id": [i for i, c in enumerate(codes, 1) if c], "reason_code": [c for c in codes if c]},
        schema={"landing_id": pl.Int64, "reason_code": pl.String},
    )


def test_every_reason_code_is_given_by_its_rule():
    got = reasons(
        {"event_type": None},
        {"event_id": None},
        {"page_url": "https://shop.example/" + "x" * 50},
        {"occurred_at": "next tuesday"},
        {"occurred_at": (RECEIVED - timedelta(days=31)).isoformat()},
        {"occurred_at": (RECEIVED + timedelta(minutes=6)).isoformat()},
        {"event_type": "made_up", "tracking_plan": "strict"},
        {"event_type": "license_signed", "props": "{}"},
        {},
    )
    assert_frame_equal(got, expect([*REASON_CODES, None]))


def test_oversized_covers_strings_props_and_the_event_type_limit():
    outcome = process(
        raw(
            {"context_user_agent": "Mozilla/" + "9" * 60},
            {"props": json.dumps({"blob": "x" * 100})},
            {"event_type": "t" * 101},
            {"event_type": "t" * 100, "props": json.dumps({"small": 1})},
        ),
        tracking_plan.load(),
        Limits(max_string_chars=200, max_props_bytes=100),
    )
    details = outcome.rejects.sort("landing_id")["reason_detail"].to_list()
    assert outcome.rejects["reason_code"].to_list() == ["oversized"] * 2
    assert details == ["props is 112 bytes of JSON; the limit is 100", "eventType is 101 characters; the limit is 100"]
    short = process(raw({"context_user_agent": "Mozilla/" + "9" * 60}), tracking_plan.load(), LIMITS).rejects
    assert short["reason_detail"].to_list() == ["userAgent is 68 characters; the limit is 50"]


def test_required_props_must_be_present_and_not_null():
    got = reasons(
        {"event_type": "payout_completed", "props": json.dumps({"amount_cents": 100, "payment_method": "card"})},
        {"event_type": "payout_completed", "props": json.dumps({"amount_cents": 100})},
        {"event_type": "payout_completed", "props": json.dumps({"amount_cents": None, "payment_method": "card"})},
        {"event_type": "post_viewed", "props": json.dumps({"nested": {"post_id": "p"}})},
        {"event_type": "post_viewed", "props": json.dumps({"post_id": 0})},
        {"event_type": "asset_viewed", "props": json.dumps({"view_duration_ms": 1200})},
    )
    assert_frame_equal(
        got, expect([None, "missing_required_props", "missing_required_props", "missing_required_props"])
    )
    details = process(raw({"event_type": "post_cta_clicked", "props": "{}"}), tracking_plan.load(), LIMITS).rejects[
        "reason_detail"
    ]
    assert details.to_list() == ["post_cta_clicked requires props: cta_type, cta_url (missing or null)"]


def test_a_job_entity_stands_in_for_props_job_id():
    got = reasons(
        {"event_type": "job_created", "props": json.dumps({"job_id": "j1"})},
        {"event_type": "job_started", "entity_type": "job", "entity_id": "j1"},
        {"event_type": "job_completed"},
        {"event_type": "job_failed", "entity_type": "asset", "entity_id": "a1"},
        {"event_type": "job_failed", "entity_type": "job", "entity_id": ""},
        {"event_type": "job_progress"},
    )
    assert_frame_equal(got, expect([None, None, *["missing_required_props"] * 3, None]))


def test_an_alias_is_held_to_its_canonical_types_rules():
    assert_frame_equal(reasons({"event_type": "page_view", "tracking_plan": "strict"}), expect([None]))


def test_unknown_types_are_kept_as_custom_unless_the_tenants_plan_is_strict():
    outcome = process(
        raw(
            {"event_type": "made_up"},
            {"event_type": "made_up", "tracking_plan": "default"},
            {"event_type": "made_up", "tracking_plan": "strict"},
            {"event_type": "page_viewed", "tracking_plan": "strict"},
        ),
        tracking_plan.load(),
        LIMITS,
    )
    assert outcome.events.sort("landing_id")["category"].to_list() == ["custom", "custom", "navigation"]
    assert_frame_equal(outcome.rejects.select("landing_id", "reason_code"), expect([None, None, "unknown_event_type"]))
    assert "made_up" in outcome.rejects["reason_detail"].item()


def test_the_first_failing_rule_names_the_reject():
    got = reasons(
        {"event_type": "license_signed", "occurred_at": "garbage", "page_url": "x" * 60},
        {
            "event_type": "made_up",
            "tracking_plan": "strict",
            "occurred_at": (RECEIVED + timedelta(hours=1)).isoformat(),
        },
        {"event_type": "license_signed", "tracking_plan": "strict"},
    )
    assert_frame_equal(got, expect(["oversized", "in_future", "missing_required_props"]))
