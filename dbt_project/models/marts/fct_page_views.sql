{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='page_view_key',
        on_schema_change='sync_all_columns',
        indexes=[
            {'columns': ['page_view_key'], 'unique': true},
            {'columns': ['session_key']},
            {'columns': ['tenant_id', 'viewed_at']},
        ],
        pre_hook="{{ delete_incremental_scope(['page_view_key'], fct_page_views_scope) }}",
    )
}}

{% set scope = incremental_scope() %}

with

-- Whole sessions, so the next event and the neighbouring pages are known; page views
-- without a session stand alone.
sessionized as (

    select * from {{ ref('int_events_sessionized') }} as events
    {%- if not scope.full %}
    where events.session_key in ({{ fct_sessions_scope(unread_changes(scope)) }})
        or (
            events.session_key is null
            and {{ surrogate_key(['events.tenant_id', 'events.event_id']) }}
                in ({{ fct_page_views_scope(unread_changes(scope)) }})
        )
    {%- endif %}

),

with_next_event as (

    select
        *,
        lead(occurred_at) over (
            partition by session_key order by session_event_number
        ) as next_event_at

    from sessionized

),

page_views as (

    select * from with_next_event
    where event_type in {{ sql_list(page_view_event_types()) }}

),

neighbours as (

    select
        *,
        case
            when session_key is not null
                then row_number() over (partition by session_key order by session_event_number)
        end as page_view_number,
        case
            when session_key is not null
                then lag(page_path) over (partition by session_key order by session_event_number)
        end as previous_page_path,
        case
            when session_key is not null
                then lead(page_path) over (partition by session_key order by session_event_number)
        end as next_page_path,
        count(*) over (partition by session_key) as session_page_views

    from page_views

),

final as (

    select
        {{ surrogate_key(['tenant_id', 'event_id']) }} as page_view_key,
        tenant_id,
        event_id,
        session_key,
        stitched_user_id as user_id,
        anonymous_id,
        event_type,
        occurred_at as viewed_at,
        page_view_number,
        page_url,
        page_path,
        page_title,
        page_referrer,
        previous_page_path,
        next_page_path,
        case
            when session_key is not null then {{ seconds_between('occurred_at', 'next_event_at') }}
        end as time_on_page_seconds,
        coalesce(session_key is not null and page_view_number = session_page_views, false) as is_exit,
        referrer_medium,
        utm_source,
        utm_medium,
        utm_campaign,
        device_type,
        browser,
        os

    from neighbours

)

select * from final
