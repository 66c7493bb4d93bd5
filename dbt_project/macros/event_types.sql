{#- Event types with a meaning in the marts, named once. -#}

{% macro page_view_event_types() -%}
    {{ return(['page_viewed', 'screen_viewed']) }}
{%- endmacro %}

{#- Events that say nothing about the visitor engaging: the page views themselves
    and the session bookkeeping the SDKs send on their own. -#}
{% macro non_engagement_event_types() -%}
    {{ return(page_view_event_types() + ['session_start', 'session_end', 'page_visibility_change']) }}
{%- endmacro %}

{% macro job_lifecycle_event_types() -%}
    {{ return(['job_created', 'job_started', 'job_completed', 'job_failed']) }}
{%- endmacro %}

{#- The values are our own constants, never input, so plain quoting is enough. -#}
{% macro sql_list(values) -%}
    ({%- for value in values -%}'{{ value }}'{%- if not loop.last %}, {% endif -%}{%- endfor -%})
{%- endmacro %}
