"""The engine: wires the stages of the data flow together on one event loop.

seeds -> frontier -> fetch (loop) -> parse (process pool) -> records -> frontier + sinks.
The runner owns every task, both pools and the one ClientSession; stopping is: stop leasing,
cancel what is in flight (its URLs go back to the queue), flush, close.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from .errors import Blocked, FetchError, OutputError
from .fetch import AddressGuard, Disallowed, Fetcher, utc_iso
from .fleet import SharedFetcher
from .frontier import Candidate, Frontier, Journal, Outcome, RunInfo
from .frontier.redis import FrontierUnavailable, RedisFrontier
from .frontier.sqlite import SqliteFrontier
from .models import Link, ParseInput, ParseResult, Request, Response
from .pools import ParseFailed, ParsePool, ThreadPool
from .progress import Progress
from .recorder import Finished, Recorder
from .records import Record, content_type, error_record, page_record
from .settings import Settings
from .sinks import JsonlFiles, PluginSinks, read_lines, write_json_atomic
from .sitemaps import read_sitemaps
from .stats import Stats
from .urls import LinkPolicy, host_of
from .warc import WarcFile, cut_back

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.1


class Runner:
    """One invocation of one job: `await Runner(settings, seeds).run()` gives the exit code."""

    def __init__(self, settings: Settings, seeds: Sequence[str], job: str) -> None:
        self.s = settings
        self.seeds = list(seeds)
        self.job = job
        self.job_dir = Path(settings.out) / job
        self.stats = Stats()
        self.stop_reason: str | None = None
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._buffer: dict[str, deque[Request]] = {}
        self._page_budget = settings.max_pages or None
        self._attempted = False
        self._host_inflight: dict[str, int] = {}
        self._abandoned: list[str] = []
        self._side_tasks: set[asyncio.Task[int]] = set()  # sitemap readers
        self._failure: BaseException | None = None  # of a background task
        self.warc: WarcFile | None = None
        self._signals = 0
        self._left = 0  # frontier_left at the last snapshot

    # -- set-up ---------------------------------------------------------------------------

    def _make_dirs(self) -> None:
        try:
            self.job_dir.mkdir(parents=True, exist_ok=True)
            probe = self.job_dir / f".write-test.{os.getpid()}"  # workers share the folder
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise OutputError(f"cannot write to {self.job_dir}: {exc.strerror or exc}") from None

    async def _policy(self) -> LinkPolicy:
        resolved: dict[str, list[str]] = {}
        if self.s.private_networks == "seeds":
            loop = asyncio.get_running_loop()
            for host in {host_of(u) for u in self.seeds}:
                try:
                    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
                    resolved[host] = [str(info[4][0]) for info in infos]
                except OSError:
                    resolved[host] = []
        return LinkPolicy.for_seeds(
            self.seeds, scope=self.s.scope, allow=self.s.allow, deny=self.s.deny,
            max_url_length=self.s.max_url_length, private_networks=self.s.private_networks,
            resolved=resolved)

    async def run(self) -> int:
        await asyncio.get_running_loop().run_in_executor(None, self._make_dirs)
        self.threads = ThreadPool(self.s.threads)
        try:
            return await self._run()
        finally:
            self.threads.shutdown()

    async def _run(self) -> int:
        self.policy = await self._policy()
        frontier: Frontier
        if self.s.frontier:
            frontier = RedisFrontier(self.s, self.job)
        else:
            frontier = SqliteFrontier(
                self.job_dir, self.threads, max_pages_per_host=self.s.max_pages_per_host,
                near_duplicate_distance=self.s.near_duplicate_distance)
        self.frontier = frontier
        info = await frontier.open(self.seeds, fresh=self.s.fresh,
                                   recrawl_after_s=self.s.recrawl_after_s)
        try:
            return await self._run_with(info)
        finally:
            await frontier.close()

    async def _run_with(self, info: RunInfo) -> int:
        self.info = info
        self.run_dir = self.job_dir / "runs" / info.run_id
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log.info("%s run %s of job %s in %s%s", "resuming" if info.resumed else "starting",
                 info.run_id, self.job, self.run_dir,
                 f" as worker {info.worker}" if info.worker else "")
        self.suffix = f"-{info.worker}" if info.worker else ""
        await self._settle_orphans()
        self.files = JsonlFiles(self.run_dir, self.threads, self.suffix)
        self.sinks = PluginSinks(self.s.sinks, self.threads, self.stats, self.s.sink_queue)
        self.parser = ParsePool(self.s.worker_count, self.s.parse_timeout, self.s.extractors,
                                self.policy, self.s.max_links_per_page)
        guard = AddressGuard(self.policy)
        connector = aiohttp.TCPConnector(limit=self.s.concurrency, limit_per_host=0,
                                         resolver=guard, use_dns_cache=False)
        session = aiohttp.ClientSession(
            connector=connector, headers={"User-Agent": self.s.user_agent},
            auto_decompress=True, cookie_jar=aiohttp.DummyCookieJar())
        self.progress = Progress(self.s, self.stats)
        try:
            journal = self.info.journal
            self.stats.resume(journal.totals)
            await self.files.open(journal.files)
            warc_path = self.run_dir / f"crawl{self.suffix}.warc.gz"
            if "warc" in journal.files:
                await self.threads.run(cut_back, warc_path, journal.files["warc"][0])
            if self.s.warc:
                self.warc = WarcFile(warc_path, self.s.user_agent)
                await self.threads.run(self.warc.open)
            await self._start_sinks(journal.files.get("sinks"))
            self.recorder = Recorder(self.frontier, self.files, self.sinks, self.warc,
                                     self.threads, self.stats)
            async with session:
                self.fetcher: Fetcher
                if isinstance(self.frontier, RedisFrontier):
                    self.fetcher = SharedFetcher(session, self.s, self.policy, guard,
                                                 self.stats, self.frontier)
                else:
                    self.fetcher = Fetcher(session, self.s, self.policy, guard, self.stats)
                self.fetcher.robots.on_loaded = self._on_robots
                await self._crawl()
        finally:
            await self._shutdown()
        return self._exit_code()

    async def _settle_orphans(self) -> None:
        """Write the last committed batch of each dead worker of this machine onto its part
        files: a worker killed after its commit and before its writes may never return."""
        for orphan in await self.frontier.orphans():
            await settle(self.job_dir / "runs" / orphan.run_id, f"-{orphan.worker}",
                         orphan.journal, self.threads)
            await self.frontier.settled(orphan)
            log.info("settled the files of dead worker %s", orphan.worker)

    async def _start_sinks(self, mark: tuple[int, bytes] | None) -> None:
        """Feed the sinks again what a killed invocation may not have given them: the page
        records past the point its last commit saw them reach."""
        self.sinks.start(mark[0] if mark else self.files.sizes["pages"])
        if self.sinks and self.sinks.delivered < self.files.sizes["pages"]:
            records = await self.threads.run(read_lines, self.files.path("pages"),
                                             self.sinks.delivered)
            await self.sinks.put(records, self.files.sizes["pages"])

    def _exit_code(self) -> int:
        if self.stop_reason == "interrupted":
            return 130
        if self._attempted and self.stats.responses == 0:
            return 4
        return 0

    # -- the loop -------------------------------------------------------------------------

    async def _crawl(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)
        background = [
            asyncio.create_task(self.stats.lag.run(), name="loop lag"),
            asyncio.create_task(self._report_loop(), name="stats"),
            asyncio.create_task(self._flush_loop(), name="flush"),
        ]
        if self.s.max_runtime_s:
            background.append(asyncio.create_task(self._deadline(self.s.max_runtime_s)))
        for task in background:
            task.add_done_callback(self._on_background_done)
        self.progress.start()
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
            self.progress.stop()

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
            buffered = self._buffered()
            if buffered < self.s.concurrency * 2:
                skip = {h for h, q in self._buffer.items() if len(q) >= self.s.per_host * 2}
                leased = await self.frontier.lease(self.s.concurrency * 2 - buffered, skip)
                for request in leased:
                    self._buffer.setdefault(host_of(request.url), deque()).append(request)
                idle_leases = 0 if leased else idle_leases + 1
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

    def _buffered(self) -> int:
        return sum(len(q) for q in self._buffer.values())

    def _start_ready(self) -> int:
        started = 0
        now = time.monotonic()
        for host in list(self._buffer):
            queue = self._buffer[host]
            slot = self.fetcher.slot(host)
            while (queue and len(self._inflight) < self.s.concurrency
                   and self._host_inflight.get(host, 0) < slot.concurrency
                   and slot.ready_at() <= now):
                request = queue.popleft()
                self._host_inflight[host] = self._host_inflight.get(host, 0) + 1
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
                host = host_of(request.url)
                self._host_inflight[host] -= 1
            self._wake.set()

    async def _handle(self, request: Request) -> None:
        self._attempted = True
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
        self._add(Finished(outcome, page=record, links=list(links),
                           response=response if self.warc is not None else None))

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

    # -- reporting --------------------------------------------------------------------------

    def snapshot(self, finished_at: str | None = None,
                 others: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        """stats.json: this worker's figures, summed with `others`' (the fleet's)."""
        return self.stats.snapshot(
            others=others,
            job=self.job, run_id=self.info.run_id, started_at=self.info.started_at,
            finished_at=finished_at, stop_reason=self.stop_reason,
            frontier_left=self._left,
            process_pool=self.parser.figures.snapshot(),
            thread_pool=self.threads.figures.snapshot(),
        )

    async def _report_loop(self) -> None:
        """stats.json every `stats_interval`; the live bar's queue size every second."""
        step = min(1.0, self.s.stats_interval) if self.progress.live else self.s.stats_interval
        waited = 0.0
        while True:
            await asyncio.sleep(step)
            self._left = await self.frontier.pending()
            waited += step
            if waited < self.s.stats_interval:
                self.progress.queue(self._left)
                continue
            waited = 0.0
            data = await self._write_stats()
            self.progress.tick(data)

    async def _shutdown(self) -> None:
        await self.files.close()
        if self.warc is not None:
            await self.threads.run(self.warc.close)
        await self.sinks.close()
        if hasattr(self, "fetcher"):
            await self.fetcher.robots.close()
        await self.threads.run(self.parser.shutdown)  # joins the workers: not on the loop
        self._left = await self.frontier.pending()
        finished = self.stop_reason == "exhausted" and self._left == 0
        finished_at = utc_iso(time.time()) if finished else None
        if finished:
            await self._settle_orphans()
        data = await self._write_stats(finished_at)
        if finished:  # before the run is marked finished: a kill in between resumes it, and
            # the resumed run, with nothing left to do, finishes at once
            await self.threads.run(_point_latest, self.job_dir, self.run_dir)
        await self.frontier.finish(self.stop_reason or "interrupted", finished_at)
        self.progress.summary(data, self.run_dir)

    async def _write_stats(self, finished_at: str | None = None) -> dict[str, Any]:
        """stats.json; a worker of a shared frontier also writes its own stats-WORKER.json,
        and its stats.json sums the figures every worker of the run has committed."""
        data = self.snapshot(finished_at)
        if self.suffix:
            await self.threads.run(write_json_atomic,
                                   self.run_dir / f"stats{self.suffix}.json", data)
            data = self.snapshot(finished_at, await self.frontier.others())
        await self.threads.run(write_json_atomic, self.run_dir / "stats.json", data)
        return data


async def settle(run_dir: Path, suffix: str, journal: Journal, threads: ThreadPool) -> None:
    """Make one worker's part files end with its last committed batch."""
    await threads.run(functools.partial(run_dir.mkdir, parents=True, exist_ok=True))
    files = JsonlFiles(run_dir, threads, suffix)
    await files.open(journal.files)
    await files.close()
    if "warc" in journal.files:
        await threads.run(cut_back, run_dir / f"crawl{suffix}.warc.gz", journal.files["warc"][0])


def _point_latest(job_dir: Path, run_dir: Path) -> None:
    link = job_dir / "latest"
    tmp = job_dir / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(Path("runs") / run_dir.name)
    os.replace(tmp, link)

