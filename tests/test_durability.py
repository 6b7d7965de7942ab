"""Nothing lost, ever: `kill -9` at every write boundary and at random instants, signals,
budgets that pause, recrawls of a site that changes, with the server's request log as judge.

The site is a slow binary tree of pages (some answer 500, some reset the connection), so a
crawl of it has page records, error records and link discovery in every batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from warcio.archiveiterator import ArchiveIterator

from crawler.frontier import Journal
from crawler.frontier.sqlite import SqliteFrontier
from crawler.pools import ThreadPool
from crawler.sinks import repair, replay
from tests.conftest import (
    Crawl,
    assert_no_traceback,
    complete_records,
    config_file,
    crawl_env,
    fast,
    load_run,
    reap,
    run_crawl,
    seeds_file,
    start_crawl,
)
from tests.e2e_plugins import SINK_FILE

PAGES = 60


@dataclass
class Tree:
    """`/t/N`: page N links to its parent, its children 2N+1 and 2N+2, and the root. Every
    11th page (from 5) answers 500, every 13th (from 7) resets the connection mid-body."""

    origin: str = ""
    delay: float = 0.05
    pages: int = PAGES
    version: int = 1  # bumped between runs: pages 2, 3, 4 change, 2 links to a new page
    log: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def url(self, n: int) -> str:
        return f"{self.origin}/t/{n}"

    def fetched(self, since: int = 0) -> list[str]:
        return [self.origin + path for path, _ in self.log[since:] if path != "/robots.txt"]

    def children(self, n: int) -> list[int]:
        kids = [k for k in (2 * n + 1, 2 * n + 2) if k < self.pages]
        return [*kids, self.pages] if n == 2 and self.version > 1 else kids

    def reachable(self) -> set[str]:
        """Every URL a crawl from /t/0 finds in this version (a reset page has no links)."""
        found, todo = set(), [0]
        while todo:
            n = todo.pop()
            found.add(self.url(n))
            if n % 13 != 7:
                todo.extend(self.children(n))
        return found

    def errors(self) -> set[str]:
        return {u for u in self.reachable() if _n(u) % 13 == 7}

    async def page(self, request: web.Request) -> web.StreamResponse:
        self.log.append((request.path_qs, dict(request.headers)))
        n = int(request.match_info["n"])
        if n > self.pages or (n == self.pages and self.version == 1):
            raise web.HTTPNotFound()
        await asyncio.sleep(self.delay)
        if n % 13 == 7:
            response = web.StreamResponse(headers={"Content-Length": "1000",
                                                   "Content-Type": "text/html"})
            await response.prepare(request)
            await response.write(b"<html><p>cut")
            assert request.transport is not None
            request.transport.abort()
            return response
        changed = self.version if n in (2, 3, 4) else 1
        etag = f'"{n}-{changed}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        links = [f'<a href="/t/{max(0, (n - 1) // 2)}">up</a>', '<a href="/t/0#top">root</a>',
                 *(f'<a href="/t/{k}">child {k}</a>' for k in self.children(n))]
        words = " ".join(f"w{random.Random(n * 7 + changed).randrange(10**6)}" for _ in range(30))
        body = (f"<html><head><title>Tree {n} v{changed}</title></head><body><p>{words}</p>"
                f"{''.join(links)}</body></html>")
        return web.Response(text=body, content_type="text/html", status=500 if n % 11 == 5
                            else 200, headers={"ETag": etag})


def _n(url: str) -> int:
    return int(url.rsplit("/", 1)[1])


@pytest.fixture
async def tree(aiohttp_server: Any) -> AsyncIterator[Tree]:
    site = Tree()
    app = web.Application()
    app.router.add_get("/t/{n:\\d+}", site.page)
    server = await aiohttp_server(app, host="127.0.0.1", shutdown_timeout=0.5)
    site.origin = f"http://127.0.0.1:{server.port}"
    yield site


def _args(tree: Tree, tmp_path: Path, *extra: str) -> list[str | Path]:
    return [seeds_file(tmp_path, tree.url(0)), *fast(tmp_path / "out"), "--no-robots",
            "--concurrency", "4", "--per-host", "4", *extra]


def _complete_records(out: Path, kind: str) -> list[dict[str, Any]]:
    return complete_records(sorted((out / "seeds" / "runs").glob(f"*/{kind}*.jsonl")))


@dataclass
class Kill:
    """What one killed invocation left: URLs with a record, and where the request log was."""

    recorded: set[str]
    log_mark: int


async def _killed(tree: Tree, crawl: Crawl, out: Path) -> Kill:
    result = await crawl.wait(60)
    assert result.returncode == -signal.SIGKILL, str(result)
    recorded = {r["url"] for kind in ("pages", "errors") for r in _complete_records(out, kind)}
    return Kill(recorded, len(tree.log))


async def _finish(tree: Tree, args: list[str | Path], out: Path, kills: list[Kill],
                  crawl: Crawl | None = None) -> None:
    """Run the same command (or wait for `crawl`, or neither when the run finished before
    the last kill landed) to its end, then hold every promise of section 4 against what the
    killed and the last invocations wrote."""
    if crawl is not None or not (out / "seeds" / "latest").exists():
        crawl = crawl or await start_crawl(*args)
        resumed = await crawl.wait(120)
        assert resumed.returncode == 0, str(resumed)
        assert_no_traceback(resumed)
    run = load_run(out, "seeds")  # one run folder: the same run went on after every kill
    _check_run(tree, run.pages, run.errors, run.links, run.stats)
    for kill in kills:
        again = set(tree.fetched(kill.log_mark)) & kill.recorded
        assert not again, f"URLs that had a record were fetched again: {sorted(again)}"
    assert (out / "seeds" / "latest").resolve() == run.dir.resolve()


def _check_run(tree: Tree, pages: list[dict[str, Any]], errors: list[dict[str, Any]],
               links: list[dict[str, Any]], stats: dict[str, Any]) -> None:
    urls = Counter(r["url"] for r in (*pages, *errors))
    repeated = {u: n for u, n in urls.items() if n > 1}
    assert not repeated, f"more than one record for {repeated}"
    expected = tree.reachable()
    assert set(urls) == expected, \
        f"missing {sorted(expected - set(urls))}, extra {sorted(set(urls) - expected)}"
    assert {e["url"] for e in errors} == tree.errors()
    per_page = Counter(link["from"] for link in links)
    for page in pages:
        assert per_page[page["url"]] == page["links"], \
            f"{page['url']}: {page['links']} links extracted, {per_page[page['url']]} link records"
    assert (stats["pages"], stats["errors"]) == (len(pages), len(errors)), \
        "the run's stats.json counts every invocation's records exactly"
    assert sum(stats["status_counts"].values()) == len(pages)
    assert stats["stop_reason"] == "exhausted" and stats["frontier_left"] == 0


# --- kill -9 at each write boundary ----------------------------------------------------------

# (failpoint, whether the files lacked some committed records at the kill)
BOUNDARIES = [
    ("torn-links", False),  # half of the batch's link lines written, transaction open
    ("links-written", False),  # its link lines written, nothing committed
    ("before-commit", False),  # links written and records archived, transaction still open
    ("after-commit", True),  # committed, not a byte in the pages and errors files yet
    ("torn-pages", True),  # committed, half of the page lines written
    ("after-write", False),  # everything on disk, sinks not yet fed
]


@pytest.mark.slow
@pytest.mark.parametrize(("point", "replayed"), BOUNDARIES)
async def test_kill_9_at_each_write_boundary_loses_and_repeats_nothing(
        tree: Tree, tmp_path: Path, point: str, replayed: bool) -> None:
    out = tmp_path / "out"
    args = _args(tree, tmp_path, "--warc")
    crawl = await start_crawl(*args, env=crawl_env(CRAWL_FAILPOINT=f"{point}:3"))
    orphans: list[int] = []
    try:
        kill = await _killed(tree, crawl, out)
        orphans = crawl.descendants()
        fetched_before = set(tree.fetched())
        await _finish(tree, args, out, [kill])
    finally:
        reap(orphans)
    run = load_run(out, "seeds")
    written_by_replay = {r["url"] for r in (*run.pages, *run.errors)} - kill.recorded \
        - set(tree.fetched(kill.log_mark))
    assert written_by_replay <= fetched_before
    assert bool(written_by_replay) == replayed, (
        f"records of the committed batch that reached the files only on resume: "
        f"{sorted(written_by_replay)}")
    _check_warc(run.dir, run.pages)


def _check_warc(run_dir: Path, pages: list[dict[str, Any]]) -> None:
    """The archive holds one response per page record: nothing of an uncommitted batch."""
    targets = []
    with (run_dir / f"crawl-{run_dir.name}.warc.gz").open("rb") as stream:
        for record in ArchiveIterator(stream):
            if record.rec_type in ("response", "revisit"):
                targets.append(record.rec_headers.get_header("WARC-Target-URI"))
    assert sorted(targets) == sorted(p["final_url"] for p in pages)


async def test_sinks_get_every_page_record_at_least_once_across_a_kill(
        tree: Tree, tmp_path: Path) -> None:
    sink = tmp_path / "sink.jsonl"
    config = config_file(tmp_path, 'sinks = ["tests.e2e_plugins:record_sink"]\n')
    args = [*_args(tree, tmp_path), "--config", config]
    crawl = await start_crawl(*args, env=crawl_env(CRAWL_FAILPOINT="after-commit:3",
                                                   **{SINK_FILE: str(sink)}))
    try:
        await _killed(tree, crawl, tmp_path / "out")
    finally:
        reap(crawl.descendants())
    resumed = await run_crawl(*args, env=crawl_env(**{SINK_FILE: str(sink)}))
    assert resumed.returncode == 0, str(resumed)
    got = Counter(json.loads(line)["url"] for line in sink.read_text().splitlines())
    run = load_run(tmp_path / "out", "seeds")
    assert set(got) == set(run.urls()), "every page record reached the sink"
    assert max(got.values()) == 1, "the committed batch had not reached the sink: once each"


# --- kill -9 at random instants ---------------------------------------------------------------


@pytest.mark.slow
async def test_kill_9_at_random_instants_then_the_same_command_finishes_the_run(
        tree: Tree, tmp_path: Path) -> None:
    tree.delay = 0.12
    out = tmp_path / "out"
    args = _args(tree, tmp_path)
    rng = random.Random(20261124)
    kills: list[Kill] = []
    orphans: list[int] = []
    crawl: Crawl | None
    try:
        while True:
            crawl = await start_crawl(*args)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(crawl.proc.wait()), rng.uniform(0.6, 1.6))
            if crawl.proc.returncode is not None or len(kills) == 5:
                break  # it ran to its end (or is left to)
            orphans += crawl.descendants()
            crawl.signal(signal.SIGKILL)
            kills.append(await _killed(tree, crawl, out))
            if (out / "seeds" / "latest").exists():
                crawl = None  # killed after the run had finished: nothing left to run
                break
        assert kills, "the crawl ended before the first kill: slow the tree down"
        await _finish(tree, args, out, kills, crawl)
    finally:
        reap(orphans)


@pytest.mark.slow
async def test_kill_9_between_runs_resumes_the_new_run_and_latest_waits_for_it(
        tree: Tree, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = _args(tree, tmp_path)
    first = await run_crawl(*args)
    assert first.returncode == 0, str(first)
    run1 = (out / "seeds" / "latest").resolve()
    await asyncio.sleep(1.05)  # the next run gets the next second's RUN_ID
    tree.version = 2
    crawl = await start_crawl(*args, env=crawl_env(CRAWL_FAILPOINT="after-commit:2"))
    try:
        await _killed(tree, crawl, out)
    finally:
        reap(crawl.descendants())
    assert (out / "seeds" / "latest").resolve() == run1, "latest names the last finished run"
    resumed = await run_crawl(*args)
    assert resumed.returncode == 0, str(resumed)
    runs = sorted((out / "seeds" / "runs").iterdir())
    assert len(runs) == 2 and (out / "seeds" / "latest").resolve() == runs[1].resolve()
    run2 = load_run(out, "seeds", runs[1])
    _check_run(tree, run2.pages, run2.errors, run2.links, run2.stats)


# --- signals -----------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_signal_pauses_with_state_saved_and_exit_130(
        tree: Tree, tmp_path: Path, signum: int) -> None:
    tree.delay = 0.2
    out = tmp_path / "out"
    args = _args(tree, tmp_path)
    crawl = await start_crawl(*args)
    await _wait_for_records(out, 5)
    crawl.signal(signum)
    stopped = await crawl.wait(30)
    assert stopped.returncode == 130, str(stopped)
    assert_no_traceback(stopped)
    paused = load_run(out, "seeds")
    assert paused.stats["stop_reason"] == "interrupted" and paused.stats["finished_at"] is None
    assert paused.stats["pages"] == len(paused.pages) and paused.stats["frontier_left"] > 0
    assert not (out / "seeds" / "latest").exists()
    kill = Kill({r["url"] for r in (*paused.pages, *paused.errors)}, len(tree.log))
    tree.delay = 0.0
    await _finish(tree, args, out, [kill])


async def test_second_sigint_exits_at_once_and_the_run_still_resumes(
        tree: Tree, tmp_path: Path) -> None:
    tree.delay = 0.3
    out = tmp_path / "out"
    args = _args(tree, tmp_path)
    crawl = await start_crawl(*args)
    await _wait_for_records(out, 3)
    orphans = crawl.descendants()
    try:
        crawl.signal(signal.SIGINT)
        crawl.signal(signal.SIGINT)
        stopped = await crawl.wait(30)
        assert stopped.returncode == 130, str(stopped)
        recorded = {r["url"] for k in ("pages", "errors") for r in _complete_records(out, k)}
        tree.delay = 0.0
        await _finish(tree, args, out, [Kill(recorded, len(tree.log))])
    finally:
        reap(orphans)


async def _wait_for_records(out: Path, n: int) -> None:
    for _ in range(600):
        if len(_complete_records(out, "pages")) >= n:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"fewer than {n} page records after 30 s")


# --- budgets pause, the next invocation resumes ------------------------------------------------


@pytest.mark.slow
async def test_max_pages_walks_the_site_in_slices_with_one_runs_stats(
        tree: Tree, tmp_path: Path) -> None:
    tree.delay = 0.0
    out = tmp_path / "out"
    args = _args(tree, tmp_path, "--max-pages", "20")
    seen = 0
    for invocation in range(1, 10):
        result = await run_crawl(*args)
        assert result.returncode == 0, str(result)
        run = load_run(out, "seeds")
        assert len(run.pages) - seen <= 20, "--max-pages caps one invocation's page records"
        seen = len(run.pages)
        assert run.stats["invocations"] == invocation
        if run.stats["stop_reason"] == "exhausted":
            break
        assert run.stats["stop_reason"] == "max_pages"
        assert not (out / "seeds" / "latest").exists()
    else:
        pytest.fail("the run never finished")
    assert invocation >= 3
    _check_run(tree, run.pages, run.errors, run.links, run.stats)


# --- recrawl of a finished job -------------------------------------------------------------


@pytest.mark.slow
async def test_recrawl_sends_validators_records_changes_and_follows_new_links(
        tree: Tree, tmp_path: Path) -> None:
    tree.delay = 0.0
    out = tmp_path / "out"
    args = _args(tree, tmp_path)
    assert (await run_crawl(*args)).returncode == 0
    await asyncio.sleep(1.05)
    tree.version = 2
    mark = len(tree.log)
    second = await run_crawl(*args)
    assert second.returncode == 0, str(second)
    runs = sorted((out / "seeds" / "runs").iterdir())
    assert len(runs) == 2
    run = load_run(out, "seeds", runs[1])
    _check_run(tree, run.pages, run.errors, run.links, run.stats)
    sent = {tree.origin + path: headers for path, headers in tree.log[mark:]}
    assert sent[tree.url(1)].get("If-None-Match") == '"1-1"'
    assert "If-None-Match" not in sent[tree.url(PAGES)], "a new page has no validator"
    by_url = {p["url"]: p for p in run.pages}
    assert (by_url[tree.url(1)]["status"], by_url[tree.url(1)]["not_modified"]) == (304, True)
    assert by_url[tree.url(3)]["changed"] is True and by_url[tree.url(3)]["title"] == "Tree 3 v2"
    assert by_url[tree.url(PAGES)]["changed"] is None
    stats = run.stats
    assert stats["new"] == 1 and stats["changed"] == 3, stats
    assert stats["new"] + stats["changed"] + stats["unchanged"] == len(run.pages)


# --- the journal and the file repairs, one by one -----------------------------------------------


def test_replay_cuts_back_to_the_committed_size_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "pages.jsonl"
    path.write_bytes(b'{"a":1}\n{"b":2}\n{"c"')  # the batch {"b":2} and a torn uncommitted line
    for _ in range(2):
        replay(path, 8, b'{"b":2}\n')
        assert path.read_bytes() == b'{"a":1}\n{"b":2}\n'
    path.write_bytes(b'{"a":1}\n{"b"')  # the committed batch itself torn
    assert replay(path, 8, b'{"b":2}\n') == 4
    assert path.read_bytes() == b'{"a":1}\n{"b":2}\n'
    with pytest.raises(OSError, match="shorter than its 100 committed bytes"):
        replay(path, 100, b"")


def test_repair_cuts_only_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "links.jsonl"
    path.write_bytes(b'{"a":1}\n{"b":')
    assert repair(path) == 5 and path.read_bytes() == b'{"a":1}\n'
    assert repair(path) == 0 and path.read_bytes() == b'{"a":1}\n'
    path.write_bytes(b"no newline at all")
    assert repair(path) == 17 and path.read_bytes() == b""


async def test_journal_commits_with_the_state_and_a_rollback_leaves_neither(
        tmp_path: Path) -> None:
    threads = ThreadPool(2)
    try:
        frontier = SqliteFrontier(tmp_path, threads)
        info = await frontier.open(["http://127.0.0.1:1/"], fresh=False, recrawl_after_s=0)
        assert not info.resumed and info.journal.files == {}
        await frontier.lease(1, ())
        batch = await frontier.prepare([])
        await frontier.commit(batch, Journal({"pages": (0, b"x\n")}, {"counters": {"pages": 1}}))
        await frontier.prepare([])  # a batch that never commits: the process dies here
        db = sqlite3.connect(tmp_path / "state.sqlite")
        assert db.execute("SELECT kind, base, data FROM journal").fetchall() == \
            [("pages", 0, b"x\n")]
        db.close()
        await frontier.close()

        again = SqliteFrontier(tmp_path, threads)
        info = await again.open([], fresh=False, recrawl_after_s=0)
        assert info.resumed
        assert info.journal.files == {"pages": (0, b"x\n")}
        assert info.journal.totals == {"counters": {"pages": 1}}
        assert await again.pending() == 1, "the leased URL is queued again"
        await again.close()
    finally:
        threads.shutdown()


# --- main content across a kill -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("point", ["torn-content", "before-commit", "after-commit"])
async def test_kill_9_with_extract_leaves_exactly_one_content_line_per_page(
        tree: Tree, tmp_path: Path, point: str) -> None:
    out = tmp_path / "out"
    args = _args(tree, tmp_path, "--extract", "text")
    crawl = await start_crawl(*args, env=crawl_env(CRAWL_FAILPOINT=f"{point}:2"))
    try:
        kill = await _killed(tree, crawl, out)
    finally:
        reap(crawl.descendants())
    await _finish(tree, args, out, [kill])
    run = load_run(out, "seeds")
    content = _complete_records(out, "content")
    lines = Counter(r["url"] for r in content)
    assert max(lines.values()) == 1, f"more than one content line: {lines.most_common(3)}"
    assert set(lines) == {p["url"] for p in run.pages if p["status"] == 200}
    for record in content:
        assert list(record) == ["url", "fetched_at", "title", "lang", "format", "content",
                                "words"]
        assert record["format"] == "text" and record["words"] > 0, record
