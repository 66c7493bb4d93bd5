"""One batch through the rules: landed rows in, events / rejects / duplicates out. Pure Polars."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from orchestration.processing import ENGINE, dedup
from orchestration.processing.enrich import Enrichment, enrich
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
    keys: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=dedup.KEY_SCHEMA))
    """De-duplication keys of every valid event (dedup.KEY_SCHEMA): the writer judges them
    against earlier batches' keys, and keeps them for later batches."""

    @property
    def claimed(self) -> int:
        return self.events.height + self.rejects.height + self.duplicates.height


def process(raw: pl.DataFrame, plan: TrackingPlan, limits: Limits, enrichment: Enrichment | None = None) -> Outcome:
    """Normalise, validate, enrich and de-duplicate one batch of landed rows (contract.RAW_SCHEMA)."""
    reason_code, reason_detail = rejection(limits, plan)
    judged = (
        contract.canonical(raw.lazy(), plan.aliases)
        .with_columns(reason_code, reason_detail)
        .with_columns(
            pl.col("event_type")
            .replace_strict(plan.categories, default=CUSTOM, return_dtype=pl.String)
            .alias("category")
        )
        .collect(engine=ENGINE)
    )
    # Enriched before de-duplication, so every valid copy carries the same columns; the
    # full IP is dropped here and never reaches the warehouse.
    valid = enrich(judged.filter(pl.col("reason_code").is_null()), enrichment)
    rejects = judged.filter(pl.col("reason_code").is_not_null()).select("landing_id", "reason_code", "reason_detail")
    keys = dedup.keys(valid, plan)
    verdicts = dedup.judge(keys.lazy()).collect(engine=ENGINE)
    duplicates = verdicts.select("landing_id", "rule", "duplicate_of_event_id")
    events = valid.join(verdicts, on="landing_id", how="anti", maintain_order="left").drop(
        "reason_code", "reason_detail", "unparsed_timestamp"
    )
    return Outcome(events=events, rejects=rejects, duplicates=duplicates, keys=keys)
