"""Inflating gzip bodies chunk by chunk, within a limit, without inflating a bomb into memory."""

from __future__ import annotations

import gzip
import os
import tracemalloc
import zlib

import pytest

from ingest_api.body import GzipInflater, is_gzipped
from ingest_api.errors import ClientError, PayloadTooLarge, UnsupportedMediaType


def inflate(body: bytes, limit: int, chunk: int = 1000) -> bytes:
    inflater = GzipInflater(limit, "send less")
    for start in range(0, len(body), chunk):
        inflater.feed(body[start : start + chunk])
    return inflater.finish()


def gzip_bomb(mib: int) -> bytes:
    """`mib` MiB of zeros as gzip (about 1 KiB a MiB), made without holding the zeros whole."""
    compressor = zlib.compressobj(9, wbits=31)
    zeros = bytes(1024 * 1024)
    return b"".join(compressor.compress(zeros) for _ in range(mib)) + compressor.flush()


@pytest.mark.parametrize("chunk", [1, 7, 1000, 1 << 20])
def test_a_body_inflates_the_same_whatever_the_chunks_it_arrives_in(chunk):
    text = os.urandom(3000).hex().encode()

    assert inflate(gzip.compress(text), limit=len(text), chunk=chunk) == text


def test_a_body_of_exactly_the_limit_passes_and_one_byte_more_does_not():
    assert inflate(gzip.compress(b"x" * 100), limit=100) == b"x" * 100
    with pytest.raises(PayloadTooLarge, match="limit of 99 bytes: send less"):
        inflate(gzip.compress(b"x" * 100), limit=99)


def test_concatenated_gzip_members_inflate_to_their_concatenation():
    assert inflate(gzip.compress(b"ab") + gzip.compress(b"") + gzip.compress(b"cd"), limit=10, chunk=3) == b"abcd"


def test_a_bomb_is_refused_after_inflating_no_more_than_the_limit():
    bomb = gzip_bomb(64)

    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge):
            inflate(bomb, limit=4 * 1024 * 1024, chunk=64 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 12 * 1024 * 1024


@pytest.mark.parametrize(
    "body",
    [b"plain text", gzip.compress(b"{}")[:-1], gzip.compress(b"{}") + b"junk", b"\x1f\x8b\x08\x00" + b"\xff" * 20],
    ids=["not gzip", "cut short", "trailing junk", "bad deflate data"],
)
def test_what_is_not_whole_gzip_is_a_client_error(body):
    with pytest.raises(ClientError, match="gzip") as error:
        inflate(body, limit=1000)
    assert not isinstance(error.value, PayloadTooLarge)


def test_an_empty_body_inflates_to_nothing_for_the_json_check_to_refuse():
    assert inflate(b"", limit=10) == b""


@pytest.mark.parametrize(
    ("header", "gzipped"),
    [(None, False), ("", False), ("identity", False), ("gzip", True), ("GZIP", True), ("x-gzip", True)],
)
def test_gzip_and_identity_are_the_accepted_content_encodings(header, gzipped):
    assert is_gzipped(header) is gzipped


@pytest.mark.parametrize("header", ["br", "deflate", "gzip, gzip", "gzip, br", "zstd"])
def test_any_other_content_encoding_is_unsupported(header):
    with pytest.raises(UnsupportedMediaType, match="Content-Encoding"):
        is_gzipped(header)
