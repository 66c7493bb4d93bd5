"""The processing asset: landed events → warehouse events, rejects and duplicates, batch by batch."""

import dagster as dg

from orchestration.batches import BatchResult, drain
from orchestration.processing.enrich import Enrichment
from orchestration.processing.validate import Limits
from orchestration.resources import TributaryDatabase
from tributary import tracking_plan

LANDING = dg.AssetKey(["landing", "events_raw"])
EVENTS = dg.AssetKey(["warehouse", "events"])
REJECTS = dg.AssetKey(["warehouse", "event_rejects"])
DUPLICATES = dg.AssetKey(["warehouse", "event_duplicates"])

landing_events_raw = dg.AssetSpec(
    LANDING,
    description="Events exactly as the ingest API received them (append-only). Written by the API, not by Dagster.",
    group_name="landing",
    kinds={"postgres"},
)


class ProcessingConfig(dg.Config):
    batch_size: int | None = None
    """Landed rows per batch (one transaction each); default TRIBUTARY_BATCH_SIZE."""


def _batch_metadata(results: list[BatchResult]) -> dict[str, dg.MetadataValue]:
    """Figures of one run's batches, as metadata the Dagster UI plots over time."""
    claimed = sum(r.claimed for r in results)
    seconds = sum(r.seconds for r in results)
    rejects_by_reason: dict[str, int] = {}
    duplicates_by_rule: dict[str, int] = {}
    for result in results:
        for reason, count in result.rejects_by_reason.items():
            rejects_by_reason[reason] = rejects_by_reason.get(reason, 0) + count
        for rule, count in result.duplicates_by_rule.items():
            duplicates_by_rule[rule] = duplicates_by_rule.get(rule, 0) + count
    return {
        "batches": dg.MetadataValue.int(len(results)),
        "claimed": dg.MetadataValue.int(claimed),
        "events": dg.MetadataValue.int(sum(r.events for r in results)),
        "rejects": dg.MetadataValue.int(sum(r.rejects for r in results)),
        "duplicates": dg.MetadataValue.int(sum(r.duplicates for r in results)),
        # Earlier-processed events moved to duplicates because an earlier-landed copy came later.
        "reclassified": dg.MetadataValue.int(sum(r.reclassified for r in results)),
        "events_per_s": dg.MetadataValue.float(round(claimed / seconds, 1) if seconds else 0.0),
        "rejects_by_reason": dg.MetadataValue.json(rejects_by_reason),
        "duplicates_by_rule": dg.MetadataValue.json(duplicates_by_rule),
    }


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            EVENTS, deps=[LANDING], description="One typed row per unique event.", kinds={"polars", "postgres"}
        ),
        dg.AssetSpec(
            REJECTS,
            deps=[LANDING],
            description="Landed events that broke a rule, with the reason.",
            kinds={"polars", "postgres"},
        ),
        dg.AssetSpec(
            DUPLICATES,
            deps=[LANDING],
            description="Re-sent copies of events, with the rule that matched.",
            kinds={"polars", "postgres"},
        ),
    ],
    group_name="warehouse",
    can_subset=False,
)
def process_landed_events(context: dg.AssetExecutionContext, config: ProcessingConfig, database: TributaryDatabase):
    """Claim the backlog batch by batch (SKIP LOCKED), run the rules in Polars, commit each batch."""
    settings = database.settings
    size = config.batch_size or settings.batch_size
    limits = Limits(
        settings.max_event_age_days,
        settings.max_clock_skew_seconds,
        settings.max_string_chars,
        settings.max_props_bytes,
    )
    enrichment = Enrichment(geoip_db=settings.geoip_db)
    results: list[BatchResult] = []
    workers = settings.processing_workers
    for result in drain(database.connect, tracking_plan.load(), limits, size, workers, context.run_id, enrichment):
        results.append(result)
        context.log.info(
            f"batch {result.batch_id}: {result.claimed} claimed → {result.events} events, "
            f"{result.rejects} rejects, {result.duplicates} duplicates ({result.events_per_s:,.0f} events/s)"
        )
    metadata = _batch_metadata(results)
    yield dg.MaterializeResult(asset_key=EVENTS, metadata=metadata)
    yield dg.MaterializeResult(
        asset_key=REJECTS, metadata={"rejects": metadata["rejects"], "rejects_by_reason": metadata["rejects_by_reason"]}
    )
    yield dg.MaterializeResult(
        asset_key=DUPLICATES,
        metadata={"duplicates": metadata["duplicates"], "duplicates_by_rule": metadata["duplicates_by_rule"]},
    )
