"""The recorder on real parts: a SQLite frontier, JSONL files and the thread pool."""

from __future__ import annotations

import json
from pathlib import Path

from crawler.frontier import Outcome
from crawler.frontier.sqlite import SqliteFrontier
from crawler.pools import ThreadPool
from crawler.recorder import BACKLOG, FLUSH_BATCH, Finished, Recorder
from crawler.records import LINK_KEYS, error_record, link_record
from crawler.sinks import JsonlFiles, PluginSinks, encode
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


def test_link_lines_are_the_json_of_the_contracts_link_object() -> None:
    """A link record is a msgspec struct, not a dict: its line is still the compact JSON
    object of the contract's keys in their order, on msgspec's path and on the stdlib's (a
    plugin's 65-bit integer among page records sends a batch there)."""
    texts = ["plain", "é \"q\" \\ \x01 \u2028", ""]
    records = [link_record("http://a.example/", f"http://a.example/{i}", text, i == 1, i == 2)
               for i, text in enumerate(texts)]
    expected = "".join(json.dumps(
        {"from": "http://a.example/", "to": f"http://a.example/{i}", "text": text,
         "nofollow": i == 1, "followed": i == 2},
        ensure_ascii=False, separators=(",", ":")) + "\n" for i, text in enumerate(texts))
    assert encode(records).decode("utf-8") == expected
    mixed = encode([*records, {"extra": 1 << 65}]).decode("utf-8")
    assert mixed == expected + '{"extra":' + str(1 << 65) + "}\n"
    assert [tuple(json.loads(line)) for line in expected.split("\n")[:-1]] == [LINK_KEYS] * 3
