"""Rate limiting and body decoding, on their own."""

from __future__ import annotations

import gzip
import zlib

import pytest

from touchpoints.collect.body import inflate, parse_json
from touchpoints.collect.ratelimit import RateLimiter
from touchpoints.errors import InvalidInput, PayloadTooLarge, RateLimited


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_at_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=10, burst=20, clock=clock)
    limiter.take("k", 20)
    with pytest.raises(RateLimited) as refused:
        limiter.take("k", 5)
    assert refused.value.retry_after == 1  # 5 tokens at 10/s: half a second, rounded up
    clock.now += 0.5
    limiter.take("k", 5)
    limiter.take("other", 20)  # each key has its own bucket
    with pytest.raises(RateLimited) as too_big:
        limiter.take("k", 100)
    assert too_big.value.retry_after == 2  # never more than a full bucket's wait


def test_inflate_within_and_past_the_limit() -> None:
    data = b'{"a": "' + b"x" * 1000 + b'"}'
    assert inflate(gzip.compress(data), "gzip", 2000) == data
    assert inflate(zlib.compress(data), "deflate", 2000) == data
    assert inflate(data, None, 2000) == data
    with pytest.raises(PayloadTooLarge):
        inflate(gzip.compress(data), "gzip", 500)
    with pytest.raises(PayloadTooLarge):
        inflate(data, "identity", 500)
    with pytest.raises(InvalidInput, match="truncated"):
        inflate(gzip.compress(data)[:-12], "gzip", 2000)
    with pytest.raises(InvalidInput, match="not supported"):
        inflate(data, "br", 2000)


def test_parse_json_content_types() -> None:
    assert parse_json(b'{"a": 1}', "text/plain;charset=UTF-8") == {"a": 1}
    assert parse_json(b'{"a": 1}', None) == {"a": 1}
    with pytest.raises(InvalidInput, match="Content-Type"):
        parse_json(b'{"a": 1}', "multipart/form-data")
