{#- The schemas are fixed by the migrations (staging, intermediate, marts), and the
    reader role's grants name them: a custom schema is used as is, never prefixed
    with the target schema. The var tributary__schema_prefix (empty by default) puts a
    whole second copy of the project beside the first: orchestration/verify_marts.py
    builds a full refresh into verify_staging, verify_intermediate and verify_marts to
    check that the incremental marts equal it. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- set prefix = var('tributary__schema_prefix', '') | trim -%}
    {%- if custom_schema_name is none -%}
        {{ prefix }}{{ target.schema }}
    {%- else -%}
        {{ prefix }}{{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
