{#- What an event is sessionised on, from its own columns only (so an event never
    changes partition): a client session id wins; else the device's anonymous id,
    which stays the same across a login; else the user id (server-side events).
    Events with none of these get no session. -#}

{% macro session_source(event) -%}
    case
        when {{ event }}.session_id is not null then 'client'
        when {{ event }}.visitor_id is not null then 'inferred'
    end
{%- endmacro %}

{% macro session_partition_id(event) -%}
    coalesce({{ event }}.session_id, {{ event }}.anonymous_id, {{ event }}.user_id)
{%- endmacro %}

{#- A job lifecycle event's job: props.job_id, else the entity id of a job entity;
    null for every other event. -#}
{% macro job_id(event) -%}
    case
        when {{ event }}.event_type in {{ sql_list(job_lifecycle_event_types()) }}
            then coalesce(
                {{ event }}.props ->> 'job_id',
                case when {{ event }}.entity_type = 'job' then {{ event }}.entity_id end
            )
    end
{%- endmacro %}
