-- The backlog becomes a queue of its own: `landing.backlog` holds the id of every landed
-- row not yet processed. Landed rows are filled by the trigger below, in the API's own
-- transaction, so a row is acknowledged and queued at once or neither.
--
-- Why not the processed markers on landing.events_raw: marking a row processed rewrote
-- the whole row (payload and all) and two index entries, and the claim's row lock wrote
-- every page again; together about half the write-ahead log of processing. A batch now
-- deletes its ids from this narrow table in the transaction that writes its outcome:
-- landing stays exactly as received, written once.
create table landing.backlog (
    id bigint primary key
);

insert into landing.backlog (id)
select id from landing.events_raw where processed_at is null;

create function landing.enqueue_landed() returns trigger language plpgsql as $$
begin
    insert into landing.backlog (id) select id from landed;
    return null;
end
$$;

-- One statement per COPY or INSERT, whatever its row count (a transition table).
create trigger events_raw_enqueue
    after insert on landing.events_raw
    referencing new table as landed
    for each statement execute function landing.enqueue_landed();

drop index landing.events_raw_backlog;
-- Which batch took a landed row is on its warehouse row (events, rejects or duplicates:
-- each carries landing_id and batch_id).
alter table landing.events_raw drop column batch_id, drop column processed_at;
