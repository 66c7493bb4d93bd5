"""Per-tenant rate limiting: a token bucket per tenant, counted in events, in this process.

One tenant flooding the API must not starve the others or the database. Each event
(not each request: a batch of 500 costs 500) takes a token; tokens refill at
`rate_limit_per_s` up to `rate_limit_burst`. The buckets live in the process, so with N
API processes a tenant may send up to N times the rate; the limit is there to stop a
runaway client, not to bill, and a shared counter would add a database round trip to
every request.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from uuid import UUID

from ingest_api.errors import ClientError, PayloadTooLarge


class RateLimited(ClientError):
    status_code = 429

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self._rate = rate_per_s
        self._burst = burst
        self._clock = clock
        self._buckets: dict[UUID, tuple[float, float]] = {}  # tenant → (tokens, as of)

    def take(self, tenant_id: UUID, events: int) -> None:
        """Spend `events` tokens of the tenant's bucket, or raise RateLimited and spend none."""
        if events > self._burst:
            # Waiting would never help: the bucket never holds this many tokens.
            raise PayloadTooLarge(
                f"this request carries {events:,} events, more than the tenant's burst of {self._burst:,}:"
                " send smaller batches, or raise TRIBUTARY_RATE_LIMIT_BURST"
            )
        now = self._clock()
        tokens, as_of = self._buckets.get(tenant_id, (float(self._burst), now))
        tokens = min(float(self._burst), tokens + (now - as_of) * self._rate)
        if events > tokens:
            self._buckets[tenant_id] = (tokens, now)
            wait = (events - tokens) / self._rate
            raise RateLimited(
                f"this tenant is over its rate of {self._rate:,.0f} events/s (burst {self._burst:,}):"
                f" retry after {math.ceil(wait)} s, or raise TRIBUTARY_RATE_LIMIT_PER_S",
                retry_after=wait,
            )
        self._buckets[tenant_id] = (tokens - events, now)
