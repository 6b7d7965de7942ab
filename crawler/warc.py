"""Step 5b: every response and its request as WARC 1.1 records through warcio, gzip per record.

warcio is blocking, so the recorder calls `WarcFile.write` in the thread pool. Per fetched URL
the file gets a `response` record (a `revisit` record, profile server-not-modified, for a 304
answer) and the `request` record that asked for it, tied to it by `WARC-Concurrent-To`.
Headers are archived as received: names in their case, a repeated header on lines of its own.

A replay tool shows a revisit with the HTTP headers in its block and the payload of the
record it refers to; a block saying `304 Not Modified` replays as an empty page (pywb sends
what the block says). So a 304's block holds what an HTTP cache serves after revalidation
(RFC 9111 4.3.4): the earlier response's status and headers, updated by the 304's. The 304
itself is in the request record's answer, the page record and `WARC-Profile`.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from . import __version__
from .models import Response

log = logging.getLogger(__name__)

NOT_MODIFIED_PROFILE = "http://netpreserve.org/warc/1.1/revisit/server-not-modified"
# The body is kept decoded (as the records' sha256 and bytes are), so the headers that
# describe the transfer rather than the content would be false in the archive.
_TRANSFER_HEADERS = frozenset({"content-encoding", "transfer-encoding", "content-length"})


def warc_file_path(run_dir: Path, suffix: str) -> Path:
    """`crawl-RUN_ID.warc.gz` (`crawl-RUN_ID-WORKER.warc.gz` in a fleet): the files of many
    runs and workers can then sit in one pywb collection without clashing."""
    return run_dir / f"crawl-{run_dir.name}{suffix}.warc.gz"


def cut_back(path: Path, committed: int) -> None:
    """On resume: drop the records a batch appended but never committed (its URLs are fetched
    again), so that the archive holds what the records say was fetched."""
    if path.exists() and path.stat().st_size > committed:
        with path.open("rb+") as f:
            f.truncate(committed)


@dataclass(frozen=True, slots=True)
class _Earlier:
    """The last response record of a URL in an earlier run: what a revisit refers to."""

    record_id: str
    date: str
    payload_digest: str | None
    path: Path  # where the record is, to read its HTTP headers back at a 304
    offset: int


class WarcFile:
    """One `.warc.gz` per run (per worker when shared); blocking, so call it from threads."""

    def __init__(self, path: Path, user_agent: str) -> None:
        self.path = path
        self._user_agent = user_agent
        self._stream: BinaryIO | None = None
        self._writer: WARCWriter | None = None
        self._earlier: dict[str, _Earlier] | None = None  # read at the first 304

    def open(self) -> None:
        """Open for appending (a resumed run continues its file, cut back first by `cut_back`
        to its committed size); a new file starts with a warcinfo record."""
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._stream = self.path.open("ab")
        self._writer = WARCWriter(self._stream, gzip=True, warc_version="WARC/1.1")
        if new:
            info = {"software": f"crawler/{__version__} (warcio)", "format": "WARC File Format 1.1",
                    "http-header-user-agent": self._user_agent}
            self._writer.write_record(self._writer.create_warcinfo_record(self.path.name, info))

    def write(self, responses: Sequence[Response]) -> int:
        """Append the responses' records; returns the file's size after them."""
        writer = self._writer
        assert writer is not None and self._stream is not None, "WARC used before open()"
        for response in responses:
            if response.status == 304:
                answer = self._revisit(writer, response)
            else:
                answer = _response(writer, response)
            writer.write_request_response_pair(_request(writer, response), answer)
        self._stream.flush()
        return self._stream.tell()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
            self._writer = None

    def _revisit(self, writer: WARCWriter, response: Response) -> Any:
        """A 304 answer: its headers only, referring to the full response it confirms, which
        is the URL's last response record in an earlier run's WARC file, where there is one."""
        if self._earlier is None:
            self._earlier = _earlier_responses(self.path)
        warc_headers = {
            "WARC-Date": response.fetched_at,
            "WARC-Profile": NOT_MODIFIED_PROFILE,
            "WARC-Refers-To-Target-URI": response.final_url,
        }
        earlier = self._earlier.get(response.final_url)
        http = _http_headers(response, None)
        if earlier is not None:
            warc_headers["WARC-Refers-To"] = earlier.record_id
            warc_headers["WARC-Refers-To-Date"] = earlier.date
            if earlier.payload_digest:
                warc_headers["WARC-Payload-Digest"] = earlier.payload_digest
            stored = _stored_headers(earlier)
            if stored is not None:
                http = _freshened(stored, http)
        return writer.create_warc_record(
            response.final_url, "revisit", http_headers=http, warc_headers_dict=warc_headers)


def _response(writer: WARCWriter, response: Response) -> Any:
    return writer.create_warc_record(
        response.final_url, "response", payload=io.BytesIO(response.body),
        length=len(response.body), http_headers=_http_headers(response, len(response.body)),
        warc_headers_dict={"WARC-Date": response.fetched_at})


def _request(writer: WARCWriter, response: Response) -> Any:
    """The last hop's request as sent (aiohttp's headers, Host included)."""
    parts = urlsplit(response.final_url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    http = StatusAndHeaders(f"GET {target} HTTP/1.1", list(response.request_headers),
                            is_http_request=True)
    return writer.create_warc_record(response.final_url, "request", http_headers=http)


def _http_headers(response: Response, length: int | None) -> StatusAndHeaders:
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = ""
    received = response.raw_headers or tuple(response.headers.items())
    headers = [(name, value) for name, value in received
               if name.lower() not in _TRANSFER_HEADERS]
    if length is not None:
        headers.append(("Content-Length", str(length)))
    return StatusAndHeaders(f"{response.status} {reason}".strip(), headers, protocol="HTTP/1.1")


def _stored_headers(earlier: _Earlier) -> StatusAndHeaders | None:
    try:
        with earlier.path.open("rb") as stream:
            stream.seek(earlier.offset)
            for record in ArchiveIterator(stream):
                return record.http_headers
    except Exception as exc:  # a damaged old archive costs the revisit its stored headers
        log.warning("cannot read %s at %d: %s", earlier.path, earlier.offset, exc)
    return None


def _freshened(stored: StatusAndHeaders, answer: StatusAndHeaders) -> StatusAndHeaders:
    """The stored response updated by a 304's headers (RFC 9111 4.3.4), its length kept."""
    fresh = {name.lower() for name, _ in answer.headers} - {"content-length"}
    headers = [(n, v) for n, v in stored.headers if n.lower() not in fresh]
    headers += [(n, v) for n, v in answer.headers if n.lower() in fresh]
    return StatusAndHeaders(stored.statusline, headers, protocol=stored.protocol)


def _earlier_responses(path: Path) -> dict[str, _Earlier]:
    """URL -> its last response record in the WARC files of the job's earlier runs (run
    folders sort by start time), read once, on the first 304 of the run."""
    runs = path.parent.parent
    found: dict[str, _Earlier] = {}
    for run in sorted(p for p in runs.iterdir() if p.is_dir() and p.name < path.parent.name):
        for warc in sorted(run.glob("*.warc.gz")):
            try:
                with warc.open("rb") as stream:
                    records = ArchiveIterator(stream)
                    for record in records:
                        if record.rec_type == "response":
                            head = record.rec_headers
                            found[head.get_header("WARC-Target-URI")] = _Earlier(
                                head.get_header("WARC-Record-ID"), head.get_header("WARC-Date"),
                                head.get_header("WARC-Payload-Digest"), warc,
                                records.get_record_offset())
            except Exception as exc:  # a damaged old archive only costs the references
                log.warning("cannot read %s for revisit references: %s", warc, exc)
    return found
