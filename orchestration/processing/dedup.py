"""De-duplication inside one batch; across batches the warehouse's unique key decides.

The rule: within a tenant, the first-landed copy of an eventId (lowest landing id)
is the event, every later copy is a duplicate of it. Inside a batch that is a
window over (tenant_id, event_id); against earlier batches it is the primary key
of warehouse.events (see orchestration/batches.py), so the result does not depend
on how the backlog was cut into batches.
"""

from __future__ import annotations

import polars as pl

EVENT_ID = "event_id"


def duplicate_rule() -> pl.Expr:
    """The rule a row breaks as a later copy of an event in the same batch, else null."""
    first = pl.col("landing_id").min().over("tenant_id", "event_id")
    return pl.when(pl.col("landing_id") != first).then(pl.lit(EVENT_ID)).alias("duplicate_rule")
