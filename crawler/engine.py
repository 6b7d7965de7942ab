"""Steps 2 to 5 in motion, on one event loop: lease, fetch, parse, record.

The scheduler leases URLs from the frontier into per-host buffers and hands out those whose
host slot admits them; the engine starts one task per URL in its `TaskGroup`, within the
global limit, sends each body to the process pool, and hands every outcome to the recorder.
The same group runs the flush timer, the owner's loops and the sitemap readers, so no task
outlives the crawl and no failure goes unseen. Stopping is stop leasing, cancel what is in
flight (its URLs go back to the queue), flush. The runner builds its parts and reports on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import Blocked, FetchError, FrontierUnavailable
from .fetch import Disallowed, Fetcher
from .frontier import Candidate, Frontier
from .models import Links, ParseInput, ParseResult, Request, Response
from .pools import ParseFailed, ParsePool
from .recorder import BACKLOG, FLUSH_LINKS, Finished, Recorder
from .records import content_type
from .scheduler import Scheduler
from .settings import Settings
from .sitemaps import read_sitemaps
from .stats import Stats
from .urls import LinkPolicy

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.1
ROBOTS_MEMO = 1 << 14  # links' robots.txt verdicts remembered: a site repeats its links
# links of a page looked at between two turns of the loop: a page of 15 000 links took
# 9 ms of CPU here in one go (17 ms of wall time against the threads for the GIL)
CANDIDATE_CHUNK = 2000
LINKS_WEIGHT = 0.1  # of the newest page in the moving mean of links per page
Loop = Callable[[], Coroutine[Any, Any, None]]


@dataclass(slots=True)
class Picked:
    """A page's links that may join the frontier, and the counts of those that may not."""

    candidates: list[Candidate] = field(default_factory=list)
    out_of_scope: int = 0
    robots_blocked: int = 0


