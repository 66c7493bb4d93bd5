{#- Incremental bookkeeping, shared by every incremental model (the rule is written out
    in models/marts/_marts__docs.md, docs block `incremental`).

    Three small tables live beside int_events_sessionized, in the intermediate schema:
    - tributary_changes: the change log. Each incremental build of
      int_events_sessionized writes one row per event row it removed and one per row it
      added (it rewrites whole session partitions), or one 'rebuilt' row when it was
      built from scratch. The marts read it to know what to recompute.
    - tributary_incremental_state: per incremental model, the start of the last dbt
      invocation that built it successfully and the last change it has read.
    - tributary_dbt_runs: when each invocation started, by the database's clock. -#}

{% macro bookkeeping_schema() -%}
    {{ generate_schema_name('intermediate', none) }}
{%- endmacro %}

{% macro changes_relation() -%}
    {{ bookkeeping_schema() }}.tributary_changes
{%- endmacro %}

{% macro state_relation() -%}
    {{ bookkeeping_schema() }}.tributary_incremental_state
{%- endmacro %}

{% macro runs_relation() -%}
    {{ bookkeeping_schema() }}.tributary_dbt_runs
{%- endmacro %}

{#- on-run-start -#}
{% macro create_incremental_bookkeeping() %}
    create schema if not exists {{ bookkeeping_schema() }};
    create table if not exists {{ changes_relation() }} (
        change_id bigint generated always as identity primary key,
        invocation_id text not null,
        logged_at timestamptz not null default clock_timestamp(),
        change text not null check (change in ('removed', 'added', 'rebuilt')),
        tenant_id uuid,
        event_id text,
        landing_id bigint,
        event_type text,
        event_date date,
        session_key text,
        stitched_user_id text,
        job_id text
    );
    create table if not exists {{ state_relation() }} (
        model text primary key,
        run_started_at timestamptz not null,
        changes_through bigint not null,
        -- of the model's file: once it changes, the next build recomputes everything
        checksum text not null,
        invocation_id text not null,
        updated_at timestamptz not null default now()
    );
    -- a state table from before the checksum: every model then rebuilds once
    alter table {{ state_relation() }} add column if not exists checksum text not null default '';
    create table if not exists {{ runs_relation() }} (
        invocation_id text primary key,
        started_at timestamptz not null default now()
    );
    insert into {{ runs_relation() }} (invocation_id) values ('{{ invocation_id }}')
    on conflict (invocation_id) do nothing;
{% endmacro %}

{#- on-run-end: every incremental model built without error has read the change log to
    its end (it ran after int_events_sessionized, its only writer) and has seen every
    event committed before this invocation started. -#}
{% macro record_incremental_state(results) %}
    {%- if execute -%}
    {%- set built = [] -%}
    {%- for result in results -%}
        {%- if result.node.resource_type == 'model'
            and result.status == 'success'
            and result.node.config.materialized == 'incremental' -%}
            {%- do built.append((result.node.name, result.node.checksum.checksum)) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set readers = [] -%}
    {%- for node in graph.nodes.values() -%}
        {%- if node.resource_type == 'model'
            and node.config.materialized == 'incremental'
            and node.name != 'int_events_sessionized' -%}
            {%- do readers.append(node.name) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if built %}
    insert into {{ state_relation() }} (model, run_started_at, changes_through, checksum, invocation_id)
    select
        built.model,
        runs.started_at,
        coalesce((select max(change_id) from {{ changes_relation() }}), 0),
        built.checksum,
        '{{ invocation_id }}'
    from (
        values
        {%- for name, checksum in built %}
            ('{{ name }}', '{{ checksum }}'){% if not loop.last %},{% endif %}
        {%- endfor %}
    ) as built (model, checksum)
    cross join {{ runs_relation() }} as runs
    where runs.invocation_id = '{{ invocation_id }}'
    on conflict (model) do update set
        run_started_at = excluded.run_started_at,
        changes_through = excluded.changes_through,
        checksum = excluded.checksum,
        invocation_id = excluded.invocation_id,
        updated_at = now();
    {%- endif %}
    {%- if readers %}
    -- What every reader has read can go (a reader without state rebuilds in full).
    delete from {{ changes_relation() }}
    where change_id <= (
        select min(changes_through) from {{ state_relation() }}
        where model in {{ sql_list(readers) }}
    );
    {%- endif %}
    delete from {{ runs_relation() }} where started_at < now() - interval '7 days';
    {%- endif -%}
{% endmacro %}

{#- Where this model's incremental build starts from: {'full': true} when it must
    recompute everything (no state yet, its file changed since its last build, or
    int_events_sessionized was rebuilt from scratch since), else the last change it
    read and when its last build started. -#}
{% macro incremental_scope() %}
    {#- dbt unit tests render models without a relation (`this` is none) -#}
    {%- if not execute or this is none or not is_incremental() -%}
        {{ return({'full': true}) }}
    {%- endif -%}
    {%- set state_table = adapter.get_relation(this.database, bookkeeping_schema(), 'tributary_incremental_state') -%}
    {%- set changes_table = adapter.get_relation(this.database, bookkeeping_schema(), 'tributary_changes') -%}
    {%- if state_table is none or changes_table is none -%}
        {{ return({'full': true}) }}
    {%- endif -%}
    {%- set query -%}
        select
            state.changes_through,
            {{ utc_text('state.run_started_at') }} as run_started_at,
            exists (
                select 1 from {{ changes_relation() }} as changes
                where changes.change_id > state.changes_through and changes.change = 'rebuilt'
            ) as rebuilt,
            state.checksum
        from {{ state_relation() }} as state
        where state.model = '{{ this.identifier }}'
    {%- endset -%}
    {%- set rows = run_query(query).rows -%}
    {%- if rows | length == 0 -%}
        {{ return({'full': true}) }}
    {%- endif -%}
    {%- set row = rows[0] -%}
    {%- set rebuilt = row[2] and this.identifier != 'int_events_sessionized' -%}
    {%- set changed = row[3] != model.checksum.checksum -%}
    {{ return({
        'full': rebuilt or changed,
        'changes_through': row[0],
        'run_started_at': row[1],
    }) }}
{% endmacro %}

{#- The change log rows this model has not read yet. -#}
{% macro unread_changes(scope) -%}
    (
        select * from {{ changes_relation() }}
        where change_id > {{ scope.changes_through }}
            and change in ('removed', 'added')
    )
{%- endmacro %}

{#- A mart's pre-hook: delete the rows it is about to recompute. `keys` is a macro
    taking the unread changes and returning the keys to recompute. -#}
{% macro delete_incremental_scope(key_columns, keys) %}
    {%- if is_incremental() -%}
        {%- set scope = incremental_scope() -%}
        {%- if scope.full -%}
            delete from {{ this }}
        {%- else -%}
            delete from {{ this }}
            where ({{ key_columns | join(', ') }}) in ({{ keys(unread_changes(scope)) }})
        {%- endif -%}
    {%- endif -%}
{% endmacro %}
