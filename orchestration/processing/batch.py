"""One batch through the rules: landed rows in, events / rejects / duplicates out. Pure Polars."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from orchestration.processing.dedup import duplicate_rule
from orchestration.processing.validate import Limits, rejection
from tributary import contract
from tributary.tracking_plan import CUSTOM, TrackingPlan


@dataclass(frozen=True)
class Outcome:
    events: pl.DataFrame
    """Canonical columns plus `category`: the batch's candidate warehouse rows."""
    rejects: pl.DataFrame
    """landing_id, reason_code, reason_detail."""
    duplicates: pl.DataFrame
    """landing_id, rule, duplicate_of_event_id: later copies within this batch."""

    @property
    def claimed(self) -> int:
        return self.events.height + self.rejects.height + self.duplicates.height


def process(raw: pl.DataFrame, plan: TrackingPlan, limits: Limits) -> Outcome:
    """Normalise, validate and de-duplicate one batch of landed rows (contract.RAW_SCHEMA)."""
    reason_code, reason_detail = rejection(limits)
    judged = (
        contract.canonical(raw.lazy(), plan.aliases)
        .with_columns(reason_code, reason_detail)
        .with_columns(
            pl.col("event_type")
            .replace_strict(plan.categories, default=CUSTOM, return_dtype=pl.String)
            .alias("category")
        )
        .collect()
    )
    valid = judged.filter(pl.col("reason_code").is_null()).with_columns(duplicate_rule())
    rejects = judged.filter(pl.col("reason_code").is_not_null()).select("landing_id", "reason_code", "reason_detail")
    duplicates = valid.filter(pl.col("duplicate_rule").is_not_null()).select(
        "landing_id", pl.col("duplicate_rule").alias("rule"), pl.col("event_id").alias("duplicate_of_event_id")
    )
    events = valid.filter(pl.col("duplicate_rule").is_null()).drop(
        "duplicate_rule", "reason_code", "reason_detail", "unparsed_timestamp"
    )
    return Outcome(events=events, rejects=rejects, duplicates=duplicates)
