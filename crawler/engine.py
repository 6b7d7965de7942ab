"""Steps 2 to 5 in motion, on one event loop: lease, fetch, parse, record.

The engine leases URLs from the frontier into per-host buffers, starts one task per URL while
the global and per-host limits allow, sends each body to the process pool, and hands every
outcome to the recorder. It owns those tasks: stopping is stop leasing, cancel what is in
flight (its URLs go back to the queue), flush. The runner builds its parts and reports on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from .errors import Blocked, FetchError
from .fetch import Disallowed, Fetcher, utc_iso
from .fleet import SharedFetcher
from .frontier import Candidate, Frontier, Outcome
from .frontier.redis import FrontierUnavailable
from .models import Link, ParseInput, ParseResult, Request, Response
from .pools import ParseFailed, ParsePool
from .recorder import Finished, Recorder
from .records import Record, content_record, content_type, error_record, page_record
from .settings import Settings
from .sitemaps import read_sitemaps
from .stats import Stats
from .urls import LinkPolicy, host_of

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.1
DRY_LEASE_S = 0.05  # after an empty lease, ask again this soon only if something changed


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
        self.stop_reason: str | None = None
        self.attempted = False
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._buffer: dict[str, deque[Request]] = {}
        self._page_budget = settings.max_pages or None
        self._host_inflight: dict[str, int] = {}  # requests being fetched, per host
        self._fetching: set[str] = set()  # the URLs counted there
        self._dry: tuple[int, frozenset[str], float] | None = None  # the last empty lease
        self._abandoned: list[str] = []
        self._side_tasks: set[asyncio.Task[int]] = set()  # sitemap readers
        self._failure: BaseException | None = None  # of a background task
        self._signals = 0
        fetcher.robots.on_loaded = self._on_robots

    # -- the loop -------------------------------------------------------------------------

    async def crawl(self, *also: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run until stopped; `also` are the owner's background loops (stats), run as long."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)
        background = [
            asyncio.create_task(self.stats.lag.run(), name="loop lag"),
            asyncio.create_task(self._flush_loop(), name="flush"),
            *(asyncio.create_task(fn(), name=fn.__name__) for fn in also),
        ]
        if self.s.max_runtime_s:
            background.append(asyncio.create_task(self._deadline(self.s.max_runtime_s)))
        for task in background:
            task.add_done_callback(self._on_background_done)
        try:
            await self._dispatch()
            if self._failure is not None:
                raise self._failure
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            side = list(self._side_tasks)
            for pending in (*background, *side):
                pending.cancel()
            await asyncio.gather(*background, *side, return_exceptions=True)
            await self._abandon_inflight()
            await self._flush()

    def _on_background_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._failure = task.exception()
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

    async def _deadline(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.stop("max_runtime")

    async def _dispatch(self) -> None:
        """Lease URLs, start a task per URL while the global and per-host limits allow."""
        idle_leases = 0
        while not self._stop.is_set():
            self._wake.clear()
            if self.recorder.due:
                await self._flush()  # before the timer: a big batch costs memory while it waits
            buffered = self._buffered()
            skip = {h for h, q in self._buffer.items() if len(q) >= self.s.per_host * 2}
            if buffered < self.s.concurrency * 2 and not self._still_dry(skip):
                leased = await self.frontier.lease(self.s.concurrency * 2 - buffered, skip)
                for request in leased:
                    self._buffer.setdefault(host_of(request.url), deque()).append(request)
                idle_leases = 0 if leased else idle_leases + 1
                self._dry = None if leased else (
                    self.recorder.commits, frozenset(skip), time.monotonic())
            started = self._start_ready()
            if self.recorder.pending and not self._buffered():
                await self._flush()  # starved: the links waiting in the batch are the work
                continue
            if not self._inflight and not self._buffered():
                await self._flush()
                if not self.recorder.pending and idle_leases:
                    if await self.frontier.pending() == 0:
                        self.stop("exhausted")
                        break
                    await asyncio.sleep(0.05)  # URLs leased elsewhere: wait for them
                continue
            if not started:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._next_wake())

    def _still_dry(self, skip: set[str]) -> bool:
        """Whether a lease now would surely come back empty, as the last one did: nothing was
        committed since (no new links), no host left the skip list, and it was just now (a
        shared frontier gains URLs from other workers, and hosts become due)."""
        dry = self._dry
        return (dry is not None and dry[0] == self.recorder.commits and skip >= dry[1]
                and time.monotonic() - dry[2] < DRY_LEASE_S)

    def _buffered(self) -> int:
        return sum(len(q) for q in self._buffer.values())

    def _start_ready(self) -> int:
        started = 0
        if self.recorder.full:
            return 0  # backpressure: the flush that drains it wakes the dispatcher
        now = time.monotonic()
        for host in list(self._buffer):
            queue = self._buffer[host]
            slot = self.fetcher.slot(host)
            while (queue and len(self._inflight) < self.s.concurrency
                   and self._host_inflight.get(host, 0) < slot.concurrency
                   and slot.ready_at() <= now):
                request = queue.popleft()
                self._host_inflight[host] = self._host_inflight.get(host, 0) + 1
                self._fetching.add(request.url)
                self._inflight[request.url] = asyncio.create_task(
                    self._process(request), name=request.url)
                started += 1
                if slot.spacing():
                    break  # one start per wake for a spaced host (delay, breaker)
            if not queue:
                del self._buffer[host]
        return started

    def _next_wake(self) -> float:
        now = time.monotonic()
        times = [self.fetcher.slot(h).ready_at() - now for h in self._buffer]
        return max(0.01, min([0.5, *times]))

    async def _abandon_inflight(self) -> None:
        tasks = list(self._inflight.values())
        urls = [r.url for q in self._buffer.values() for r in q] + list(self._inflight)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        urls += self._abandoned
        self._abandoned = []
        self._inflight.clear()
        self._host_inflight.clear()
        self._fetching.clear()
        self._buffer.clear()
        if urls:
            await self.frontier.release(urls)

    # -- one URL ----------------------------------------------------------------------------

    async def _process(self, request: Request) -> None:
        task = asyncio.current_task()
        try:
            await self._handle(request)
        except asyncio.CancelledError:
            raise
        except FrontierUnavailable as exc:  # the crawl's, not the URL's: stop
            self._failure = exc
            self.stop("error")
        except Exception as exc:  # a bug must cost one URL, not the crawl
            log.error("internal error on %s: %r (a bug; -v shows where)", request.url, exc)
            log.debug("traceback", exc_info=True)
            self._fail(request, "other", f"internal error: {exc!r}", 1)
        finally:
            if self._inflight.get(request.url) is task:
                del self._inflight[request.url]
                self._fetched(request)
            self._wake.set()

    def _fetched(self, request: Request) -> None:
        """The request is over: its host may take another while this page is parsed (the
        per-host limit counts requests, the global one every URL in the works)."""
        if request.url in self._fetching:
            self._fetching.discard(request.url)
            self._host_inflight[host_of(request.url)] -= 1
            self._wake.set()

    async def _handle(self, request: Request) -> None:
        self.attempted = True
        try:
            response = await self.fetcher.fetch(request)
        except Disallowed:
            self.stats.count("robots_blocked")
            self._add(Finished(Outcome(request, "skipped")))
            return
        except FetchError as exc:
            if isinstance(exc, Blocked):
                self.stats.count("blocked_private")
            self._fail(request, exc.kind, str(exc), exc.attempts)
            return
        finally:
            self._fetched(request)
        result: ParseResult | ParseFailed | None = None
        if response.status != 304:
            ctype, charset = content_type(response.headers.get("content-type"))
            inp = ParseInput(url=response.final_url, status=response.status, content_type=ctype,
                             charset=charset, headers=response.headers, body=response.body)
            result = (await self.parser.parse([inp]))[0]
        if isinstance(result, ParseFailed):
            self._fail(request, "parse", str(result), response.attempts)
            return
        self._page(request, response, result)

    def _fail(self, request: Request, kind: str, message: str, attempts: int) -> None:
        now = time.time()
        self._add(Finished(Outcome(request, "failed", fetched_at=now),
                           error=error_record(request, kind, message, attempts, utc_iso(now))))

    def _page(self, request: Request, response: Response, result: ParseResult | None) -> None:
        if self._page_budget is not None:
            if self._page_budget <= 0:
                self._abandoned.append(request.url)  # past --max-pages: back to the queue
                return
            self._page_budget -= 1
            if self._page_budget == 0:
                self.stop("max_pages")
        if result is not None and result.error:
            self.stats.count("extractor_errors")
            log.warning("extractor failed on %s: %s", request.url, result.error)
        record = page_record(request, response, result)
        links = result.links if result is not None else []
        if result is not None:
            self.stats.count("links_dropped", result.links_dropped)
        outcome = Outcome(
            request, "done", status=response.status,
            fetched_at=time.time(), etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
            sha256=record["sha256"], simhash=record["simhash"], title=record["title"],
            candidates=self._candidates(request, links, record))
        extracted = content_record(record, result, self.s.extract) if result else None
        self._add(Finished(outcome, page=record, links=list(links), content=extracted,
                           response=response if self._archive else None))

    def _candidates(self, request: Request, links: Sequence[Link],
                    record: Record) -> list[Candidate]:
        """The page's links that may join the frontier, once each, in document order."""
        depth = request.depth + 1
        if 0 <= self.s.max_depth < depth:
            return []
        out: list[Candidate] = []
        seen: set[str] = set()
        referrer = request.url
        for link in links:
            if link.refused is not None:
                self.stats.count("out_of_scope")
                continue
            if link.nofollow and not self.s.follow_nofollow:
                continue
            if link.to in seen:
                continue
            if self.fetcher.robots.known(link.to) is False:
                self.stats.count("robots_blocked")
                continue
            seen.add(link.to)
            out.append(Candidate(link.to, depth, referrer))
        return out

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
        if isinstance(self.fetcher, SharedFetcher) and origin not in self.fetcher.downloaded:
            return  # the worker that fetched robots.txt reads its sitemaps for the fleet
        if self.s.sitemaps and sitemaps and not self._stop.is_set():
            task = asyncio.create_task(read_sitemaps(
                origin, sitemaps, self.fetcher, self.parser, self._admit, self._sitemap_url_ok))
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)

    def _admit(self, candidates: list[Candidate]) -> None:
        self._add(Finished(Outcome(None, "admit", candidates=candidates)))

    def _sitemap_url_ok(self, url: str) -> bool:
        return self.s.max_depth != 0 and self.policy.refusal(url) is None
