{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='landing_id',
        on_schema_change='sync_all_columns',
        indexes=[
            {'columns': ['landing_id'], 'unique': true},
            {'columns': ['tenant_id', 'session_partition_id']},
            {'columns': ['tenant_id', 'anonymous_id']},
            {'columns': ['tenant_id', 'stitched_user_id']},
            {'columns': ['session_key']},
        ],
        pre_hook="{{ int_events_prepare_scope() }}",
        post_hook="{{ int_events_log_added() }}",
    )
}}

{%- set timeout_minutes = var('tributary__session_timeout_minutes') -%}
{%- set max_session_seconds = var('tributary__max_session_hours') * 3600 -%}
{% set scope = incremental_scope() %}

with

{% if scope.full %}

events as (

    select * from {{ ref('stg_tributary__events') }}

),

identity_events as (

    select * from events

),

{% else %}

-- Incremental: every event of the partitions the pre-hook put in scope
-- (int_events_scope), so each of their sessions is recomputed whole.
events as (

    select * from {{ ref('stg_tributary__events') }} as events
    where (events.tenant_id, {{ session_source('events') }}, {{ session_partition_id('events') }}) in (
            select tenant_id, session_source, session_partition_id
            from int_events_scope where landing_id is null
        )
        or events.landing_id in (
            select landing_id from int_events_scope where landing_id is not null
        )

),

-- Stitching needs every event of the anonymous ids in scope, in or out of it.
identity_events as (

    select * from {{ ref('stg_tributary__events') }} as events
    where events.user_id is not null
        and (events.tenant_id, events.anonymous_id) in (
            select distinct tenant_id, anonymous_id from events where anonymous_id is not null
        )

),

{% endif %}

-- Stitching: the latest user each anonymous id was seen with, by occurred_at.
identities as (

    select distinct on (tenant_id, anonymous_id)
        tenant_id,
        anonymous_id,
        user_id as identified_user_id

    from identity_events
    where anonymous_id is not null
        and user_id is not null
    order by tenant_id, anonymous_id, occurred_at desc, event_id desc

),

-- A client session id wins; without one, the device's activity is the session:
-- the anonymous id first, because it stays the same across a login (a visit that
-- logs in half way is one session), else the user id (server-side events).
-- Events with none of these have nothing to group on and get no session.
partitioned as (

    select
        events.*,
        coalesce(events.user_id, identities.identified_user_id) as stitched_user_id,
        {{ session_source('events') }} as session_source,
        {{ session_partition_id('events') }} as session_partition_id

    from events
    left join identities
        on events.tenant_id = identities.tenant_id
        and events.anonymous_id = identities.anonymous_id

),

gaps as (

    select
        *,
        lag(occurred_at) over (
            partition by tenant_id, session_source, session_partition_id
            order by occurred_at, event_id
        ) as previous_occurred_at

    from partitioned
    where session_source is not null

),

-- Runs of activity: a client session is one run, whatever its pauses; an inferred
-- one ends after the timeout without an event.
runs as (

    select
        *,
        sum(
            case
                when session_source = 'inferred'
                    and occurred_at - previous_occurred_at > interval '{{ timeout_minutes }} minutes'
                    then 1
                else 0
            end
        ) over (
            partition by tenant_id, session_source, session_partition_id
            order by occurred_at, event_id
            rows between unbounded preceding and current row
        ) as run_number

    from gaps

),

run_starts as (

    select
        *,
        min(occurred_at) over (
            partition by tenant_id, session_source, session_partition_id, run_number
        ) as run_started_at

    from runs

),

-- The 24-hour cut: a run longer than that is split every max_session_hours from
-- its first event, so no session lasts that long. Fixed slices, rather than
-- restarting the clock at each slice's first event, keep this a window function
-- instead of a recursive walk over every event.
slices as (

    select
        *,
        floor(
            extract(epoch from (occurred_at - run_started_at)) / {{ max_session_seconds }}
        ) as slice_number

    from run_starts

),

session_starts as (

    select
        tenant_id,
        event_id,
        session_source,
        session_partition_id,
        min(occurred_at) over (
            partition by tenant_id, session_source, session_partition_id, run_number, slice_number
        ) as session_started_at

    from slices

),

sessions as (

    select
        tenant_id,
        event_id,
        session_started_at,
        {{ surrogate_key([
            'tenant_id',
            'session_source',
            'session_partition_id',
            utc_text('session_started_at'),
        ]) }} as session_key

    from session_starts

),

final as (

    select
        partitioned.*,
        sessions.session_key,
        sessions.session_started_at,
        case
            when sessions.session_key is not null
                then row_number() over (
                    partition by sessions.session_key
                    order by partitioned.occurred_at, partitioned.event_id
                )
        end as session_event_number

    from partitioned
    left join sessions
        on partitioned.tenant_id = sessions.tenant_id
        and partitioned.event_id = sessions.event_id

)

select * from final
