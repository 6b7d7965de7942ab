"""Step 5: make finished URLs durable in batches: frontier state, records, archive, sinks.

The order of writes is what a crash may interrupt, so it is fixed here: the frontier first
*prepares* the batch (state and newly admitted links in an open SQLite transaction, which also
answers `near_duplicate_of` and `followed`), then the JSONL lines (and WARC records) are
written and flushed, then the transaction commits, then the sink plugins get the page records.
A crash before the commit leaves records whose URLs are still queued, never the reverse.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .frontier import Frontier, Outcome
from .models import Link, Request, Response
from .pools import ThreadPool
from .records import Record, link_record
from .sinks import JsonlFiles, PluginSinks
from .stats import Stats
from .warc import WarcFile

FLUSH_BATCH = 256  # outcomes that make a flush due before its timer


@dataclass(slots=True)
class Finished:
    """One URL's outcome and what it produced, waiting for the next flush."""

    outcome: Outcome
    page: Record | None = None
    links: list[Link] = field(default_factory=list)
    error: Record | None = None
    response: Response | None = None  # for the WARC file


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
        self._lock = asyncio.Lock()

    def add(self, finished: Finished) -> bool:
        """Queue one outcome; True when enough are waiting that a flush is due."""
        self._pending.append(finished)
        return len(self._pending) >= FLUSH_BATCH

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    async def flush(self) -> None:
        async with self._lock:
            if not self._pending:
                return
            batch, self._pending = self._pending, []
            await self._frontier.prepare([f.outcome for f in batch])
            pages: list[Record] = []
            links: list[Record] = []
            errors: list[Record] = []
            for f in batch:
                if f.page is not None:
                    f.page["near_duplicate_of"] = f.outcome.near_duplicate_of
                    pages.append(f.page)
                    links.extend(self._link_records(f.outcome, f.page, f.links))
                    self._count_page(f.outcome.request, f.page)
                if f.error is not None:
                    errors.append(f.error)
                    self._stats.error(f.error["kind"])
                self._stats.count("duplicates", f.outcome.admitted.count(False))
            await self._files.write({"pages": pages, "links": links, "errors": errors})
            archive = [f.response for f in batch if f.response is not None]
            if self._warc is not None and archive:
                await self._threads.run(self._warc.write, archive)
            await self._frontier.commit()
            for page in pages:
                await self._sinks.put(page)

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
