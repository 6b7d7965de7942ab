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
from dataclasses import dataclass, field

from . import failpoints
from .frontier import Frontier, Journal, Outcome
from .models import Link, Request, Response
from .pools import ThreadPool
from .records import Record, link_record
from .sinks import JsonlFiles, PluginSinks, encode_batches
from .stats import Stats
from .warc import WarcFile

FLUSH_BATCH = 256  # outcomes that make a flush due before its timer
FLUSH_LINKS = 16_384  # links that do the same: hub pages carry thousands each
BACKLOG = 4  # flushes' worth waiting, past which the engine starts no new URL
BULK = ("links", "content")  # files written before the commit, cut back on resume


@dataclass(slots=True)
class Finished:
    """One URL's outcome and what it produced, waiting for the next flush."""

    outcome: Outcome
    page: Record | None = None
    links: list[Link] = field(default_factory=list)
    error: Record | None = None
    response: Response | None = None  # for the WARC file
    content: Record | None = None  # the main content (--extract), for content.jsonl


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

    @property
    def due(self) -> bool:
        """Enough is waiting for a flush before the timer's."""
        return len(self._pending) >= FLUSH_BATCH or self._links >= FLUSH_LINKS

    @property
    def pending(self) -> bool:
        return bool(self._pending)

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
            if not self._pending:
                return
            batch, self._pending, self._links = self._pending, [], 0
            await self._frontier.prepare([f.outcome for f in batch])
            pages: list[Record] = []
            links: list[Record] = []
            errors: list[Record] = []
            content: list[Record] = []
            for f in batch:
                if f.page is not None:
                    f.page["near_duplicate_of"] = f.outcome.near_duplicate_of
                    pages.append(f.page)
                    links.extend(self._link_records(f.outcome, f.page, f.links))
                    self._count_page(f.outcome.request, f.page)
                if f.content is not None:
                    content.append(f.content)
                    self._stats.count("extracted" if f.content["content"] else "extracted_empty")
                if f.error is not None:
                    errors.append(f.error)
                    self._stats.error(f.error["kind"])
                self._stats.count("duplicates", f.outcome.admitted.count(False))
            data = await self._threads.run(
                encode_batches,
                {"pages": pages, "links": links, "errors": errors, "content": content})
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
            await self._frontier.commit(journal)
            self.commits += 1
            failpoints.reach("after-commit")
            await self._files.write(data)
            failpoints.reach("after-write")
            await self._sinks.put(pages, self._files.sizes["pages"])

    def _link_records(self, outcome: Outcome, page: Record, links: list[Link]) -> list[Record]:
        admitted = {c.url: ok for c, ok in zip(outcome.candidates, outcome.admitted, strict=True)}
        records = []
        for link in links:
            followed = admitted.pop(link.to, False)  # a repeat of a link is not followed again
            records.append(link_record(page["url"], link, followed))
        self._stats.count("links", len(records))
        return records

    def _count_page(self, request: Request | None, page: Record) -> None:
        """The page counts and the run's change summary (new, changed, unchanged, gone)."""
        self._stats.page(page["status"], page["bytes"] or 0)
        if request is None or request.last_status is None:
            self._stats.count("new")
        elif page["not_modified"] or page["changed"] is False:
            self._stats.count("unchanged")
        elif page["changed"]:
            self._stats.count("changed")
        if page["status"] in (404, 410) and request is not None and (
                request.last_status is not None and 200 <= request.last_status < 300):
            self._stats.count("gone")
