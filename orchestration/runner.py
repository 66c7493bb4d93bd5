"""Run a Dagster job in this process: `tributary pipeline run` takes the same code path as the UI."""

import contextlib
import os
from dataclasses import dataclass

import dagster as dg

from tributary.settings import Settings


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    success: bool
    batches: int
    claimed: int
    events: int
    rejects: int
    duplicates: int
    failed_checks: list[str]


def run_pipeline(
    settings: Settings, batch_size: int | None = None, dbt: bool = True, quiet: bool = False
) -> RunSummary:
    from orchestration.definitions import defs
    from tributary.services import prepare_dagster_home

    os.environ["DAGSTER_HOME"] = str(prepare_dagster_home(settings))
    job = defs.resolve_job_def("process_and_build" if dbt else "process_landed")
    run_config: dict = {"ops": {"process_landed_events": {"config": {"batch_size": batch_size}}}}
    quieted = contextlib.nullcontext()
    run_config["loggers"] = {"console": {"config": {"log_level": "WARNING" if quiet else "INFO"}}}
    if quiet:
        # dagster-dbt echoes dbt's log to stdout; keep it, but in a file.
        log = settings.home / "logs" / "pipeline.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        quieted = contextlib.redirect_stdout(log.open("a"))
    with dg.DagsterInstance.get() as instance, quieted:
        result = job.execute_in_process(instance=instance, run_config=run_config, raise_on_error=False)
        materialized = [
            event.event_specific_data.materialization
            for event in result.all_events
            if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
        ]
        failed_checks = [
            event.event_specific_data.asset_check_key.to_user_string()
            for event in result.all_events
            if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION and not event.event_specific_data.passed
        ]
    figures = next((m.metadata for m in materialized if m.asset_key == dg.AssetKey(["warehouse", "events"])), {})

    def figure(name: str) -> int:
        value = figures.get(name)
        return int(value.value) if value is not None else 0

    return RunSummary(
        run_id=result.run_id,
        success=result.success,
        batches=figure("batches"),
        claimed=figure("claimed"),
        events=figure("events"),
        rejects=figure("rejects"),
        duplicates=figure("duplicates"),
        failed_checks=failed_checks,
    )
