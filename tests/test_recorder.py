"""The recorder on real parts: a SQLite frontier, JSONL files and the thread pool."""

from __future__ import annotations

from pathlib import Path

from crawler.frontier import Outcome
from crawler.frontier.sqlite import SqliteFrontier
from crawler.pools import ThreadPool
from crawler.recorder import BACKLOG, FLUSH_BATCH, Finished, Recorder
from crawler.records import error_record
from crawler.sinks import JsonlFiles, PluginSinks
from crawler.stats import Stats


async def test_a_backlog_of_outcomes_holds_new_work_until_a_flush_drains_it(
        tmp_path: Path) -> None:
    threads = ThreadPool(2)
    stats = Stats()
    frontier = SqliteFrontier(tmp_path, threads)
    backlog = BACKLOG * FLUSH_BATCH
    seeds = [f"http://127.0.0.1:9/{i}" for i in range(backlog)]
    await frontier.open(seeds, fresh=False, recrawl_after_s=0)
    files = JsonlFiles(tmp_path, threads)
    await files.open({})
    sinks = PluginSinks([], threads, stats, 16)
    sinks.start(0)
    recorder = Recorder(frontier, files, sinks, None, threads, stats)
    try:
        leased = await frontier.lease(backlog, ())
        for request in leased:
            assert not recorder.full
            error = error_record(request, "connection", "refused", 1, "2026-11-24T00:00:00.000Z")
            recorder.add(Finished(Outcome(request, "failed", fetched_at=0.0), error=error))
        assert recorder.full, "the engine must start no new URL now"
        await recorder.flush()
        assert not recorder.full and not recorder.pending
        assert len((tmp_path / "errors.jsonl").read_text().splitlines()) == backlog
        assert await frontier.pending() == 0
    finally:
        await sinks.close()
        await files.close()
        await frontier.close()
        threads.shutdown()
