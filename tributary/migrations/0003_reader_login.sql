-- BI tools log in as tributary_reader over TCP, with a password. No secret is kept here:
-- Tributary gives the role its password when it starts or migrates
-- (tributary/db.py, ensure_reader_password), from $TRIBUTARY_HOME/reader-password or
-- TRIBUTARY_READER_PASSWORD.

alter role tributary_reader with login;

-- Belt and braces on top of the grants: a reader's session is read-only unless it asks
-- otherwise (it still may not write anything: it holds no privilege to).
alter role tributary_reader set default_transaction_read_only = on;

-- Temporary tables: PostgreSQL lets every role (PUBLIC) create them in every database.
-- The reader must create nothing anywhere, so only the role running Tributary (the one
-- that migrates also runs dbt, whose incremental models need temporary tables) keeps
-- that right here. Where that role neither owns this database nor may grant on it,
-- both statements only warn and change nothing.
do $$
begin
    execute format('revoke temporary on database %I from public', current_database());
    execute format('grant temporary on database %I to %I', current_database(), current_user);
end
$$;
