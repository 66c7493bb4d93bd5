"""The landing writer: events into landing.events_raw, committed before the API answers.

One COPY per request, in one transaction: a request costs the same few round trips whether
it carries one event or five hundred, and all its rows share one received_at (now() is the
transaction's start). The payload column gets the JSON text as the client sent it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import psycopg
from litestar import Request

from ingest_api.database import Database
from ingest_api.errors import ClientError
from ingest_api.schemas import FieldError

COPY_SQL = "copy landing.events_raw (tenant_id, wire_format, client_ip, user_agent, payload) from stdin"
_COPY_CONTEXT = re.compile(r"COPY events_raw, line (?P<line>\d+), column (?P<column>\w+)")


@dataclass(frozen=True)
class Envelope:
    """What the API saw of a request, stored beside each of its events."""

    tenant_id: UUID
    client_ip: str | None
    user_agent: str | None
    wire_format: str = "native"

    @classmethod
    def of(cls, request: Request, tenant_id: UUID, wire_format: str = "native") -> Envelope:
        host = request.client.host if request.client else None
        return cls(tenant_id, _inet(host), request.headers.get("user-agent"), wire_format)


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
    """Commit `payloads` to landing.events_raw; return only once they are durable."""
    row_head = (envelope.tenant_id, envelope.wire_format, envelope.client_ip, envelope.user_agent)
    async with database.connection() as conn:
        try:
            async with conn.transaction(), conn.cursor() as cursor, cursor.copy(COPY_SQL) as copy:
                for payload in payloads:
                    await copy.write_row((*row_head, payload.decode()))
        except psycopg.DataError as error:
            context = _COPY_CONTEXT.search(error.diag.context or "")
            if context is None or context["column"] != "payload":
                raise
            raise UnstorableEvent(int(context["line"]) - 1, error.diag.message_primary or str(error)) from error


def _inet(host: str | None) -> str | None:
    """`host` if PostgreSQL's inet takes it; test clients and Unix sockets give other names."""
    if not host:
        return None
    try:
        # inet has no IPv6 zone ("%eth0").
        return str(ipaddress.ip_address(host.split("%", 1)[0]))
    except ValueError:
        return None
