"""The dbt project as Dagster assets: staging, intermediate and marts, downstream of the warehouse."""

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from orchestration.dbt_cli import marts_build_lock
from orchestration.resources import TributaryDatabase, dbt_project


@dbt_assets(manifest=dbt_project().manifest_path, project=dbt_project())
def tributary_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, database: TributaryDatabase):
    """Build and test the marts (`dbt build`): models, data tests and unit tests.

    The models are incremental (dbt_project/macros/incremental.sql): one build at a time,
    so a run waits here while another run, or the nightly verification, builds."""
    with marts_build_lock(database.settings):
        yield from dbt.cli(["build"], context=context).stream()
