{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='session_key',
        on_schema_change='sync_all_columns',
        indexes=[
            {'columns': ['session_key'], 'unique': true},
            {'columns': ['tenant_id', 'started_at']},
            {'columns': ['tenant_id', 'user_id']},
        ],
        pre_hook="{{ delete_incremental_scope(['session_key'], fct_sessions_scope) }}",
    )
}}

with

sessionized as (

    select * from {{ ref('int_events_sessionized') }}
    where session_key is not null
        and {{ in_incremental_scope(['session_key'], fct_sessions_scope) }}

),

first_events as (

    select
        session_key,
        referrer_medium,
        utm_source,
        utm_medium,
        utm_campaign,
        utm_term,
        utm_content,
        session_source,
        device_type,
        device,
        browser,
        os

    from sessionized
    where session_event_number = 1

),

sessions as (

    select
        session_key,
        tenant_id,
        min(session_id) as session_id,
        -- the latest identity the session shows, its own or stitched
        (array_agg(stitched_user_id order by occurred_at desc, event_id desc)
            filter (where stitched_user_id is not null))[1] as user_id,
        (array_agg(anonymous_id order by occurred_at, event_id)
            filter (where anonymous_id is not null))[1] as anonymous_id,
        min(occurred_at) as started_at,
        max(occurred_at) as ended_at,
        count(*) as events,
        count(*) filter (
            where event_type in {{ sql_list(page_view_event_types()) }}
        ) as page_views,
        count(*) filter (
            where event_type not in {{ sql_list(non_engagement_event_types()) }}
        ) as engagement_events,
        (array_agg(page_path order by occurred_at, event_id)
            filter (where event_type in {{ sql_list(page_view_event_types()) }}))[1] as landing_page,
        (array_agg(page_path order by occurred_at desc, event_id desc)
            filter (where event_type in {{ sql_list(page_view_event_types()) }}))[1] as exit_page

    from sessionized
    group by session_key, tenant_id

),

final as (

    select
        sessions.session_key,
        sessions.tenant_id,
        first_events.session_source,
        sessions.session_id,
        sessions.user_id,
        sessions.anonymous_id,
        sessions.started_at,
        sessions.ended_at,
        {{ seconds_between('sessions.started_at', 'sessions.ended_at') }} as duration_seconds,
        sessions.events,
        sessions.page_views,
        sessions.landing_page,
        sessions.exit_page,
        first_events.referrer_medium,
        first_events.utm_source,
        first_events.utm_medium,
        first_events.utm_campaign,
        first_events.utm_term,
        first_events.utm_content,
        first_events.device_type,
        first_events.device,
        first_events.browser,
        first_events.os,
        sessions.page_views = 1 and sessions.engagement_events = 0 as is_bounce

    from sessions
    inner join first_events
        on sessions.session_key = first_events.session_key

)

select * from final
