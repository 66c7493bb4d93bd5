{#- md5 of the fields joined with '|', nulls kept apart from empty strings.
    Timestamps must be passed through utc_text() first: a plain ::text cast
    depends on the session's TimeZone, and the key must not. -#}
{% macro surrogate_key(fields) -%}
    md5(
        {%- for field in fields %}
        coalesce(cast({{ field }} as text), '<null>'){% if not loop.last %} || '|' ||{% endif %}
        {%- endfor %}
    )
{%- endmacro %}

{% macro utc_text(timestamp) -%}
    to_char({{ timestamp }} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
{%- endmacro %}
