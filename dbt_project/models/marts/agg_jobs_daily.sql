{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['tenant_id', 'activity_date', 'queue'],
        on_schema_change='sync_all_columns',
        indexes=[{'columns': ['tenant_id', 'activity_date', 'queue'], 'unique': true}],
        pre_hook="{{ delete_incremental_scope(['tenant_id', 'activity_date'], agg_jobs_daily_scope) }}",
    )
}}

-- depends_on: {{ ref('stg_tributary__events') }}
-- (the incremental scope reads the days of the jobs' events)

{% set scope = incremental_scope() %}

with

{% if not scope.full -%}
-- Incremental: the days of the jobs the unread changes touch, recomputed whole.
days_in_scope as (

    {{ agg_jobs_daily_scope(unread_changes(scope)) }}

),

{% endif -%}

jobs as (

    select
        *,
        cast((created_at at time zone 'UTC') as date) as created_date,
        cast((started_at at time zone 'UTC') as date) as started_date,
        cast((finished_at at time zone 'UTC') as date) as finished_date

    from {{ ref('fct_jobs') }}

),

-- A job counts on up to three days: when it was created, when it started, and when
-- it reached its final status (completed or failed).
job_days as (

    select tenant_id, created_date as activity_date, queue, 'created' as milestone, job_key, null::double precision as run_seconds, null::numeric as run_seconds_exact
    from jobs where created_date is not null

    union all

    select tenant_id, started_date, queue, 'started', job_key, null, null
    from jobs where started_date is not null

    union all

    select
        tenant_id, finished_date, queue, status, job_key, run_seconds,
        extract(epoch from (finished_at - started_at))
    from jobs where finished_date is not null

),

in_scope as (

    select * from job_days
    {%- if not scope.full %}
    where (tenant_id, activity_date) in (select * from days_in_scope)
    {%- endif %}

),

final as (

    select
        tenant_id,
        activity_date,
        queue,
        count(*) filter (where milestone = 'created') as jobs_created,
        count(*) filter (where milestone = 'started') as jobs_started,
        count(*) filter (where milestone = 'completed') as jobs_completed,
        count(*) filter (where milestone = 'failed') as jobs_failed,
        cast(count(*) filter (where milestone = 'failed') as double precision)
            / nullif(count(*) filter (where milestone in ('completed', 'failed')), 0) as failure_rate,
        -- numeric, exact: a float average would depend on the order rows are read in
        cast(avg(run_seconds_exact) as double precision) as mean_run_seconds,
        percentile_cont(0.5) within group (order by run_seconds) as p50_run_seconds,
        percentile_cont(0.95) within group (order by run_seconds) as p95_run_seconds

    from in_scope
    group by tenant_id, activity_date, queue

)

select * from final
