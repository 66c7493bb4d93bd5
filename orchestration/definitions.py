"""Everything Dagster loads, assembled here and nowhere else (no logic)."""

import dagster as dg

from orchestration.assets.dbt import tributary_dbt_models
from orchestration.assets.processing import landing_events_raw, process_landed_events
from orchestration.checks import duplicate_rate_is_below_threshold, landing_is_conserved, reject_rate_is_below_threshold
from orchestration.resources import TributaryDatabase, dbt_resource
from orchestration.sensors import backlog_sensor
from tributary.settings import get_settings

process_landed = dg.define_asset_job(
    "process_landed",
    selection=dg.AssetSelection.assets(process_landed_events),
    description="Process the landing backlog into the warehouse (no dbt).",
)
process_and_build = dg.define_asset_job(
    "process_and_build",
    selection=dg.AssetSelection.assets(process_landed_events, tributary_dbt_models),
    description="Process the landing backlog, then build and test the marts.",
)

defs = dg.Definitions(
    assets=[landing_events_raw, process_landed_events, tributary_dbt_models],
    asset_checks=[landing_is_conserved, reject_rate_is_below_threshold, duplicate_rate_is_below_threshold],
    jobs=[process_landed, process_and_build],
    sensors=[backlog_sensor(process_and_build, get_settings().sensor_interval_seconds)],
    resources={"database": TributaryDatabase(), "dbt": dbt_resource()},
)
