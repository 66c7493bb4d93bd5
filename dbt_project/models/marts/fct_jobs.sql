{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='job_key',
        on_schema_change='sync_all_columns',
        indexes=[
            {'columns': ['job_key'], 'unique': true},
            {'columns': ['tenant_id', 'job_id']},
        ],
        pre_hook="{{ delete_incremental_scope(['tenant_id', 'job_id'], fct_jobs_scope) }}",
    )
}}

-- depends_on: {{ ref('int_events_sessionized') }}
-- (read through the change log: this model must run after it)

with

events as (

    select * from {{ ref('stg_tributary__events') }}

),

job_events as (

    select
        tenant_id,
        {{ job_id('events') }} as job_id,
        event_id,
        event_type,
        -- created → started → completed / failed, to order events with one timestamp
        case event_type
            when 'job_created' then 1
            when 'job_started' then 2
            else 3
        end as lifecycle_step,
        occurred_at,
        props ->> 'queue' as queue,
        props ->> 'error_message' as error_message

    from events
    where event_type in {{ sql_list(job_lifecycle_event_types()) }}
        and {{ in_incremental_scope(['events.tenant_id', job_id('events')], fct_jobs_scope) }}

),

jobs as (

    select
        tenant_id,
        job_id,
        (array_agg(event_type order by occurred_at desc, lifecycle_step desc, event_id desc))[1] as latest_event_type,
        min(occurred_at) filter (where event_type = 'job_created') as created_at,
        min(occurred_at) filter (where event_type = 'job_started') as started_at,
        max(occurred_at) filter (where event_type = 'job_completed') as completed_at,
        max(occurred_at) filter (where event_type = 'job_failed') as failed_at,
        coalesce(
            (array_agg(queue order by occurred_at, lifecycle_step, event_id)
                filter (where queue is not null))[1],
            'default'
        ) as queue,
        (array_agg(error_message order by occurred_at desc, event_id desc)
            filter (where event_type = 'job_failed'))[1] as error_message

    from job_events
    where job_id is not null
    group by tenant_id, job_id

),

statuses as (

    select
        *,
        replace(latest_event_type, 'job_', '') as status,
        case latest_event_type
            when 'job_completed' then completed_at
            when 'job_failed' then failed_at
        end as finished_at

    from jobs

),

final as (

    select
        {{ surrogate_key(['tenant_id', 'job_id']) }} as job_key,
        tenant_id,
        job_id,
        queue,
        status,
        created_at,
        started_at,
        completed_at,
        failed_at,
        finished_at,
        {{ seconds_between('created_at', 'started_at') }} as queue_seconds,
        {{ seconds_between('started_at', 'finished_at') }} as run_seconds,
        {{ seconds_between('created_at', 'finished_at') }} as total_seconds,
        error_message

    from statuses

)

select * from final
