-- Tributary's first schema: landing, ops, warehouse, and the read-only BI role.
-- Applied once by `tributary db migrate` (tributary/migrations.py), in one transaction.

create schema landing;
create schema if not exists ops;
create schema warehouse;
-- dbt builds into these; created here so the reader role's grants are in place first.
create schema if not exists staging;
create schema if not exists intermediate;
create schema if not exists marts;

create table ops.tenants (
    id          uuid primary key default gen_random_uuid(),
    name        text not null unique check (length(name) between 1 and 200),
    settings    jsonb not null default '{}'::jsonb,
    created_at  timestamptz not null default now()
);

-- Write keys are stored as SHA-256 hashes: they are long random tokens, so a slow
-- password hash would only slow ingest; the clear key is shown once, at creation.
create table ops.write_keys (
    key_hash    bytea primary key,
    tenant_id   uuid not null references ops.tenants (id),
    key_prefix  text not null,
    created_at  timestamptz not null default now(),
    revoked_at  timestamptz
);
create index write_keys_tenant on ops.write_keys (tenant_id);

create table ops.batches (
    id              bigint generated always as identity primary key,
    run_id          text,
    started_at      timestamptz not null,
    finished_at     timestamptz not null,
    claimed         integer not null,
    events          integer not null,
    rejects         integer not null,
    duplicates      integer not null,
    first_landing_id bigint,
    last_landing_id  bigint
);

-- Append-only: the payload exactly as the client sent it, plus what the API saw.
-- No foreign key to ops.tenants: the API has already resolved the tenant from its
-- key, and a per-row FK check would tax the hottest insert path.
create table landing.events_raw (
    id            bigint generated always as identity primary key,
    tenant_id     uuid not null,
    received_at   timestamptz not null default now(),
    wire_format   text not null check (wire_format in ('native', 'segment')),
    client_ip     inet,
    user_agent    text,
    payload       jsonb not null,
    batch_id      bigint,
    processed_at  timestamptz
);
-- The backlog: what processing has not yet taken, in landing-id order.
create index events_raw_backlog on landing.events_raw (id) where processed_at is null;
create index events_raw_tenant on landing.events_raw (tenant_id, id);

create table warehouse.events (
    tenant_id           uuid not null,
    event_id            text not null,
    landing_id          bigint not null unique,
    batch_id            bigint not null,
    event_type          text not null,
    category            text not null,
    source              text not null,
    wire_format         text not null,
    user_id             text,
    anonymous_id        text,
    session_id          text,
    entity_type         text,
    entity_id           text,
    idempotency_key     text,
    correlation_id      text,
    occurred_at         timestamptz not null,
    client_occurred_at  timestamptz,
    sent_at             timestamptz,
    received_at         timestamptz not null,
    processed_at        timestamptz not null,
    page_url            text,
    page_path           text,
    page_referrer       text,
    page_title          text,
    user_agent          text,
    browser             text,
    browser_version     text,
    os                  text,
    device              text,
    device_type         text,
    is_bot              boolean,
    locale              text,
    timezone            text,
    ip_prefix           text,
    country             text,
    referrer_medium     text,
    utm_source          text,
    utm_medium          text,
    utm_campaign        text,
    utm_term            text,
    utm_content         text,
    props               jsonb not null default '{}'::jsonb,
    primary key (tenant_id, event_id)
);
create index events_occurred on warehouse.events (tenant_id, occurred_at);

create table warehouse.event_rejects (
    landing_id     bigint primary key,
    tenant_id      uuid not null,
    batch_id       bigint not null,
    received_at    timestamptz not null,
    wire_format    text not null,
    payload        jsonb not null,
    reason_code    text not null,
    reason_detail  text not null,
    rejected_at    timestamptz not null default now()
);
create index event_rejects_tenant on warehouse.event_rejects (tenant_id, reason_code);

create table warehouse.event_duplicates (
    landing_id               bigint primary key,
    tenant_id                uuid not null,
    batch_id                 bigint not null,
    received_at              timestamptz not null,
    wire_format              text not null,
    payload                  jsonb not null,
    rule                     text not null,
    duplicate_of_event_id    text not null,
    detected_at              timestamptz not null default now()
);
create index event_duplicates_tenant on warehouse.event_duplicates (tenant_id, rule);

-- BI tools connect as tributary_reader: the marts and nothing else.
do $$
begin
    if not exists (select from pg_roles where rolname = 'tributary_reader') then
        create role tributary_reader login;
    end if;
end
$$;
revoke all on schema landing, ops, warehouse, staging, intermediate from tributary_reader;
grant usage on schema marts to tributary_reader;
grant select on all tables in schema marts to tributary_reader;
alter default privileges in schema marts grant select on tables to tributary_reader;
