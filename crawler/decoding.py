"""Step 3c: undo a response's Content-Encoding layers, never holding more than the byte limit.

aiohttp decodes one known coding; the crawler decodes for itself so that `x-gzip`, stacked
codings (`gzip, br`, decoded in reverse order, as curl and browsers do) and every bomb meet
the same rule: each layer's output is capped at `limit + 1` bytes per call, so a body that
would grow past `max_bytes` is refused after at most that many decoded bytes, whatever the
compression ratio.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import brotli  # type: ignore[import-untyped]

from .errors import ContentError

__all__ = ["MAX_LAYERS", "BodyDecoder", "Overflow", "codings"]

MAX_LAYERS = 5  # curl's limit on stacked codings
_GZIP = frozenset({"gzip", "x-gzip"})
_DEFLATE = frozenset({"deflate"})
_BROTLI = frozenset({"br"})
_SKIPPED = frozenset({"", "identity"})


class Overflow(Exception):
    """Control flow: the decoded body passed the limit; the caller refuses or truncates."""


def codings(header_values: list[str]) -> list[str]:
    """The codings to undo, outermost first; ContentError names an unknown one."""
    names = [token.strip().lower() for value in header_values for token in value.split(",")]
    names = [n for n in names if n not in _SKIPPED]
    for name in names:
        if name not in _GZIP | _DEFLATE | _BROTLI:
            raise ContentError(f"unsupported Content-Encoding {name!r}")
    if len(names) > MAX_LAYERS:
        raise ContentError(f"{len(names)} stacked Content-Encodings; at most {MAX_LAYERS}")
    return names[::-1]


class _Layer:
    """One coding: `feed(data, budget)` gives at most `budget` bytes, keeping the rest."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._pending = b""  # input not yet decoded because the budget ran out
        self._brotli: brotli.Decompressor | None = None
        self._zlib: zlib._Decompress | None = None
        self._started = False
        if name in _BROTLI:
            self._brotli = brotli.Decompressor()

    def feed(self, data: bytes, budget: int) -> bytes:
        try:
            if self._brotli is not None:
                return self._feed_brotli(data, budget)
            return self._feed_zlib(data, budget)
        except (zlib.error, brotli.error) as exc:
            raise ContentError(f"corrupt {self.name} body: {exc}") from None

    def _feed_brotli(self, data: bytes, budget: int) -> bytes:
        assert self._brotli is not None
        if self._brotli.is_finished():
            return b""  # trailing bytes after the stream: ignored, as browsers do
        if not self._brotli.can_accept_more_data():
            self._pending += data
            data = b""
        else:
            data, self._pending = self._pending + data, b""
        out: bytes = self._brotli.process(data, output_buffer_limit=budget)
        return out

    def _feed_zlib(self, data: bytes, budget: int) -> bytes:
        data = self._pending + data
        self._pending = b""
        if self._zlib is None:
            if not data:
                return b""
            self._zlib = self._new_zlib(data)
        out = bytearray()
        while data and len(out) < budget:
            piece = self._zlib.decompress(data, budget - len(out))
            out += piece
            data = self._zlib.unconsumed_tail
            if self._zlib.eof:
                rest = self._zlib.unused_data
                if self.name in _GZIP and rest.lstrip(b"\0"):  # another gzip member
                    self._zlib = self._new_zlib(rest)
                    data = rest
                else:
                    data = b""
        self._pending = data
        return bytes(out)

    def _new_zlib(self, data: bytes) -> zlib._Decompress:
        if self.name in _GZIP:
            return zlib.decompressobj(wbits=31)
        # RFC 9110 deflate is zlib-wrapped; some servers send it raw, and browsers accept that
        raw = data[0] & 0x0F != 8
        return zlib.decompressobj(wbits=-15 if raw else 15)

    @property
    def has_more(self) -> bool:
        """Decoded bytes are waiting for budget, without more input."""
        if self._brotli is not None:
            return not self._brotli.can_accept_more_data() or bool(self._pending)
        return bool(self._pending)

    def finished(self) -> bool:
        if self._brotli is not None:
            return bool(self._brotli.is_finished())
        return self._zlib is None or self._zlib.eof


class BodyDecoder:
    """Raw body chunks in, decoded bytes out; `Overflow` once more than `limit` came out."""

    def __init__(self, layers: list[str], limit: int) -> None:
        self._layers = [_Layer(name) for name in layers]
        self.limit = limit
        self._chunks: list[bytes] = []
        self.size = 0

    def feed(self, data: bytes) -> None:
        for piece in self._through(data, 0):
            self._keep(piece)

    def _budget(self) -> int:
        return self.limit + 1 - self.size  # at least 1 while size is within the limit

    def _through(self, data: bytes, index: int) -> Iterator[bytes]:
        """Decoded pieces, lazily: the budget is read again after each piece is kept."""
        if index == len(self._layers):
            if data:
                yield data
            return
        layer = self._layers[index]
        piece = layer.feed(data, self._budget())
        while True:
            yield from self._through(piece, index + 1)
            if not layer.has_more:
                return
            piece = layer.feed(b"", self._budget())
            if not piece:
                return

    def _keep(self, piece: bytes) -> None:
        self.size += len(piece)
        self._chunks.append(piece)
        if self.size > self.limit:
            raise Overflow

    def body(self, *, complete: bool) -> bytes:
        """The decoded body; with `complete`, a compressed stream cut short is an error."""
        if complete:
            for layer in self._layers:
                if not layer.finished():
                    raise ContentError(f"{layer.name} body ends before its compressed stream")
        return b"".join(self._chunks)

    def truncated(self) -> bytes:
        """The first `limit` decoded bytes (robots.txt reads only so much)."""
        return b"".join(self._chunks)[: self.limit]
