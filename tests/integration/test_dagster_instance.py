"""The Dagster instance Tributary writes for `make up`: its run history in PostgreSQL, failed runs retried."""

import dagster as dg

from tributary import services


def test_the_instance_keeps_runs_in_postgres_and_retries_a_failed_run(settings):
    home = services.prepare_dagster_home(settings)
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        # The sensor starts runs only for new events: a failed dbt build must not leave
        # the marts stale until the next event lands.
        assert instance.run_retries_enabled
        assert instance.run_retries_max_retries == 2
        assert instance.run_retries_retry_on_asset_or_op_failure
    finally:
        instance.dispose()
