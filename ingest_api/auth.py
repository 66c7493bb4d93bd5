"""Write keys: where a request carries one, and which tenant it belongs to.

A key is accepted as `Authorization: Bearer KEY`; as HTTP Basic with the key as user name
and an empty password, base64 of "KEY:" (Segment's and RudderStack's SDKs) or of "KEY"
alone (some other clients); or as `?writeKey=KEY`, because navigator.sendBeacon cannot set
headers. The Segment-compatible routes also take `writeKey` from the JSON body, as
analytics.js and some server SDKs send it; those routes strip it before anything is stored.
"""

from __future__ import annotations

import base64
import binascii
import time
from uuid import UUID

from litestar import Request

from ingest_api.database import Database
from ingest_api.errors import AuthError
from tributary.tenants import hash_key

HOW_TO_SEND = "send it as Authorization: Bearer <key>, as Basic auth with the key as user name, or as ?writeKey=<key>"
HOW_TO_SEND_SEGMENT = (
    "send it as Authorization: Bearer <key>, as Basic auth with the key as user name, as ?writeKey=<key>, "
    'or as "writeKey" in the JSON body'
)

# tenants.tenant_for_key's query, on the API's async pool.
_TENANT_FOR_KEY = "select tenant_id from ops.write_keys where key_hash = %s and revoked_at is null"


def write_key_from(authorization: str | None, query_key: str | None) -> str:
    """The write key a request carries; the Authorization header wins over the query string."""
    if authorization:
        scheme, _, credentials = authorization.strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer" and credentials:
            return credentials
        if scheme.lower() == "basic" and credentials:
            return basic_user(credentials)
    if query_key:
        return query_key
    if authorization:
        raise AuthError(f"the Authorization header has no write key in Bearer or Basic form: {HOW_TO_SEND}")
    raise AuthError(f"writeKey is missing: {HOW_TO_SEND}")


def basic_user(credentials: str) -> str:
    """The user name in HTTP Basic credentials: base64 of "user:password", or of "user" alone."""
    padded = credentials + "=" * (-len(credentials) % 4)
    try:
        decoded = base64.b64decode(padded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise AuthError(f'the Basic credentials are not base64 of "<key>:": {HOW_TO_SEND}') from None
    user, _, _password = decoded.partition(":")
    if not user:
        raise AuthError(f"the Basic credentials have no user name: {HOW_TO_SEND}")
    return user


class WriteKeys:
    """Write key to tenant, cached in this process so that most requests need no lookup.

    A cached key is trusted for `ttl` seconds: a revoked key keeps working on each API
    process for up to that long after its revocation. Unknown keys are not cached, so a key
    works as soon as it is created.
    """

    def __init__(self, database: Database, ttl: float = 60.0, max_entries: int = 10_000):
        self._database = database
        self._ttl = ttl
        self._max_entries = max_entries
        self._cache: dict[bytes, tuple[UUID, float]] = {}

    async def tenant_for(self, key: str) -> UUID | None:
        key_hash = hash_key(key)
        now = time.monotonic()
        cached = self._cache.get(key_hash)
        if cached is not None and cached[1] > now:
            return cached[0]
        async with self._database.connection() as conn:
            row = await (await conn.execute(_TENANT_FOR_KEY, (key_hash,))).fetchone()
        if row is None:
            self._cache.pop(key_hash, None)
            return None
        if len(self._cache) >= self._max_entries:
            # Tenants have a handful of keys each; a full cache means churn, and starting
            # over costs one lookup per live key.
            self._cache.clear()
        self._cache[key_hash] = (row[0], now + self._ttl)
        return row[0]


async def authenticate(request: Request, write_keys: WriteKeys) -> UUID:
    """The tenant of the request's write key (a Litestar dependency of the event routes)."""
    key = write_key_from(request.headers.get("authorization"), request.query_params.get("writeKey"))
    return await _tenant_of(write_keys, key, HOW_TO_SEND)


def carries_write_key(request: Request) -> bool:
    """Whether the headers or the query string carry a key; if not, a Segment body may."""
    return bool(request.headers.get("authorization") or request.query_params.get("writeKey"))


async def authenticate_body_key(body_key: str | None, write_keys: WriteKeys) -> UUID:
    """The tenant of a `writeKey` sent in a Segment body, for a request whose headers and query
    string carry none (see `carries_write_key`)."""
    if not body_key:
        raise AuthError(f"writeKey is missing: {HOW_TO_SEND_SEGMENT}")
    return await _tenant_of(write_keys, body_key, HOW_TO_SEND_SEGMENT)


async def _tenant_of(write_keys: WriteKeys, key: str, how_to_send: str) -> UUID:
    tenant_id = await write_keys.tenant_for(key)
    if tenant_id is None:
        raise AuthError(
            f"the write key is unknown or revoked: use a key from `tributary tenant create`, and {how_to_send}"
        )
    return tenant_id
