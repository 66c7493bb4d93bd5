-- De-duplication keys, one row per valid processed event (kept or duplicate) with one
-- digest column per rule, instead of one row per key: a third of the rows and no text
-- column in any index, which made writing the keys the costliest step of a batch.
-- A digest is the key's own UUID when it is one (most eventIds and idempotencyKeys),
-- else the md5 of its text (orchestration/processing/dedup.py: digest()).
create table warehouse.dedup_keys_per_event (
    landing_id              bigint not null,
    tenant_id               uuid not null,
    batch_id                bigint,
    event_id                text not null,
    event_id_digest         uuid not null,
    idempotency_key_digest  uuid,
    fingerprint_digest      uuid
);

create function pg_temp.key_digest(key text) returns uuid language sql immutable as $$
    select case
        when key ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then key::uuid
        when key <> '' then md5(key)::uuid
    end
$$;

-- The keys kept so far: every event's eventId, and the idempotencyKey of those still in
-- warehouse.events. (Fingerprints, and the idempotencyKeys of duplicates, were stored
-- as digests of another form and are not rebuilt: a same-second re-send of an event
-- processed before this migration is not expected.)
insert into warehouse.dedup_keys_per_event
    (landing_id, tenant_id, batch_id, event_id, event_id_digest, idempotency_key_digest)
select k.landing_id, k.tenant_id, e.batch_id, k.event_id, pg_temp.key_digest(k.event_id),
       pg_temp.key_digest(e.idempotency_key)
from warehouse.dedup_keys k
left join warehouse.events e using (landing_id)
where k.kind = 'event_id';

drop table warehouse.dedup_keys;
alter table warehouse.dedup_keys_per_event rename to dedup_keys;
-- Found by key in the hot path; by batch or landing id only to trace or forget (those
-- grow with the insertion order, so a BRIN finds them almost for free).
create index dedup_keys_batch on warehouse.dedup_keys using brin (batch_id, landing_id);
-- Hash indexes: keys are only ever looked up by equality, and a random digest costs a
-- btree a descent and a page split now and then at every insert; a hash index one bucket
-- page. (They index one column: the look-up checks the tenant on the row it finds.)
create index dedup_keys_event_id on warehouse.dedup_keys using hash (event_id_digest);
create index dedup_keys_idempotency_key on warehouse.dedup_keys using hash (idempotency_key_digest)
    where idempotency_key_digest is not null;
create index dedup_keys_fingerprint on warehouse.dedup_keys using hash (fingerprint_digest)
    where fingerprint_digest is not null;

-- Batches COPY their events straight into the table; the batch's transaction time is the
-- processing time.
alter table warehouse.events alter column processed_at set default now();

-- Every index is written once per event by processing (and by the API for landing):
-- keep only those a query needs. Time columns grow with the insertion order, so BRIN
-- serves range scans (dbt's look-back window, "processed since") almost for free.
drop index warehouse.events_occurred;
create index events_occurred on warehouse.events using brin (occurred_at timestamptz_minmax_multi_ops);
create index events_processed on warehouse.events using brin (processed_at, batch_id);
-- Per-tenant questions about landing (counts, the backlog) scan the backlog index or the
-- table; a second btree cost every landed event an index entry, twice (insert, processed marker).
drop index landing.events_raw_tenant;
