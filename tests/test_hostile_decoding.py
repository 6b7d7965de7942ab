"""Content-Encoding undone under a byte limit: the codings, stacks, members and bombs."""

from __future__ import annotations

import gzip
import zlib

import brotli
import pytest

from crawler.decoding import MAX_LAYERS, BodyDecoder, Overflow, codings
from crawler.errors import ContentError

PAGE = b"<html><title>t</title>" + b"<p>some words</p>" * 500 + b"</html>"


def decode(header: list[str], body: bytes, limit: int = 1 << 20, chunk: int = 1000) -> bytes:
    decoder = BodyDecoder(codings(header), limit)
    for start in range(0, len(body), chunk):
        decoder.feed(body[start : start + chunk])
    return decoder.body(complete=True)


@pytest.mark.parametrize(("header", "layers"), [
    ([], []), ([""], []), (["identity"], []), (["GZIP"], ["gzip"]), (["x-gzip"], ["x-gzip"]),
    (["gzip, br"], ["br", "gzip"]), (["deflate", "br"], ["br", "deflate"]),
    (["identity, gzip"], ["gzip"]),
])
def test_codings_are_undone_last_applied_first(header: list[str], layers: list[str]) -> None:
    assert codings(header) == layers


@pytest.mark.parametrize("header", [["compress"], ["zstd"], ["gzip, bogus"], ["x-squeeze"],
                                    [", ".join(["gzip"] * (MAX_LAYERS + 1))]])
def test_unknown_codings_and_deep_stacks_are_content_errors(header: list[str]) -> None:
    with pytest.raises(ContentError):
        codings(header)


@pytest.mark.parametrize(("header", "body"), [
    (["gzip"], gzip.compress(PAGE)),
    (["x-gzip"], gzip.compress(PAGE)),
    (["gzip"], gzip.compress(PAGE[:100]) + gzip.compress(PAGE[100:])),  # two members
    (["deflate"], zlib.compress(PAGE)),
    (["deflate"], zlib.compress(PAGE, wbits=-15)),  # raw deflate, as some servers send it
    (["br"], brotli.compress(PAGE)),
    (["gzip, br"], brotli.compress(gzip.compress(PAGE))),
    (["deflate, gzip, br"], brotli.compress(gzip.compress(zlib.compress(PAGE)))),
], ids=["gzip", "x-gzip", "members", "deflate", "raw-deflate", "br", "stack-2", "stack-3"])
def test_bodies_decode_whatever_the_chunking(header: list[str], body: bytes) -> None:
    for chunk in (1, 7, 1000, len(body)):
        assert decode(header, body, chunk=chunk) == PAGE


@pytest.mark.parametrize(("header", "pack"), [
    (["gzip"], lambda data: gzip.compress(data, compresslevel=9)),
    (["deflate"], zlib.compress),
    (["br"], brotli.compress),
    (["gzip, gzip"], lambda data: gzip.compress(gzip.compress(data))),
], ids=["gzip", "deflate", "br", "gzip-in-gzip"])
def test_a_bomb_fed_at_once_overflows_without_decoding_it_all(header: list[str],
                                                              pack: object) -> None:
    bomb = pack(b"\0" * (64 << 20))  # type: ignore[operator]
    decoder = BodyDecoder(codings(header), limit=100_000)
    with pytest.raises(Overflow):
        decoder.feed(bomb)
    assert decoder.size <= 2 * 100_000 + (1 << 16), "output is capped near the limit"


def test_truncated_body_keeps_the_first_limit_bytes() -> None:
    decoder = BodyDecoder(codings(["gzip"]), limit=1000)
    with pytest.raises(Overflow):
        decoder.feed(gzip.compress(PAGE))
    assert decoder.truncated() == PAGE[:1000]


@pytest.mark.parametrize(("header", "body"), [
    (["gzip"], gzip.compress(PAGE)[:-30]),
    (["gzip"], b"\x1f\x8b" + b"\xff" * 40),
    (["deflate"], zlib.compress(PAGE)[:50]),
    (["br"], b"not brotli at all, not at all" * 3),
    (["gzip, br"], brotli.compress(b"plain, not gzip")),
], ids=["gzip-cut", "gzip-garbage", "deflate-cut", "br-garbage", "inner-layer-bad"])
def test_corrupt_or_cut_streams_are_content_errors(header: list[str], body: bytes) -> None:
    with pytest.raises(ContentError):
        decode(header, body)


def test_identity_passes_bytes_through_and_counts_them() -> None:
    decoder = BodyDecoder([], limit=10)
    decoder.feed(b"12345")
    decoder.feed(b"67890")
    assert decoder.body(complete=True) == b"1234567890"
    with pytest.raises(Overflow):
        decoder.feed(b"!")
