"""Step 5b: every response as a WARC 1.1 record through warcio, gzip per record, in a thread."""

from __future__ import annotations

import io
from collections.abc import Sequence
from http import HTTPStatus
from pathlib import Path
from typing import BinaryIO

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from . import __version__
from .models import Response

# The body is kept decoded (as the records' sha256 and bytes are), so the headers that
# describe the transfer rather than the content would be false in the archive.
_TRANSFER_HEADERS = frozenset({"content-encoding", "transfer-encoding", "content-length"})


def cut_back(path: Path, committed: int) -> None:
    """On resume: drop the records a batch appended but never committed (its URLs are fetched
    again), so that the archive holds what the records say was fetched."""
    if path.exists() and path.stat().st_size > committed:
        with path.open("rb+") as f:
            f.truncate(committed)


class WarcFile:
    """One `.warc.gz` per run (per worker when shared); blocking, so call it from threads."""

    def __init__(self, path: Path, user_agent: str) -> None:
        self.path = path
        self._user_agent = user_agent
        self._stream: BinaryIO | None = None
        self._writer: WARCWriter | None = None

    def open(self) -> None:
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._stream = self.path.open("ab")
        self._writer = WARCWriter(self._stream, gzip=True, warc_version="WARC/1.1")
        if new:
            info = {"software": f"crawler/{__version__} (warcio)", "format": "WARC File Format 1.1",
                    "http-header-user-agent": self._user_agent}
            self._writer.write_record(self._writer.create_warcinfo_record(self.path.name, info))

    def write(self, responses: Sequence[Response]) -> int:
        """Append the responses' records; returns the file's size after them."""
        assert self._writer is not None and self._stream is not None, "WARC used before open()"
        for response in responses:
            self._writer.write_record(self._record(self._writer, response))
        self._stream.flush()
        return self._stream.tell()

    @staticmethod
    def _record(writer: WARCWriter, response: Response) -> object:
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = ""
        headers = [(name, value) for name, value in response.headers.items()
                   if name not in _TRANSFER_HEADERS]
        headers.append(("content-length", str(len(response.body))))
        http = StatusAndHeaders(f"{response.status} {reason}".strip(), headers,
                                protocol="HTTP/1.1")
        return writer.create_warc_record(
            response.final_url, "response", payload=io.BytesIO(response.body),
            length=len(response.body), http_headers=http,
            warc_headers_dict={"WARC-Date": response.fetched_at})

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
            self._writer = None
