"""The nightly check that the incremental marts equal a full refresh."""

import dagster as dg

from orchestration.dbt_cli import marts_build_lock, run_dbt
from orchestration.resources import TributaryDatabase
from orchestration.verify_marts import Verification, verify_marts

ATTEMPTS = 3


class VerifyMartsConfig(dg.Config):
    days: int = 7
    """Compare the mart rows about the last `days` days (older rows may rightly differ once
    retention has deleted their events)."""
    build_incremental_first: bool = True
    """Bring the incremental marts up to date with the warehouse before comparing."""


def _batches(database: TributaryDatabase) -> int:
    with database.connect() as conn:
        return conn.execute("select count(*) from ops.batches").fetchone()[0]


def verification_metadata(verification: Verification) -> dict[str, dg.MetadataValue]:
    return {
        "equal": dg.MetadataValue.bool(verification.equal),
        "days": dg.MetadataValue.int(verification.days or 0),
        "differing_tables": dg.MetadataValue.json([t.table for t in verification.differing]),
        "tables": dg.MetadataValue.json(
            {
                t.table: {
                    "incremental_rows": t.incremental_rows,
                    "full_refresh_rows": t.full_refresh_rows,
                    "only_in_incremental": t.only_in_incremental,
                    "only_in_full_refresh": t.only_in_full_refresh,
                }
                for t in verification.tables
            }
        ),
    }


@dg.op(
    description="Build the marts incrementally, then from scratch into verify_* schemas, and compare them row "
    "for row; fails, naming the tables and row counts, when they differ."
)
def incremental_marts_equal_a_full_refresh(
    context: dg.OpExecutionContext, config: VerifyMartsConfig, database: TributaryDatabase
) -> dg.Output[bool]:
    settings = database.settings
    # Under the build lock no other dbt build runs; processing still may, and a batch that
    # commits between the two builds shows on one side only: then compare again.
    with marts_build_lock(settings):
        for attempt in range(1, ATTEMPTS + 1):
            batches = _batches(database)
            if config.build_incremental_first:
                built = run_dbt(settings, ["run"])
                if built.returncode != 0:
                    raise dg.Failure(
                        "the incremental build failed", metadata={"dbt": dg.MetadataValue.md(built.stdout[-4000:])}
                    )
            verification = verify_marts(settings, config.days)
            quiet = _batches(database) == batches
            context.log.info(f"attempt {attempt}: {verification.summary()}")
            if verification.equal or quiet:
                break
    metadata = verification_metadata(verification)
    if not verification.equal:
        busy = "" if quiet else f" (events were processed during each of {ATTEMPTS} attempts: try again when quiet)"
        raise dg.Failure(description=verification.summary() + busy, metadata=metadata)
    return dg.Output(True, metadata=metadata)


@dg.job(name="verify_marts", description="Check that the incremental marts equal a full refresh (nightly).")
def verify_marts_job():
    incremental_marts_equal_a_full_refresh()


nightly_marts_verification = dg.ScheduleDefinition(
    name="nightly_marts_verification",
    job=verify_marts_job,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="At 03:30 UTC, check that the incremental marts equal a full refresh of the last 7 days.",
)