class Engine:
    """One invocation's crawl loop; `await crawl()` returns when it stops, `stop_reason` says
    why, and `attempted` whether any URL was tried."""

    def __init__(self, settings: Settings, stats: Stats, frontier: Frontier, fetcher: Fetcher,
                 parser: ParsePool, recorder: Recorder, policy: LinkPolicy, *,
                 archive: bool) -> None:
        self.s = settings
        self.stats = stats
        self.frontier = frontier
        self.fetcher = fetcher
        self.parser = parser
        self.recorder = recorder
        self.policy = policy
        self._archive = archive  # keep responses for the WARC file
        self.scheduler = Scheduler(frontier, fetcher.politeness.slot,
                                   concurrency=settings.concurrency, per_host=settings.per_host)
        self.stop_reason: str | None = None
        self.attempted = False
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: asyncio.TaskGroup | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._side: set[asyncio.Task[None]] = set()  # the group's other tasks
        self._reading = 0  # sitemap readers at work
        self._page_budget = settings.max_pages or None
        self._abandoned: list[str] = []
        self._failure: BaseException | None = None  # of the crawl, not of one URL
        self._signals = 0
        # robots.txt's verdict on a link, once its origin's rules are in (then final for the
        # run): protego costs ~5 us a link on the loop, 75 ms for a page of 15 000 links
        self._robots_memo: dict[str, bool] = {}
        self._links_per_page = 0.0  # moving mean over the pages parsed (0: none yet)
        fetcher.robots.on_loaded = self._on_robots

    # -- the loop -------------------------------------------------------------------------

    async def crawl(self, *also: Loop) -> None:
        """Run until stopped; `also` are the owner's background loops (stats), run as long."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                self._spawn(self.stats.lag.run, "loop lag")
                self._spawn(self._flush_loop, "flush")
                for fn in also:
                    self._spawn(fn, fn.__name__)
                if self.s.max_runtime_s:
                    self._spawn(self._deadline, "deadline")
                # the group's own body must not raise (it would come out as an exception
                # group): a failure is kept, and raised once every task is down
                try:
                    await self._dispatch()
                except Exception as exc:
                    self._failed(exc)
                finally:
                    self._tasks = None  # a stop: no new task from here on
                    for task in list(self._side):
                        task.cancel()
                    try:
                        await self._abandon_inflight()
                    except Exception as exc:
                        self._failed(exc)
            try:
                await self._flush()
            except Exception as exc:
                self._failed(exc)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        if self._failure is not None:
            raise self._failure

    def _spawn(self, fn: Loop, name: str) -> bool:
        """A task of the group that ends with the crawl; its failure stops the crawl. False
        when the crawl is stopping and starts nothing more."""
        if self._tasks is None:
            return False
        task = self._tasks.create_task(self._guarded(fn, name), name=name)
        self._side.add(task)
        task.add_done_callback(self._side.discard)
        return True

    async def _guarded(self, fn: Loop, name: str) -> None:
        try:
            await fn()
        except Exception as exc:  # kept for crawl() to raise, once the group is down
            log.debug("%s failed", name, exc_info=True)
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        self.stop("error")

    def _on_signal(self) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal: exiting now; the next run resumes from the last flush")
            self.parser.terminate()
            os._exit(130)
        log.warning("stopping: finishing what is on disk; send the signal again to exit at once")
        self.stop("interrupted")

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()
        self._wake.set()

    async def _deadline(self) -> None:
        await asyncio.sleep(self.s.max_runtime_s)
        self.stop("max_runtime")

    async def _dispatch(self) -> None:
        """Lease, start what the scheduler hands out, flush when starved, stop when done."""
        idle_leases = 0
        while not self._stop.is_set():
            self._wake.clear()
            if self.recorder.due:
                await self._flush()  # before the timer: a big batch costs memory while it waits
            leased = await self.scheduler.fill(self.recorder.commits)
            if leased is not None:
                idle_leases = 0 if leased else idle_leases + 1
            started = self._start_ready()
            if self.recorder.pending and not self.scheduler.buffered:
                await self._flush()  # starved: the links waiting in the batch are the work
                continue
            if not self._inflight and not self.scheduler.buffered:
                await self._flush()
                if not self.recorder.pending and idle_leases:
                    if not self._reading and await self.frontier.pending() == 0:
                        self.stop("exhausted")
                        break
                    # URLs leased elsewhere, or sitemaps still being read: wait for them
                    await asyncio.sleep(0.05)
                continue
            if not started:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.scheduler.next_wake())

    def _start_ready(self) -> int:
        if self.recorder.full or self._tasks is None:
            return 0  # backpressure: the flush that drains it wakes the dispatcher
        room = self.s.concurrency - len(self._inflight)
        if self._links_per_page:
            # the links the URLs in the works will bring, on top of those waiting for a
            # flush, within the recorder's backlog: hubs of 3 000 links each, 64 at once,
            # held ~200 000 Link objects and took the main process from 137 to 210 MB
            room = min(room, self._links_room() - len(self._inflight))
        ready = self.scheduler.ready(room)
        for request in ready:
            self._inflight[request.url] = self._tasks.create_task(
                self._process(request), name=request.url)
        return len(ready)

    def _links_room(self) -> int:
        """URLs that may be in the works at once for what their links will cost, at least 1."""
        left = BACKLOG * FLUSH_LINKS - self.recorder.links
        return max(1, int(left / self._links_per_page))

    async def _abandon_inflight(self) -> None:
        tasks = list(self._inflight.values())
        urls = self.scheduler.drain() + list(self._inflight)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        urls += self._abandoned
        self._abandoned = []
        self._inflight.clear()
        if urls:
            await self.frontier.release(urls)

    # -- one URL ----------------------------------------------------------------------------

    async def _process(self, request: Request) -> None:
        task = asyncio.current_task()
        try:
            finished = await self._handle(request)
            if finished is not None:
                self._add(finished)
        except asyncio.CancelledError:
            raise
        except FrontierUnavailable as exc:  # the crawl's, not the URL's: stop
            self._failed(exc)
        except Exception as exc:  # a bug must cost one URL, not the crawl
            log.error("internal error on %s: %r (a bug; -v shows where)", request.url, exc)
            log.debug("traceback", exc_info=True)
            self._add(Finished.failure(request, "other", f"internal error: {exc!r}", 1))
        finally:
            if self._inflight.get(request.url) is task:
                del self._inflight[request.url]
            self._wake.set()

    async def _handle(self, request: Request) -> Finished | None:
        """Fetch, parse: what became of the URL (None: past --max-pages, back to the queue)."""
        self.attempted = True
        try:
            response = await self.fetcher.fetch(request)
        except Disallowed:
            self.stats.count("robots_blocked")
            return Finished.skipped(request)
        except FetchError as exc:
            if isinstance(exc, Blocked):
                self.stats.count("blocked_private")
            return Finished.failure(request, exc.kind, str(exc), exc.attempts)
        finally:
            # over, however it ended: the host may take another while this page is parsed
            # (the per-host limit counts requests, the global one every URL in the works)
            self.scheduler.fetched(request)
            self._wake.set()
        media_type, charset = content_type(response.headers.get("content-type"))
        result: ParseResult | ParseFailed | None = None
        if response.status != 304:
            inp = ParseInput(url=response.final_url, status=response.status,
                             content_type=media_type, charset=charset,
                             headers=response.headers, body=response.body)
            result = (await self.parser.parse([inp]))[0]
        if isinstance(result, ParseFailed):
            return Finished.failure(request, "parse", str(result), response.attempts)
        return await self._page(request, response, result, media_type)

    async def _page(self, request: Request, response: Response, result: ParseResult | None,
                    media_type: str | None) -> Finished | None:
        if self._page_budget is not None and self._page_budget <= 0:
            self._abandoned.append(request.url)  # past --max-pages: back to the queue
            return None
        picked = Picked()
        if result is not None:
            mean = self._links_per_page
            self._links_per_page = mean + LINKS_WEIGHT * (len(result.links) - mean) if mean \
                else float(len(result.links)) or 0.0
            await self._candidates(request, result.links, picked)
        # from here on nothing awaits: a page that takes the budget's last place is
        # recorded before the stop it calls can cancel its task
        if self._page_budget is not None:
            if self._page_budget <= 0:  # taken by other pages while this one's links were read
                self._abandoned.append(request.url)
                return None
            self._page_budget -= 1
            if self._page_budget == 0:
                self.stop("max_pages")
        if result is not None:
            if result.error:
                self.stats.count("extractor_errors")
                log.warning("extractor failed on %s: %s", request.url, result.error)
            self.stats.count("links_dropped", result.links_dropped)
            self.stats.count("out_of_scope", picked.out_of_scope)
            self.stats.count("robots_blocked", picked.robots_blocked)
        return Finished.page_of(request, response, result, media_type, picked.candidates,
                                archive=self._archive, extract=self.s.extract)

    async def _candidates(self, request: Request, links: Links, picked: Picked) -> None:
        """The page's links that may join the frontier, once each, in document order, into
        `picked`; the loop turns every CANDIDATE_CHUNK links."""
        depth = request.depth + 1
        if 0 <= self.s.max_depth < depth:
            return
        out = picked.candidates
        seen: set[str] = set()
        referrer = request.url
        for i, (to, nofollow, refused) in enumerate(
                zip(links.to, links.nofollow, links.refused, strict=True)):
            if i and not i % CANDIDATE_CHUNK:
                await asyncio.sleep(0)
            if refused is not None:
                picked.out_of_scope += 1
                continue
            if nofollow and not self.s.follow_nofollow:
                continue
            if to in seen:
                continue
            if self._robots_allow(to) is False:
                picked.robots_blocked += 1
                continue
            seen.add(to)
            out.append(Candidate(to, depth, referrer))

    def _robots_allow(self, url: str) -> bool | None:
        """`robots.known(url)`, remembered once it is not None (bounded)."""
        memo = self._robots_memo
        verdict = memo.get(url)
        if verdict is None:
            verdict = self.fetcher.robots.known(url)
            if verdict is not None:
                if len(memo) >= ROBOTS_MEMO:
                    memo.clear()
                memo[url] = verdict
        return verdict

    def _add(self, finished: Finished) -> None:
        if self.recorder.add(finished):
            self._wake.set()

    # -- making it durable ------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            await self._flush()

    async def _flush(self) -> None:
        await self.recorder.flush()
        self._wake.set()

    # -- sitemaps ---------------------------------------------------------------------------

    def _on_robots(self, origin: str, sitemaps: Sequence[str]) -> None:
        if not self.fetcher.reads_sitemaps(origin):
            return  # the fleet's worker that fetched robots.txt reads its sitemaps
        if self.s.sitemaps and sitemaps and not self._stop.is_set():
            self._reading += 1  # until it is done the crawl is not exhausted: its URLs are work
            if not self._spawn(lambda: self._read_sitemaps(origin, sitemaps),
                               f"sitemaps {origin}"):
                self._reading -= 1

    async def _read_sitemaps(self, origin: str, sitemaps: Sequence[str]) -> None:
        """One origin's sitemaps. Each that cannot be read counts in `sitemap_errors`; a bug
        costs the origin's sitemaps, not the crawl, and is logged as one (a frontier that is
        down still stops the crawl)."""
        try:
            await read_sitemaps(origin, sitemaps, self.fetcher, self.parser, self._admit,
                                self._sitemap_url_ok, self.stats)
        except FrontierUnavailable:
            raise
        except Exception as exc:
            self.stats.count("sitemap_errors")
            log.error("reading the sitemaps of %s failed: %r (a bug; -v shows where)",
                      origin, exc)
            log.debug("traceback", exc_info=True)
        finally:
            self._reading -= 1
            self._wake.set()

    def _admit(self, candidates: list[Candidate]) -> None:
        if self.recorder.admit(candidates):
            self._wake.set()

    def _sitemap_url_ok(self, url: str) -> bool:
        return self.s.max_depth != 0 and self.policy.refusal(url) is None
