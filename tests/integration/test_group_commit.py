"""Group commit against the real embedded PostgreSQL: concurrent requests share commits, each
request lands whole or not at all, and no request is answered before its commit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import psycopg

from ingest_api.app import create_app
from ingest_api.database import Database
from ingest_api.landing import GROUP_MAX_ROWS, Envelope, awaiting_commit, land
from tributary import tenants
from tributary.settings import Settings

CLIENT_IP = "203.0.113.7"


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Database]]:
    """The app in this event loop, so that requests really run concurrently (Litestar's
    AsyncTestClient answers one request at a time), and the Database it lands with."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, client=(CLIENT_IP, 40000))
    async with app.lifespan(), httpx.AsyncClient(transport=transport, base_url="http://tributary.test") as client:
        yield client, app.dependencies["database"].dependency()


@contextlib.asynccontextmanager
async def landing_table_locked(url: str) -> AsyncIterator[None]:
    """Hold every COPY into landing.events_raw until the block ends."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await conn.execute("lock table landing.events_raw in access exclusive mode")
        try:
            yield
        finally:
            # A lock on a connection that died with its server is gone already.
            with contextlib.suppress(psycopg.OperationalError):
                await conn.rollback()


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def event(n: int, **extra) -> dict:
    return {"eventType": "group_tested", "eventId": str(uuid.uuid4()), "props": {"n": n}, **extra}


def rows_of(conn: psycopg.Connection, tenant_ids: list[uuid.UUID]) -> list[dict]:
    cursor = conn.execute(
        "select tenant_id, wire_format, host(client_ip) as client_ip, user_agent, payload,"
        " received_at, xmin::text as xmin from landing.events_raw where tenant_id = any(%s) order by id",
        (tenant_ids,),
    )
    names = [column.name for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_two_hundred_concurrent_requests_all_land_once_in_fewer_commits_than_requests(settings, conn, tenant):
    other = tenants.create(conn, f"test-{uuid.uuid4().hex[:12]}")
    keys = [tenant, other]
    sent = [event(n) for n in range(200)]

    async def scenario() -> list[httpx.Response]:
        async with serving(settings) as (client, _database):
            return await asyncio.gather(
                *(
                    client.post(
                        "/v1/events",
                        json=body,
                        headers={"Authorization": f"Bearer {keys[n % 2][1]}", "User-Agent": f"client/{n}"},
                    )
                    for n, body in enumerate(sent)
                )
            )

    responses = asyncio.run(scenario())

    assert [response.status_code for response in responses] == [202] * 200
    rows = rows_of(conn, [tenant[0].id, other[0].id])
    assert sorted(row["payload"]["props"]["n"] for row in rows) == list(range(200))
    for row in rows:
        n = row["payload"]["props"]["n"]
        assert row["payload"] == sent[n]
        assert row["tenant_id"] == keys[n % 2][0].id
        assert (row["wire_format"], row["client_ip"], row["user_agent"]) == ("native", CLIENT_IP, f"client/{n}")
    commits = {row["xmin"] for row in rows}
    assert len(commits) < 200
    # now() is the transaction's: one received_at per commit.
    assert len({(row["xmin"], row["received_at"]) for row in rows}) == len(commits)


def test_each_row_of_a_group_carries_its_own_requests_envelope(settings, conn):
    envelopes = [
        Envelope(uuid.uuid4(), ip, agent, wire_format)
        for ip in ("198.51.100.4", "2001:db8::1", None)
        for agent in ("analytics-python/2.3", None)
        for wire_format in ("native", "segment")
    ]
    requests = [(envelopes[n % len(envelopes)], [event(n, part=part) for part in range(n % 3 + 1)]) for n in range(120)]

    async def scenario() -> None:
        database = Database(settings)
        async with database.lifespan(None):
            await asyncio.gather(
                *(
                    land(database, envelope, [json.dumps(body).encode() for body in bodies])
                    for envelope, bodies in requests
                )
            )

    asyncio.run(scenario())

    rows = rows_of(conn, list({envelope.tenant_id for envelope in envelopes}))
    assert len(rows) == sum(len(bodies) for _, bodies in requests)
    by_request = {}
    for row in rows:
        by_request.setdefault(row["payload"]["props"]["n"], []).append(row)
    for n, (envelope, bodies) in enumerate(requests):
        landed = by_request[n]
        assert [row["payload"] for row in landed] == bodies
        for row in landed:
            assert (row["tenant_id"], row["client_ip"], row["user_agent"], row["wire_format"]) == (
                envelope.tenant_id,
                envelope.client_ip,
                envelope.user_agent,
                envelope.wire_format,
            )
        assert len({row["xmin"] for row in landed}) == 1, "a request's rows were split across commits"
    assert len({row["xmin"] for row in rows}) < len(requests)


def test_a_request_is_never_split_across_commits_and_a_group_stops_at_its_row_cap(settings, conn):
    # Three requests of three fifths of the cap, and one over it: no two fit in one group.
    sizes = [GROUP_MAX_ROWS * 3 // 5] * 3 + [GROUP_MAX_ROWS + 1]
    envelopes = [Envelope(uuid.uuid4(), None, None) for _ in sizes]

    async def scenario() -> None:
        database = Database(settings)
        async with database.lifespan(None):
            await asyncio.gather(
                *(
                    land(database, envelope, [b'{"eventType": "capped", "n": %d}' % n for n in range(size)])
                    for envelope, size in zip(envelopes, sizes, strict=True)
                )
            )

    asyncio.run(scenario())

    commits = conn.execute(
        "select tenant_id, count(*), count(distinct xmin::text), min(xmin::text) from landing.events_raw"
        " where tenant_id = any(%s) group by tenant_id",
        ([envelope.tenant_id for envelope in envelopes],),
    ).fetchall()
    landed = {tenant_id: (count, xmins, xmin) for tenant_id, count, xmins, xmin in commits}
    assert [landed[envelope.tenant_id][:2] for envelope in envelopes] == [(size, 1) for size in sizes]
    assert len({xmin for _, _, xmin in landed.values()}) == len(sizes)


def test_a_request_whose_client_hangs_up_while_queued_stores_nothing(settings, database_url, conn):
    kept, dropped = Envelope(uuid.uuid4(), None, None), Envelope(uuid.uuid4(), None, None)

    async def scenario() -> None:
        database = Database(settings)
        async with database.lifespan(None):
            async with landing_table_locked(database_url):
                in_flight = asyncio.ensure_future(land(database, kept, [b'{"eventType": "kept"}']))
                await until(lambda: awaiting_commit(database) == 1)
                queued = asyncio.ensure_future(land(database, dropped, [b'{"eventType": "dropped"}']))
                await until(lambda: awaiting_commit(database) == 2)
                queued.cancel()
                await until(lambda: awaiting_commit(database) == 1)
            await in_flight

    asyncio.run(scenario())

    assert [row["payload"]["eventType"] for row in rows_of(conn, [kept.tenant_id, dropped.tenant_id])] == ["kept"]


def test_an_unstorable_event_fails_only_its_own_request_and_its_group_mates_land(settings, database_url, conn, tenant):
    headers = {"Authorization": f"Bearer {tenant[1]}"}
    bad = b'{"eventType": "group_tested", "props": {"n": -1}, "huge": 1e131072}'

    async def scenario() -> tuple[httpx.Response, httpx.Response, list[httpx.Response]]:
        async with serving(settings) as (client, database):
            assert (await client.post("/v1/events", json=event(0), headers=headers)).status_code == 202
            async with landing_table_locked(database_url):
                # The first request's commit waits on the lock; the rest queue behind it as one group.
                first = asyncio.ensure_future(client.post("/v1/events", json=event(1), headers=headers))
                await until(lambda: awaiting_commit(database) == 1)
                refused = asyncio.ensure_future(
                    client.post("/v1/events", content=bad, headers={**headers, "Content-Type": "application/json"})
                )
                mates = [
                    asyncio.ensure_future(client.post("/v1/events", json=event(n), headers=headers))
                    for n in range(2, 30)
                ]
                await until(lambda: awaiting_commit(database) == 30)
            return await first, await refused, await asyncio.gather(*mates)

    first, refused, mates = asyncio.run(scenario())

    assert first.status_code == 202
    assert refused.status_code == 400
    assert "cannot be stored as JSON" in refused.json()["error"]
    assert [response.status_code for response in mates] == [202] * len(mates)
    rows = rows_of(conn, [tenant[0].id])
    assert sorted(row["payload"]["props"]["n"] for row in rows) == list(range(30))
    mate_commits = {row["xmin"] for row in rows if row["payload"]["props"]["n"] >= 2}
    assert len(mate_commits) == 1, "the group-mates were written again together, without the refused event"


def test_a_batch_with_an_unstorable_event_in_a_group_lands_its_other_events(settings, database_url, conn, tenant):
    headers = {"Authorization": f"Bearer {tenant[1]}", "Content-Type": "application/json"}
    batch = b'{"events": [{"eventType": "a"}, {"eventType": "b", "huge": -1e131072}, {"eventType": "c"}]}'

    async def scenario() -> tuple[httpx.Response, list[httpx.Response]]:
        async with serving(settings) as (client, database):
            async with landing_table_locked(database_url):
                others = [
                    asyncio.ensure_future(client.post("/v1/events", json=event(n), headers=headers)) for n in range(10)
                ]
                answer = asyncio.ensure_future(client.post("/v1/events/batch", content=batch, headers=headers))
                await until(lambda: awaiting_commit(database) == 11)
            return await answer, await asyncio.gather(*others)

    answer, others = asyncio.run(scenario())

    assert answer.status_code == 202
    assert [result["status"] for result in answer.json()["results"]] == ["fulfilled", "rejected", "fulfilled"]
    assert [response.status_code for response in others] == [202] * 10
    landed = [row["payload"]["eventType"] for row in rows_of(conn, [tenant[0].id])]
    assert sorted(landed) == sorted(["a", "c", *["group_tested"] * 10])


def test_when_the_database_goes_down_every_request_in_the_group_gets_503_and_nothing_lands(stoppable_server):
    own, server, key = stoppable_server
    headers = {"Authorization": f"Bearer {key}"}

    async def scenario() -> list[httpx.Response]:
        async with serving(own) as (client, database):
            assert (await client.post("/v1/events", json=event(0), headers=headers)).status_code == 202
            async with landing_table_locked(server.url()):
                sent = [
                    asyncio.ensure_future(client.post("/v1/events", json=event(n), headers=headers))
                    for n in range(1, 31)
                ]
                await until(lambda: awaiting_commit(database) == 30)
                # A fast shutdown ends the commit in flight (and this lock) half way.
                await asyncio.to_thread(server.stop)
            return await asyncio.gather(*sent)

    responses = asyncio.run(scenario())

    assert [response.status_code for response in responses] == [503] * 30
    assert all(response.headers["Retry-After"] == "1" for response in responses)
    server.start()
    with psycopg.connect(server.url(), autocommit=True) as admin:
        landed = admin.execute("select payload->'props'->>'n' from landing.events_raw").fetchall()
    assert landed == [("0",)]
