"""Everything Dagster loads, assembled here and nowhere else (no logic)."""

import dagster as dg

from orchestration.assets.dbt import tributary_dbt_models
from orchestration.assets.processing import landing_events_raw, process_landed_events
from orchestration.checks import (
    backlog_is_fresh,
    duplicate_rate_is_below_threshold,
    landing_is_conserved,
    reject_rate_is_below_threshold,
)
from orchestration.resources import TributaryDatabase, dbt_resource
from orchestration.schedules import nightly_marts_verification, verify_marts_job
from orchestration.sensors import backlog_sensor
from tributary.settings import get_settings

process_landed = dg.define_asset_job(
    "process_landed",
    selection=dg.AssetSelection.assets(process_landed_events),
    description="Process the landing backlog into the warehouse (no dbt).",
    executor_def=dg.in_process_executor,
)
process_and_build = dg.define_asset_job(
    "process_and_build",
    selection=dg.AssetSelection.assets(process_landed_events, tributary_dbt_models),
    description="Process the landing backlog, then build and test the marts.",
    # One process for all steps: a process per step cost ~6 s each on 2 cores (README, "Performance").
    executor_def=dg.in_process_executor,
)

defs = dg.Definitions(
    assets=[landing_events_raw, process_landed_events, tributary_dbt_models],
    asset_checks=[
        landing_is_conserved,
        reject_rate_is_below_threshold,
        duplicate_rate_is_below_threshold,
        backlog_is_fresh,
    ],
    jobs=[process_landed, process_and_build, verify_marts_job],
    schedules=[nightly_marts_verification],
    sensors=[backlog_sensor(process_and_build, get_settings().sensor_interval_seconds)],
    resources={"database": TributaryDatabase(), "dbt": dbt_resource()},
)
