"""The schema and its migrations. What the BI role may read: test_reader_access.py."""

import psycopg

from tributary import migrations


def test_re_running_migrations_is_a_no_op(conn: psycopg.Connection):
    assert migrations.migrate(conn) == []
    applied = [row[0] for row in conn.execute("select version from ops.schema_migrations order by version")]
    assert applied == [version for version, _ in migrations.available()]


def test_the_tables_design_names_exist(conn: psycopg.Connection):
    for table in (
        "landing.events_raw",
        "ops.tenants",
        "ops.write_keys",
        "ops.batches",
        "warehouse.events",
        "warehouse.event_rejects",
        "warehouse.event_duplicates",
    ):
        assert conn.execute("select to_regclass(%s)", (table,)).fetchone()[0] is not None, table
