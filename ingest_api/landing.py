"""The landing writer: events into landing.events_raw, committed before the API answers.

Group commit: the requests that arrive while a commit is in flight wait for the next one,
and then share it: one COPY of all their rows, one commit, one fsync. A request alone is
written at once; under load a commit carries many, so the fsync per request shrinks with
the load instead of capping it. A request's rows are never split across commits, so a
request lands whole or not at all, and all its rows share one received_at (now() is the
commit's). The payload column gets the JSON bytes as the client sent them.

Each request is answered only after its commit. A commit that fails fails every request in
it (503 for database trouble); a row PostgreSQL refuses fails only the request that sent
it, and the rest of the group is written again without it.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import re
import struct
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import psycopg
from litestar import Request

from ingest_api.database import POOL_WAIT_TIMEOUT, Database
from ingest_api.errors import ClientError, Unavailable
from ingest_api.schemas import FieldError

logger = logging.getLogger(__name__)

# Binary COPY: the payload bytes go to the server as they are, with no escaping or
# re-encoding here; jsonb's binary input is a version byte and the JSON text.
COPY_SQL = "copy landing.events_raw (tenant_id, wire_format, client_ip, user_agent, payload) from stdin (format binary)"
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
_NULL = struct.pack(">i", -1)
_length = struct.Struct(">i").pack
_COPY_CONTEXT = re.compile(r"COPY events_raw, line (?P<line>\d+)(?:, column (?P<column>\w+))?")

# A group stops growing at these (a request larger than them goes alone, never split).
GROUP_MAX_ROWS = 5_000
GROUP_MAX_BYTES = 8 * 1024 * 1024
# Commits in flight at once per API process. One: PostgreSQL's work on a group and the
# API's work on the next overlap anyway; a second writer measured no faster (bench/ingest.py)
# and only splits the groups.
WRITERS = 1


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the API saw of a request, stored beside each of its events."""

    tenant_id: UUID
    client_ip: str | None
    user_agent: str | None
    wire_format: str = "native"

    @classmethod
    def of(cls, request: Request, tenant_id: UUID, wire_format: str = "native") -> Envelope:
        client = request.scope.get("client")
        return cls(tenant_id, _inet(client[0] if client else None), request.headers.get("user-agent"), wire_format)


class UnstorableEvent(ClientError):
    """PostgreSQL refused an event's JSON that the API's checks passed (a number beyond
    numeric's range, say); `position` is its place among the payloads given to `land`."""

    def __init__(self, position: int, detail: str):
        self.position = position
        self.detail = detail
        super().__init__(
            f"the event cannot be stored as JSON ({detail}): change the value and send it again",
            [FieldError(None, detail)],
        )


def with_event_id(payload: bytes, event_id: UUID) -> bytes:
    """The payload with `eventId` added as its last key, nothing else changed.

    Last, because jsonb keeps the last of repeated keys: an `"eventId": null` from the client
    gives way. `payload` is a JSON object with at least `eventType`, so the comma is valid.
    """
    return payload.rstrip()[:-1] + b',"eventId":"' + str(event_id).encode() + b'"}'


async def land(database: Database, envelope: Envelope, payloads: Sequence[bytes]) -> None:
    """Commit `payloads` to landing.events_raw; return only once they are durable.

    Raises `Unavailable` when they could not be committed (nothing of them is stored), and
    `UnstorableEvent` when PostgreSQL refuses one of them (none of them is stored)."""
    if payloads:
        await _writer(database).land(database, _rows(envelope, payloads), len(payloads))


def awaiting_commit(database: Database) -> int:
    """Requests of this process (and event loop) waiting for their commit, in flight or queued."""
    writer = _writers.get(database)
    return 0 if writer is None else writer.awaiting


class _Landing:
    """One request's rows, encoded, and the future its handler awaits."""

    __slots__ = ("rows", "count", "done", "expiry")

    def __init__(self, rows: bytes, count: int, done: asyncio.Future[None]):
        self.rows = rows
        self.count = count
        self.done = done
        self.expiry: asyncio.TimerHandle | None = None

    def settle(self, error: BaseException | None = None) -> None:
        # The handler may be gone (the client hung up): its future is then cancelled.
        if not self.done.done():
            if error is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(error)


