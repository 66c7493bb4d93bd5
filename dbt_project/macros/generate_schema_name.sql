{#- The schemas are fixed by the migrations (staging, intermediate, marts), and the
    reader role's grants name them: a custom schema is used as is, never prefixed
    with the target schema. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
