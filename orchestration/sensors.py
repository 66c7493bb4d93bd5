"""The backlog sensor: a run whenever landed events wait, never two runs at once."""

import dagster as dg

from orchestration.batches import backlog
from orchestration.resources import TributaryDatabase

_IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def backlog_sensor(job, interval_seconds: int) -> dg.SensorDefinition:
    @dg.sensor(
        job=job,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Starts a run when landing.events_raw holds unprocessed events and no run is in flight.",
    )
    def landing_backlog_sensor(context: dg.SensorEvaluationContext, database: TributaryDatabase):
        # Overlapping runs would be safe for processing (SKIP LOCKED) but would race
        # each other's dbt builds; the next tick picks up whatever arrived meanwhile.
        in_flight = context.instance.get_run_records(dg.RunsFilter(job_name=job.name, statuses=_IN_FLIGHT), limit=1)
        if in_flight:
            return dg.SkipReason(f"run {in_flight[0].dagster_run.run_id} is still processing")
        with database.connect() as conn:
            waiting = backlog(conn, at_most=1_000_000)
        if not waiting:
            return dg.SkipReason("no landed events are waiting")
        return dg.RunRequest(tags={"tributary/backlog": str(waiting)})

    return landing_backlog_sensor