class _GroupWriter:
    """The queue of one process's requests and the writer task(s) that drain it in groups."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._queue: deque[_Landing] = deque()
        self._in_flight = 0
        self._writers = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def awaiting(self) -> int:
        return len(self._queue) + self._in_flight

    async def land(self, database: Database, rows: bytes, count: int) -> None:
        landing = _Landing(rows, count, self.loop.create_future())
        # Waiting for a place in a commit is bounded like waiting for a connection: a stuck
        # database gives a quick 503, not a hung client. Once in a commit, it is the commit.
        landing.expiry = self.loop.call_later(POOL_WAIT_TIMEOUT, self._expire, landing)
        self._queue.append(landing)
        if self._writers < WRITERS:
            self._writers += 1
            task = self.loop.create_task(self._drain(database))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            await landing.done
        except asyncio.CancelledError:
            self._forget(landing)
            raise

    def _expire(self, landing: _Landing) -> None:
        if self._forget(landing):
            landing.settle(Unavailable("the database is too slow to answer: nothing was stored; retry in a second"))

    def _forget(self, landing: _Landing) -> bool:
        """Take a request out of the queue if no commit has taken it yet."""
        try:
            self._queue.remove(landing)
        except ValueError:
            return False
        if landing.expiry is not None:
            landing.expiry.cancel()
        return True

    def _take_group(self) -> list[_Landing]:
        group: list[_Landing] = []
        rows = size = 0
        queue = self._queue
        while queue:
            landing = queue[0]
            if group and (rows + landing.count > GROUP_MAX_ROWS or size + len(landing.rows) > GROUP_MAX_BYTES):
                break
            queue.popleft()
            if landing.expiry is not None:
                landing.expiry.cancel()
            group.append(landing)
            rows += landing.count
            size += len(landing.rows)
        return group

    async def _drain(self, database: Database) -> None:
        """Commit groups until the queue is empty, on one connection while it lasts."""
        group: list[_Landing] = []
        try:
            while self._queue:
                try:
                    async with database.connection() as conn:
                        while self._queue:
                            group = self._take_group()
                            self._in_flight += len(group)
                            try:
                                await _commit(conn, group)
                            finally:
                                self._in_flight -= len(group)
                            group = []
                except Exception as error:
                    # No connection: every request waiting now would wait for the same.
                    failed = group or self._take_everything()
                    group = []
                    for landing in failed:
                        landing.settle(_group_error(error))
        except BaseException:
            # The loop is closing under us: nobody must wait for a commit that will not come.
            for landing in group:
                landing.settle(Unavailable("the API stopped before the commit was confirmed: send the events again"))
            for landing in self._take_everything():
                landing.settle(Unavailable("the API is stopping: nothing was stored; retry in a second"))
            raise
        finally:
            self._writers -= 1

    def _take_everything(self) -> list[_Landing]:
        everything = []
        while self._queue:
            everything.extend(self._take_group())
        return everything


async def _commit(conn: psycopg.AsyncConnection, group: list[_Landing]) -> None:
    """One COPY of the group's rows, committed (autocommit: the COPY is its own transaction).

    A row PostgreSQL refuses fails its own request; the others are written again without it."""
    while group:
        try:
            async with conn.cursor() as cursor, cursor.copy(COPY_SQL) as copy:
                await copy.write(b"".join([_COPY_HEADER, *[landing.rows for landing in group], _COPY_TRAILER]))
        except (psycopg.DataError, psycopg.IntegrityError) as error:
            context = _COPY_CONTEXT.search(error.diag.context or "")
            if context is None:
                raise
            index, position = _owner(group, int(context["line"]) - 1)
            group.pop(index).settle(_refusal(error, position, context["column"]))
        else:
            for landing in group:
                landing.settle()
            return


def _owner(group: list[_Landing], row: int) -> tuple[int, int]:
    """Which request of the group sent COPY row `row`, and that row's place among its payloads."""
    for index, landing in enumerate(group):
        if row < landing.count:
            return index, row
        row -= landing.count
    raise AssertionError("the COPY reported a row beyond the group's rows")


def _refusal(error: psycopg.Error, position: int, column: str | None) -> Exception:
    """What the request whose row PostgreSQL refused is told."""
    detail = error.diag.message_primary or str(error)
    if column == "payload":
        return UnstorableEvent(position, detail)
    if isinstance(error, psycopg.DataError) and column:
        # The user agent, say, with a NUL byte: the client's doing, so a 400.
        return ClientError(f"the request's {column} cannot be stored ({detail}): change it and send the events again")
    # A constraint the API itself should have kept (the wire format): a bug, so a 500.
    return error


def _group_error(error: Exception) -> Exception:
    """What each request of a failed commit is told (one exception object each)."""
    if isinstance(error, Unavailable):
        fresh = Unavailable(error.message)
        fresh.__cause__ = error.__cause__
        return fresh
    if isinstance(error, psycopg.Error):
        # Not a row's fault (those are handled in _commit): the database's.
        logger.warning("the landing commit failed: %s", error)
        fresh = Unavailable("the database could not commit the events: nothing was stored; retry in a second")
        fresh.__cause__ = error
        return fresh
    return error


# One writer per Database and event loop (tests run several apps, each in its own loop).
_writers: weakref.WeakKeyDictionary[Database, _GroupWriter] = weakref.WeakKeyDictionary()


def _writer(database: Database) -> _GroupWriter:
    loop = asyncio.get_running_loop()
    writer = _writers.get(database)
    if writer is None or writer.loop is not loop:
        writer = _writers[database] = _GroupWriter(loop)
    return writer


def _rows(envelope: Envelope, payloads: Sequence[bytes]) -> bytes:
    """The request's rows in COPY's binary format: its envelope, then each payload as jsonb."""
    head = b"".join(
        [
            b"\x00\x05\x00\x00\x00\x10",
            envelope.tenant_id.bytes,
            _text(envelope.wire_format),
            _inet_binary(envelope.client_ip) if envelope.client_ip else _NULL,
            _text(envelope.user_agent) if envelope.user_agent is not None else _NULL,
        ]
    )
    parts = []
    for payload in payloads:
        parts += (head, _length(len(payload) + 1), b"\x01", payload)
    return b"".join(parts)


def _text(value: str) -> bytes:
    encoded = value.encode()
    return _length(len(encoded)) + encoded


@functools.lru_cache(maxsize=4096)
def _inet_binary(host: str) -> bytes:
    """inet's binary form: family (2 = IPv4, 3 = IPv6), prefix bits, is_cidr, length, address."""
    address = ipaddress.ip_address(host)
    packed = address.packed
    family = 2 if address.version == 4 else 3
    return _length(4 + len(packed)) + bytes([family, address.max_prefixlen, 0, len(packed)]) + packed


@functools.lru_cache(maxsize=4096)
def _inet(host: str | None) -> str | None:
    """`host` if PostgreSQL's inet takes it; test clients and Unix sockets give other names."""
    if not host:
        return None
    try:
        # inet has no IPv6 zone ("%eth0").
        return str(ipaddress.ip_address(host.split("%", 1)[0]))
    except ValueError:
        return None
