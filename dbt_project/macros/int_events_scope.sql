{#- The hooks that make int_events_sessionized incremental (the rule: docs block
    `incremental`).

    Pre-hook: work out the partitions to re-sessionise into a temporary table
    int_events_scope, log the rows about to go, and delete them. The model then
    recomputes those partitions from every event they hold now; the post-hook logs
    the rows it added. -#}

{% macro int_events_prepare_scope() %}
    create temporary table int_events_scope (
        tenant_id uuid not null,
        session_source text,
        session_partition_id text,
        -- set for a changed event without a session, which is its own partition
        landing_id bigint
    ) on commit drop;

    {%- set scope = incremental_scope() %}
    {%- if not is_incremental() or scope.full %}
    insert into {{ changes_relation() }} (invocation_id, change) values ('{{ invocation_id }}', 'rebuilt');
    {%- if is_incremental() %}
    delete from {{ this }};
    {%- endif %}
    {%- else %}
    insert into int_events_scope
    with

    -- Processing stamps processed_at at the start of a batch's transaction, so a
    -- batch open when the last build started can commit later with an earlier stamp:
    -- the look-back re-reads that far, and the landing_id check keeps only what is new.
    new_events as (

        select
            events.tenant_id,
            events.landing_id,
            events.anonymous_id,
            events.user_id,
            {{ session_source('events') }} as session_source,
            {{ session_partition_id('events') }} as session_partition_id

        from {{ ref('stg_tributary__events') }} as events
        where events.processed_at >= timestamptz '{{ scope.run_started_at }}'
                - interval '{{ var("tributary__lookback_hours") }} hours'
            and not exists (
                select 1 from {{ this }} as built where built.landing_id = events.landing_id
            )

    ),

    -- Events processing moved to warehouse.event_duplicates after they were built
    -- (an earlier-landed copy came later): their old rows say where they were.
    removed_events as (

        select
            built.tenant_id,
            built.landing_id,
            built.anonymous_id,
            built.user_id,
            built.session_source,
            built.session_partition_id

        from {{ this }} as built
        where built.landing_id in (
            select landing_id from {{ source('warehouse', 'event_duplicates') }}
            where detected_at >= timestamptz '{{ scope.run_started_at }}'
                - interval '{{ var("tributary__lookback_hours") }} hours'
        )

    ),

    changed as (

        select * from new_events
        union all
        select * from removed_events

    ),

    -- An anonymous id seen with a user on a changed event may now stitch to another
    -- user: every partition holding that anonymous id is re-sessionised too.
    restitched as (

        select distinct tenant_id, anonymous_id
        from changed
        where anonymous_id is not null and user_id is not null

    ),

    partitions as (

        select tenant_id, session_source, session_partition_id
        from changed
        where session_source is not null

        union

        select built.tenant_id, built.session_source, built.session_partition_id
        from {{ this }} as built
        inner join restitched
            on built.tenant_id = restitched.tenant_id
            and built.anonymous_id = restitched.anonymous_id
        where built.session_source is not null

        union

        select new_events.tenant_id, new_events.session_source, new_events.session_partition_id
        from new_events
        inner join restitched
            on new_events.tenant_id = restitched.tenant_id
            and new_events.anonymous_id = restitched.anonymous_id
        where new_events.session_source is not null

    )

    select tenant_id, session_source, session_partition_id, null from partitions
    union all
    select tenant_id, null, null, landing_id from changed where session_source is null;

    analyze int_events_scope;

    {{ int_events_log('removed', this) }}

    delete from {{ this }} as built
    where {{ int_events_in_scope('built') }};
    {%- endif %}
{% endmacro %}

{% macro int_events_log_added() %}
    {{ int_events_log('added', this) }}
{% endmacro %}

{#- Rows of int_events_sessionized (`alias`) in this build's scope. -#}
{% macro int_events_in_scope(alias) -%}
    (
        ({{ alias }}.tenant_id, {{ alias }}.session_source, {{ alias }}.session_partition_id) in (
            select tenant_id, session_source, session_partition_id
            from int_events_scope where landing_id is null
        )
        or {{ alias }}.landing_id in (
            select landing_id from int_events_scope where landing_id is not null
        )
    )
{%- endmacro %}

{% macro int_events_log(change, relation) %}
    insert into {{ changes_relation() }} (
        invocation_id, change, tenant_id, event_id, landing_id, event_type, event_date,
        session_key, stitched_user_id, job_id
    )
    select
        '{{ invocation_id }}',
        '{{ change }}',
        built.tenant_id,
        built.event_id,
        built.landing_id,
        built.event_type,
        built.event_date,
        built.session_key,
        built.stitched_user_id,
        {{ job_id('built') }}
    from {{ relation }} as built
    where {{ int_events_in_scope('built') }};
{% endmacro %}
