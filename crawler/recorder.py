"""Step 5: make finished URLs durable in batches: frontier state, records, archive, sinks.

The order of writes is what a crash may interrupt, so it is fixed here, and one transaction
decides everything:

1. the frontier *prepares* the batch: URL states and newly admitted links in an open
   transaction, which also answers `near_duplicate_of` and `followed`;
2. the records are encoded; the link lines are appended to the links file, and the WARC
   records (when on) to the archive;
3. the transaction commits together with the batch's *journal*: the page and error lines with
   the size each file had before them, and the links file's and the archive's sizes after
   this batch. From this instant the records exist, whatever happens next;
4. the page and error lines are appended to their files;
5. the sink plugins get the page records.

A crash before 3 leaves the URLs leased (queued again on resume, fetched again, with nothing
of theirs on disk: the links file and the archive are cut back to their committed sizes). A
crash after 3 leaves the pages and errors files short of, or torn inside, the last batch: on
resume each is cut back to its journaled size and the batch written again. So records and
state always agree, no URL with a record is fetched again, and no discovered link is lost.
Links, the bulk of the bytes, are written once; only the small page and error lines are also
written into SQLite.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import failpoints
from .clock import utc_iso
from .frontier import Candidate, Frontier, Journal, Outcome
from .models import Links, ParseResult, Request, Response
from .pools import ThreadPool
from .records import LinkRecord, Record, content_record, error_record, link_record, page_record
from .sinks import JsonlFiles, PluginSinks, encode_batches
from .stats import Stats
from .warc import WarcFile

FLUSH_BATCH = 256  # outcomes that make a flush due before its timer
# links that do the same: hub pages carry thousands each. The engine keeps the links of the
# URLs in the works within BACKLOG of these too: at 16 384, hubs of 3 162 links held the main
# process at 124 to 142 MB of RSS in the 10 000 000-URL frontier run, at 8 192 at 108 to 109
# (the URLs/s the same within the machine's noise)
FLUSH_LINKS = 8_192
BACKLOG = 4  # flushes' worth waiting, past which the engine starts no new URL
BULK = ("links", "content")  # files written before the commit, cut back on resume


@dataclass(frozen=True, slots=True)
class Finished:
    """One URL's end, as the engine saw it, waiting for the next flush: the outcome the
    frontier makes durable and the records it produced, built here once (`page`, `failure`,
    `skipped`), never changed after; the flush only adds what the frontier answers."""

    outcome: Outcome
    page: Record | None = None  # its `near_duplicate_of` comes with the flush
    links: Links = field(default_factory=Links)
    error: Record | None = None
    response: Response | None = None  # for the WARC file
    content: Record | None = None  # the main content (--extract), for content.jsonl

    @classmethod
    def page_of(cls, request: Request, response: Response, result: ParseResult | None,
                media_type: str | None, candidates: Sequence[Candidate], *,
                archive: bool, extract: str = "") -> Finished:
        """A page record (`result` None for a 304), the outcome that says the same, and with
        `extract` the page's main-content record."""
        record = page_record(request, response, result, media_type)
        outcome = Outcome(
            request, "done", status=response.status, fetched_at=time.time(),
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
            sha256=record["sha256"], simhash=record["simhash"], title=record["title"],
            candidates=tuple(candidates))
        content = content_record(record, result, extract) if result is not None else None
        return cls(outcome, page=record, links=result.links if result is not None else Links(),
                   response=response if archive else None, content=content)

    @classmethod
    def failure(cls, request: Request, kind: str, message: str, attempts: int) -> Finished:
        now = time.time()
        return cls(Outcome(request, "failed", fetched_at=now),
                   error=error_record(request, kind, message, attempts, utc_iso(now)))

    @classmethod
    def skipped(cls, request: Request) -> Finished:
        """robots.txt forbids it: no record."""
        return cls(Outcome(request, "skipped"))


