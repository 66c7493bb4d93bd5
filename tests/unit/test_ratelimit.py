"""The token bucket, on a clock the test controls."""

import uuid

import pytest

from ingest_api.errors import PayloadTooLarge
from ingest_api.ratelimit import RateLimited, RateLimiter


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_tenant_may_burst_then_is_held_to_its_rate():
    clock = Clock()
    limiter = RateLimiter(rate_per_s=100, burst=1000, clock=clock)
    tenant = uuid.uuid4()
    limiter.take(tenant, 1000)
    with pytest.raises(RateLimited) as refused:
        limiter.take(tenant, 50)
    assert refused.value.headers == {"Retry-After": "1"}
    clock.now += 0.5  # 50 tokens back
    limiter.take(tenant, 50)
    with pytest.raises(RateLimited):
        limiter.take(tenant, 1)


def test_a_refused_request_spends_no_tokens_and_tenants_do_not_share_buckets():
    clock = Clock()
    limiter = RateLimiter(rate_per_s=10, burst=10, clock=clock)
    first, second = uuid.uuid4(), uuid.uuid4()
    limiter.take(first, 6)
    with pytest.raises(RateLimited) as refused:
        limiter.take(first, 5)
    assert refused.value.retry_after == pytest.approx(0.1)
    limiter.take(first, 4)
    limiter.take(second, 10)


def test_a_request_bigger_than_the_bucket_is_refused_for_good_not_told_to_wait():
    limiter = RateLimiter(rate_per_s=10, burst=10)
    with pytest.raises(PayloadTooLarge, match="smaller batches"):
        limiter.take(uuid.uuid4(), 11)


def test_the_bucket_never_fills_beyond_the_burst():
    clock = Clock()
    limiter = RateLimiter(rate_per_s=10, burst=20, clock=clock)
    tenant = uuid.uuid4()
    clock.now += 3600
    limiter.take(tenant, 20)
    with pytest.raises(RateLimited):
        limiter.take(tenant, 1)
