{#- Seconds from one timestamp to another, as a float: exact to the microsecond
    the events carry, and one type for every *_seconds column. -#}
{% macro seconds_between(start_timestamp, end_timestamp) -%}
    cast(extract(epoch from ({{ end_timestamp }} - {{ start_timestamp }})) as double precision)
{%- endmacro %}