class Recorder:
    def __init__(self, frontier: Frontier, files: JsonlFiles, sinks: PluginSinks,
                 warc: WarcFile | None, threads: ThreadPool, stats: Stats) -> None:
        self._frontier = frontier
        self._files = files
        self._sinks = sinks
        self._warc = warc
        self._threads = threads
        self._stats = stats
        self._pending: list[Finished] = []
        self._extra: list[Candidate] = []  # URLs of no page (a sitemap's)
        self._links = 0  # links and candidates of the pending outcomes
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.commits = 0  # batches made durable by this invocation
        self._failed: BaseException | None = None

    def add(self, finished: Finished) -> bool:
        """Queue one outcome; True when enough are waiting that a flush is due."""
        self._pending.append(finished)
        self._links += len(finished.links) + len(finished.outcome.candidates)
        return self.due

    def admit(self, candidates: Sequence[Candidate]) -> bool:
        """Queue URLs found outside a page (a sitemap's) for the next flush; True when due."""
        self._extra.extend(candidates)
        self._links += len(candidates)
        return self.due

    @property
    def due(self) -> bool:
        """Enough is waiting for a flush before the timer's."""
        return len(self._pending) >= FLUSH_BATCH or self._links >= FLUSH_LINKS

    @property
    def links(self) -> int:
        """Links and candidates of the outcomes waiting for a flush."""
        return self._links

    @property
    def pending(self) -> bool:
        return bool(self._pending or self._extra)

    @property
    def full(self) -> bool:
        """Outcomes are waiting faster than they are made durable (a slow disk, pages with
        thousands of links): the engine starts no new URL until a flush drains them, so
        memory does not grow with the lag."""
        return len(self._pending) >= BACKLOG * FLUSH_BATCH or self._links >= BACKLOG * FLUSH_LINKS

    async def flush(self) -> None:
        """Make what is pending durable. A caller that is cancelled (a stop) does not cancel
        the batch half-way: it goes on in its own task, and the next flush waits for it."""
        if self._failed is not None:
            raise self._failed
        task = asyncio.create_task(self._flush())
        self._tasks.add(task)
        task.add_done_callback(self._flushed)
        await asyncio.shield(task)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._failed = task.exception()

    async def _flush(self) -> None:
        async with self._lock:
            if not self._pending and not self._extra:
                return
            batch, self._pending, self._links = self._pending, [], 0
            extra, self._extra = self._extra, []
            prepared = await self._frontier.prepare([f.outcome for f in batch], extra)
            self._stats.count("duplicates", prepared.admitted.count(False))
            pages: list[Record] = []
            links: list[LinkSet] = []
            errors: list[Record] = []
            content: list[Record] = []
            for f, admission in zip(batch, prepared.admissions, strict=True):
                if f.page is not None:
                    page = {**f.page, "near_duplicate_of": admission.near_duplicate_of}
                    pages.append(page)
                    links.append((page["url"], f.outcome.candidates, admission.admitted,
                                  f.links))
                    self._stats.count("links", len(f.links))
                    self._count_page(f.outcome.request, page)
                if f.content is not None:
                    content.append(f.content)
                    self._stats.count("extracted" if f.content["content"] else "extracted_empty")
                if f.error is not None:
                    errors.append(f.error)
                    self._stats.error(f.error["kind"])
                self._stats.count("duplicates", admission.admitted.count(False))
            data = await self._threads.run(
                _encode, {"pages": pages, "errors": errors, "content": content}, links)
            # links and content, the bulk of the bytes, go to disk before the commit and are
            # only cut back on resume; pages and errors, small, travel in the journal and are
            # replayed
            bulk = {kind: data.pop(kind, b"") for kind in BULK if kind in self._files.sizes}
            await self._files.write(bulk)
            failpoints.reach("links-written")
            journal = Journal({kind: (self._files.sizes[kind], blob)
                               for kind, blob in data.items()})
            journal.files.update((kind, (self._files.sizes[kind], b"")) for kind in bulk)
            if self._warc is not None:
                archive = [f.response for f in batch if f.response is not None]
                journal.files["warc"] = (await self._threads.run(self._warc.write, archive), b"")
            if self._sinks:
                journal.files["sinks"] = (self._sinks.delivered, b"")
            journal.totals = self._stats.totals()
            failpoints.reach("before-commit")
            await self._frontier.commit(prepared, journal)
            self.commits += 1
            failpoints.reach("after-commit")
            await self._files.write(data)
            failpoints.reach("after-write")
            await self._sinks.put(pages, self._files.sizes["pages"])

    def _count_page(self, request: Request, page: Record) -> None:
        """The page counts and the run's change summary (new, changed, unchanged, gone)."""
        self._stats.page(page["status"], page["bytes"] or 0)
        last = request.last_status
        # each page counted once (contract 4b): a page gone is not also changed
        if last is None:
            self._stats.count("new")
        elif page["status"] in (404, 410) and 200 <= last < 300:
            self._stats.count("gone")
        elif page["not_modified"] or page["changed"] is False:
            self._stats.count("unchanged")
        elif page["changed"]:
            self._stats.count("changed")


# a page's links as the flush has them: its URL, its candidates, which were admitted, its links
LinkSet = tuple[str, Sequence[Candidate], Sequence[bool], Links]


def _encode(batches: dict[str, Sequence[Record]], links: Sequence[LinkSet]) -> dict[str, bytes]:
    """The batch's lines, in the thread pool: link records are built here, not on the loop,
    where a page of 15 000 links would hold it for tens of milliseconds."""
    return encode_batches({**batches, "links": [
        record for page, candidates, admitted, page_links in links
        for record in _link_records(page, candidates, admitted, page_links)]})


def _link_records(page: str, candidates: Sequence[Candidate], admitted: Sequence[bool],
                  links: Links) -> list[LinkRecord]:
    followed = {c.url: ok for c, ok in zip(candidates, admitted, strict=True)}
    # a repeat of a link is not followed again
    return [link_record(page, to, text, nofollow, followed.pop(to, False))
            for to, text, nofollow in zip(links.to, links.text, links.nofollow, strict=True)]
