-- warehouse.events is keyed by landing_id. (tenant_id, event_id) stays unique among kept
-- events by the de-duplication rule (warehouse.dedup_keys, judged under the tenant lock)
-- and is checked by dbt on every build (stg_events), no longer by a btree index.
--
-- Why: event ids are random, so every event cost that btree a descent to a random leaf,
-- the costliest index of the hottest write; and a batch could not write its events
-- before taking the tenant lock, since an uncommitted copy of the same id in a
-- concurrent batch made it wait, then fail.
alter table warehouse.events drop constraint events_pkey;
alter table warehouse.events drop constraint events_landing_id_key;
alter table warehouse.events add primary key (landing_id);
