-- De-duplication keys of every valid processed event (kept or duplicate), so each batch
-- is judged against every other batch whatever order they ran in
-- (orchestration/processing/dedup.py states the rule, orchestration/batches.py uses this).
-- Keys are stored as md5 digests: fixed 16 bytes whatever the client sent, so the index
-- stays small and no long id can overflow a btree entry.
create table warehouse.dedup_keys (
    tenant_id   uuid not null,
    kind        text not null check (kind in ('event_id', 'idempotency_key', 'fingerprint')),
    digest      uuid not null,
    landing_id  bigint not null,
    event_id    text not null,
    primary key (tenant_id, kind, digest, landing_id)
);
-- Re-judging an earlier-processed event needs all of its own keys.
create index dedup_keys_landing on warehouse.dedup_keys (landing_id);

-- Events processed before this table existed: their eventId and idempotencyKey count
-- from now on. (Fingerprints are not rebuilt: they depend on the tracking plan, and a
-- same-second re-send of an old event is not expected.)
insert into warehouse.dedup_keys (tenant_id, kind, digest, landing_id, event_id)
select tenant_id, 'event_id', md5(event_id)::uuid, landing_id, event_id from warehouse.events
union all
select tenant_id, 'idempotency_key', md5(idempotency_key)::uuid, landing_id, event_id
from warehouse.events where idempotency_key is not null and idempotency_key <> '';
