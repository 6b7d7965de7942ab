"""One invocation of one job: builds the stages, resumes the run's files, runs the engine,
reports, and ends the run.

seeds -> frontier -> scheduler -> politeness + fetch (loop) -> parse (process pool) ->
recorder -> frontier + files + sinks. The runner owns both pools, the one ClientSession, the
host slots, the files and the frontier; the engine (`engine.py`) owns the tasks that crawl.
It picks the frontier (SQLite, or Redis when shared, which is then also the `fleet`),
makes a resumed run's files agree with its last commit, writes stats.json, points `latest`.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .clock import utc_iso
from .engine import Engine
from .errors import OutputError
from .fetch import AddressGuard, Fetcher
from .fleet import Fleet, SharedRobots
from .frontier import Frontier, Journal, RunInfo
from .frontier.sqlite import SqliteFrontier
from .politeness import Politeness
from .pools import ParsePool, ThreadPool
from .progress import Progress
from .recorder import Recorder
from .settings import Settings
from .sinks import JsonlFiles, PluginSinks, read_lines, write_json_atomic
from .stats import Stats, delay_figures
from .transport import open_session
from .urls import LinkPolicy, host_of
from .warc import WarcFile, cut_back, warc_file_path

log = logging.getLogger(__name__)


class Runner:
    """One invocation of one job: `await Runner(settings, seeds).run()` gives the exit code."""

    def __init__(self, settings: Settings, seeds: Sequence[str], job: str) -> None:
        self.s = settings
        self.seeds = list(seeds)
        self.job = job
        self.job_dir = Path(settings.out) / job
        self.stats = Stats()
        self.engine: Engine | None = None
        self.warc: WarcFile | None = None
        self.fleet: Fleet | None = None  # the other workers' state, of a shared frontier
        self._left = 0  # frontier_left at the last snapshot
        self.politeness: Politeness | None = None

    @property
    def stop_reason(self) -> str | None:
        return self.engine.stop_reason if self.engine is not None else None

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
            # imported here: redis-py costs a SQLite job's main process 6 MB of RSS
            from .frontier.redis import RedisFrontier
            frontier = self.fleet = RedisFrontier(self.s, self.job)
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
        self.files = JsonlFiles(self.run_dir, self.threads, self.suffix, bool(self.s.extract))
        self.sinks = PluginSinks(self.s.sinks, self.threads, self.stats, self.s.sink_queue)
        self.parser = ParsePool(self.s.worker_count, self.s.parse_timeout, self.s.extractors,
                                self.policy, self.s.max_links_per_page, self.s.extract)
        guard = AddressGuard(self.policy)
        session = open_session(self.s, guard)
        self.progress = Progress(self.s, self.stats)
        try:
            journal = self.info.journal
            self.stats.resume(journal.totals)
            await self.files.open(journal.files)
            warc_path = warc_file_path(self.run_dir, self.suffix)
            if "warc" in journal.files:
                await self.threads.run(cut_back, warc_path, journal.files["warc"][0])
            if self.s.warc:
                self.warc = WarcFile(warc_path, self.s.user_agent)
                await self.threads.run(self.warc.open)
            await self._start_sinks(journal.files.get("sinks"))
            self.recorder = Recorder(self.frontier, self.files, self.sinks, self.warc,
                                     self.threads, self.stats)
            async with session:
                self.politeness = Politeness(self.s, self.fleet)
                self.fetcher = Fetcher(
                    session, self.s, self.policy, guard, self.stats, self.politeness,
                    SharedRobots(self.fleet, self.s) if self.fleet is not None else None)
                self.engine = Engine(self.s, self.stats, self.frontier, self.fetcher,
                                     self.parser, self.recorder, self.policy,
                                     archive=self.warc is not None)
                self.progress.start()
                frozen = _freeze_heap()
                try:
                    await self.engine.crawl(self._report_loop)
                finally:
                    if frozen:
                        gc.unfreeze()
                    self.progress.stop()
                    await self.politeness.aclose()
                    await self.fetcher.close()
        finally:
            await self._shutdown()
        return self._exit_code()

    async def _settle_orphans(self) -> None:
        """Write the last committed batch of each dead worker of this machine onto its part
        files: a worker killed after its commit and before its writes may never return."""
        if self.fleet is None:
            return  # one process per job: no other worker's files
        for orphan in await self.fleet.orphans():
            await settle(self.job_dir / "runs" / orphan.run_id, f"-{orphan.worker}",
                         orphan.journal, self.threads)
            await self.fleet.settled(orphan)
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
        if self.engine is not None and self.engine.attempted and self.stats.responses == 0:
            return 4
        return 0

    # -- reporting --------------------------------------------------------------------------

    def snapshot(self, finished_at: str | None = None,
                 others: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        """stats.json: this worker's figures, summed with `others`' (the fleet's)."""
        return self.stats.snapshot(
            others=others,
            job=self.job, run_id=self.info.run_id, started_at=self.info.started_at,
            finished_at=finished_at, stop_reason=self.stop_reason,
            frontier_left=self._left,
            process_pool=self.parser.snapshot(),
            thread_pool=self.threads.figures.snapshot(),
            throttle_delay_s=delay_figures(
                self.politeness.delays() if self.politeness is not None else {}),
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
        if self.fleet is not None:
            await self.threads.run(write_json_atomic,
                                   self.run_dir / f"stats{self.suffix}.json", data)
            data = self.snapshot(finished_at, await self.fleet.others())
        await self.threads.run(write_json_atomic, self.run_dir / "stats.json", data)
        return data


async def settle(run_dir: Path, suffix: str, journal: Journal, threads: ThreadPool) -> None:
    """Make one worker's part files end with its last committed batch."""
    await threads.run(functools.partial(run_dir.mkdir, parents=True, exist_ok=True))
    files = JsonlFiles(run_dir, threads, suffix)
    await files.open(journal.files)
    await files.close()
    if "warc" in journal.files:
        await threads.run(cut_back, warc_file_path(run_dir, suffix), journal.files["warc"][0])


def _freeze_heap() -> bool:
    """Move every object alive now (modules, classes, the stages just built: some 75 000)
    out of the collector's reach for the crawl, as gc.freeze()'s documentation suggests for a
    long-lived process: a full collection then walks only the crawl's own objects, ~2 ms of
    CPU instead of 35 to 50 ms, each of which held the GIL, and with it the event loop (the
    bench's loop lag p99 went from about 100 ms to about 20). False when the caller had
    frozen objects already (then theirs stay as they are)."""
    if gc.get_freeze_count():
        return False
    gc.collect()
    gc.freeze()
    return True


def _point_latest(job_dir: Path, run_dir: Path) -> None:
    link = job_dir / "latest"
    tmp = job_dir / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(Path("runs") / run_dir.name)
    os.replace(tmp, link)

