{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['tenant_id', 'activity_date'],
        on_schema_change='sync_all_columns',
        indexes=[{'columns': ['tenant_id', 'activity_date'], 'unique': true}],
        pre_hook="{{ delete_incremental_scope(['tenant_id', 'activity_date'], agg_tenant_daily_scope) }}",
    )
}}

{% set scope = incremental_scope() %}

with

{% if not scope.full -%}
-- Incremental: the days the unread changes touch, recomputed whole.
days_in_scope as (

    {{ agg_tenant_daily_scope(unread_changes(scope)) }}

),

{% endif -%}

events as (

    select * from {{ ref('stg_tributary__events') }}
    {%- if not scope.full %}
    where (tenant_id, event_date) in (select * from days_in_scope)
    {%- endif %}

),

sessions as (

    select * from {{ ref('fct_sessions') }}
    {%- if not scope.full %}
    where (tenant_id, cast((started_at at time zone 'UTC') as date)) in (select * from days_in_scope)
    {%- endif %}

),

jobs as (

    select * from {{ ref('fct_jobs') }}
    {%- if not scope.full %}
    where (tenant_id, cast((created_at at time zone 'UTC') as date)) in (select * from days_in_scope)
        or (tenant_id, cast((finished_at at time zone 'UTC') as date)) in (select * from days_in_scope)
    {%- endif %}

),

-- Every session and job is dated by one of its events, so these days are all days.
daily_events as (

    select
        tenant_id,
        event_date as activity_date,
        count(*) as events,
        count(distinct visitor_id) as active_users,
        count(*) filter (
            where event_type in {{ sql_list(page_view_event_types()) }}
        ) as page_views

    from events
    group by 1, 2

),

daily_sessions as (

    select
        tenant_id,
        cast((started_at at time zone 'UTC') as date) as activity_date,
        count(*) as sessions,
        count(*) filter (where is_bounce) as bounced_sessions,
        -- numeric, exact: a float average would depend on the order rows are read in
        cast(avg(extract(epoch from (ended_at - started_at))) as double precision) as mean_session_seconds

    from sessions
    group by 1, 2

),

jobs_created as (

    select
        tenant_id,
        cast((created_at at time zone 'UTC') as date) as activity_date,
        count(*) as jobs_created

    from jobs
    where created_at is not null
    group by 1, 2

),

-- A job counts once, on the day it reached its final status.
jobs_finished as (

    select
        tenant_id,
        cast((finished_at at time zone 'UTC') as date) as activity_date,
        count(*) filter (where status = 'completed') as jobs_completed,
        count(*) filter (where status = 'failed') as jobs_failed

    from jobs
    where status in ('completed', 'failed')
    group by 1, 2

),

final as (

    select
        daily_events.tenant_id,
        daily_events.activity_date,
        daily_events.events,
        daily_events.active_users,
        coalesce(daily_sessions.sessions, 0) as sessions,
        daily_events.page_views,
        cast(daily_sessions.bounced_sessions as double precision)
            / nullif(daily_sessions.sessions, 0) as bounce_rate,
        daily_sessions.mean_session_seconds,
        coalesce(jobs_created.jobs_created, 0) as jobs_created,
        coalesce(jobs_finished.jobs_completed, 0) as jobs_completed,
        coalesce(jobs_finished.jobs_failed, 0) as jobs_failed

    from daily_events
    left join daily_sessions
        on daily_events.tenant_id = daily_sessions.tenant_id
        and daily_events.activity_date = daily_sessions.activity_date
    left join jobs_created
        on daily_events.tenant_id = jobs_created.tenant_id
        and daily_events.activity_date = jobs_created.activity_date
    left join jobs_finished
        on daily_events.tenant_id = jobs_finished.tenant_id
        and daily_events.activity_date = jobs_finished.activity_date

)

select * from final
