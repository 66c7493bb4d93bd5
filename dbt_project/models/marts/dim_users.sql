{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='user_key',
        on_schema_change='sync_all_columns',
        indexes=[
            {'columns': ['user_key'], 'unique': true},
            {'columns': ['tenant_id', 'user_id']},
        ],
        pre_hook="{{ delete_incremental_scope(['tenant_id', 'user_id'], dim_users_scope) }}",
    )
}}

with

-- Every event attributed to the user, their own or stitched from an anonymous id.
events as (

    select * from {{ ref('int_events_sessionized') }}
    where stitched_user_id is not null
        and {{ in_incremental_scope(['tenant_id', 'stitched_user_id'], dim_users_scope) }}

),

sessions as (

    select * from {{ ref('fct_sessions') }}
    where user_id is not null
        and {{ in_incremental_scope(['tenant_id', 'user_id'], dim_users_scope) }}

),

users as (

    select
        tenant_id,
        stitched_user_id as user_id,
        min(occurred_at) as first_seen_at,
        max(occurred_at) as last_seen_at,
        array_agg(distinct anonymous_id order by anonymous_id)
            filter (where anonymous_id is not null) as anonymous_ids,
        count(*) as events,
        count(*) filter (
            where event_type in {{ sql_list(page_view_event_types()) }}
        ) as page_views,
        max(occurred_at) filter (
            where event_type = 'user_identified' and user_id = stitched_user_id
        ) as identified_at

    from events
    group by tenant_id, stitched_user_id

),

-- Traits accumulate as Segment's do: each trait keeps the value of the latest
-- identify that set it.
trait_values as (

    select distinct on (events.tenant_id, events.user_id, traits.key)
        events.tenant_id,
        events.user_id,
        traits.key,
        traits.value

    from events
    cross join lateral jsonb_each(events.props) as traits
    where events.event_type = 'user_identified'
        and events.user_id = events.stitched_user_id
    order by events.tenant_id, events.user_id, traits.key, events.occurred_at desc, events.event_id desc

),

traits as (

    select
        tenant_id,
        user_id,
        jsonb_object_agg(key, value) as traits

    from trait_values
    group by tenant_id, user_id

),

user_sessions as (

    select
        tenant_id,
        user_id,
        count(*) as sessions

    from sessions
    group by tenant_id, user_id

),

final as (

    select
        {{ surrogate_key(['users.tenant_id', 'users.user_id']) }} as user_key,
        users.tenant_id,
        users.user_id,
        users.first_seen_at,
        users.last_seen_at,
        users.identified_at,
        coalesce(traits.traits, '{}'::jsonb) as traits,
        coalesce(users.anonymous_ids, array[]::text[]) as anonymous_ids,
        users.events,
        coalesce(user_sessions.sessions, 0) as sessions,
        users.page_views

    from users
    left join traits
        on users.tenant_id = traits.tenant_id
        and users.user_id = traits.user_id
    left join user_sessions
        on users.tenant_id = user_sessions.tenant_id
        and users.user_id = user_sessions.user_id

)

select * from final
