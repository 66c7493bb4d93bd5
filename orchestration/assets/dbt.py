"""The dbt project as Dagster assets: staging, intermediate and marts, downstream of the warehouse."""

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from orchestration.resources import dbt_project


@dbt_assets(manifest=dbt_project().manifest_path, project=dbt_project())
def tributary_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """Build and test the marts (`dbt build`): models, data tests and unit tests."""
    yield from dbt.cli(["build"], context=context).stream()
