with

events as (

    select * from {{ ref('stg_tributary__events') }}

),

sessions as (

    select * from {{ ref('fct_sessions') }}

),

jobs as (

    select * from {{ ref('fct_jobs') }}

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
        avg(duration_seconds) as mean_session_seconds

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
        cast((
            case status when 'completed' then completed_at else failed_at end
            at time zone 'UTC'
        ) as date) as activity_date,
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
