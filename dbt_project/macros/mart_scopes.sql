{#- What each incremental mart recomputes, from the change log rows it has not read
    (`changes`, see incremental.sql). Each macro returns the mart's keys; the mart's
    pre-hook deletes its rows with those keys and its model recomputes them. -#}

{#- Every session an event was removed from or added to: int_events_sessionized
    rewrites whole partitions, so this is every old and new session of them. -#}
{% macro fct_sessions_scope(changes) -%}
    select distinct session_key from {{ changes }} as changes where session_key is not null
{%- endmacro %}

{#- Every page view logged: the page views of the rewritten sessions, old and new,
    and page views without a session. -#}
{% macro fct_page_views_scope(changes) -%}
    select distinct {{ surrogate_key(['changes.tenant_id', 'changes.event_id']) }}
    from {{ changes }} as changes
    where changes.event_type in {{ sql_list(page_view_event_types()) }}
{%- endmacro %}

{#- Every user an old or new row was attributed to. -#}
{% macro dim_users_scope(changes) -%}
    select distinct changes.tenant_id, changes.stitched_user_id
    from {{ changes }} as changes
    where changes.stitched_user_id is not null
{%- endmacro %}

{% macro fct_jobs_scope(changes) -%}
    select distinct changes.tenant_id, changes.job_id
    from {{ changes }} as changes
    where changes.job_id is not null
{%- endmacro %}

{#- The days of every lifecycle event, now or removed, of the jobs in scope: a job is
    counted on the days of its first job_created, first job_started and last
    completion or failure, each the day of one of its events. -#}
{% macro job_days_scope(changes) -%}
    select changes.tenant_id, changes.event_date
    from {{ changes }} as changes
    where changes.job_id is not null

    union

    select events.tenant_id, events.event_date
    from {{ ref('stg_tributary__events') }} as events
    where (events.tenant_id, {{ job_id('events') }}) in ({{ fct_jobs_scope(changes) }})
{%- endmacro %}

{#- Every day an old or new row fell on (its events, and the first events of its old
    and new sessions), and every day of the jobs in scope. -#}
{% macro agg_tenant_daily_scope(changes) -%}
    select changes.tenant_id, changes.event_date
    from {{ changes }} as changes
    where changes.event_date is not null

    union

    {{ job_days_scope(changes) }}
{%- endmacro %}

{% macro agg_jobs_daily_scope(changes) -%}
    {{ job_days_scope(changes) }}
{%- endmacro %}

{#- `where` for a mart's model: its rows in scope, or nothing when it rebuilds in full. -#}
{% macro in_incremental_scope(key_columns, keys) -%}
    {%- set scope = incremental_scope() -%}
    {%- if scope.full -%}
        true
    {%- else -%}
        ({{ key_columns | join(', ') }}) in ({{ keys(unread_changes(scope)) }})
    {%- endif -%}
{%- endmacro %}
