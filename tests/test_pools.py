"""The hybrid engine's executors: a parse pool that survives crashing and hanging pages."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from crawler.models import ParseInput, ParseResult
from crawler.pools import ParseFailed, ParsePool, ThreadPool

HTML = (b"<!doctype html><html lang='en'><head><title>Hello pool</title></head>"
        b"<body><h1>Hi</h1><p>three little words</p><a href='/next'>next</a></body></html>")
CRASH = "tests.plugins.crash:crash_on_url"
HANG = "tests.plugins.crash:hang_on_url"
SLOW = "tests.plugins.crash:slow_on_url"


def page(path: str) -> ParseInput:
    return ParseInput(url=f"http://site.test{path}", status=200, content_type="text/html",
                      charset="utf-8", headers={"content-type": "text/html"}, body=HTML)


def make_pool(timeout: float = 10.0, extractors: tuple[str, ...] = (CRASH, HANG, SLOW),
              workers: int = 2) -> ParsePool:
    return ParsePool(workers=workers, timeout=timeout, extractors=extractors, policy=None,
                     max_links=100)


@pytest.fixture
def pool() -> Iterator[ParsePool]:
    p = make_pool()
    yield p
    p.terminate()


def assert_parsed(result: ParseResult | ParseFailed) -> None:
    assert isinstance(result, ParseResult), result
    assert result.is_html
    assert result.title == "Hello pool"
    assert [link.to for link in result.links] == ["http://site.test/next"]


async def test_parse_pool_parses_in_worker_processes(pool: ParsePool) -> None:
    results = await pool.parse([page("/a"), page("/b")])
    assert len(results) == 2
    for result in results:
        assert_parsed(result)
    assert pool.figures.tasks == 2
    assert pool.figures.restarts == 0


async def test_crashing_page_costs_that_page_only(pool: ParsePool) -> None:
    results = await pool.parse([page("/good-1"), page("/crash"), page("/good-2")])
    assert [type(r) for r in results] == [ParseResult, ParseFailed, ParseResult]
    assert_parsed(results[0])
    assert_parsed(results[2])
    assert "died" in str(results[1])
    assert pool.figures.restarts >= 1
    (after,) = await pool.parse([page("/after")])
    assert_parsed(after)


async def test_crash_alone_in_its_batch_is_one_failure(pool: ParsePool) -> None:
    (result,) = await pool.parse([page("/crash")])
    assert isinstance(result, ParseFailed)
    assert "died" in str(result)
    assert pool.figures.restarts >= 1
    assert_parsed((await pool.parse([page("/fine")]))[0])


async def test_hanging_page_fails_within_the_timeout_and_the_pool_recovers() -> None:
    pool = make_pool(timeout=1.0)
    try:
        assert_parsed((await pool.parse([page("/warm-up")]))[0])
        began = time.monotonic()
        (result,) = await pool.parse([page("/hang")])
        assert time.monotonic() - began < 20  # the page never returns: it was cut off
        assert isinstance(result, ParseFailed)
        assert "parse_timeout" in str(result)
        assert pool.figures.restarts == 1
        assert_parsed((await pool.parse([page("/after")]))[0])
    finally:
        pool.terminate()


async def test_a_slow_starting_pool_times_no_page_out() -> None:
    # the processes take 2 s to start, twice the timeout: starting is not parsing
    pool = ParsePool(workers=2, timeout=1.0, extractors=("tests.plugins.slow_start:nothing",),
                     policy=None, max_links=100)
    try:
        results = await asyncio.gather(*(pool.parse([page(f"/{i}")]) for i in range(4)))
        for (result,) in results:
            assert_parsed(result)
        assert pool.figures.restarts == 0
    finally:
        pool.terminate()


async def test_a_page_beside_a_hang_in_a_new_pool_waits_for_its_processes_off_the_clock() -> None:
    # the executor starts a process per call while none is idle: the first answered the
    # warm-up and took the hang, the page waited for the second to import (2 s), on its
    # 1 s clock, and failed as "parse_timeout" though it was never parsed
    pool = ParsePool(workers=2, timeout=1.0,
                     extractors=("tests.plugins.slow_start:nothing", HANG),
                     policy=None, max_links=100)
    try:
        hung, beside = await asyncio.gather(pool.parse([page("/hang")]),
                                            pool.parse([page("/beside")]))
        assert isinstance(hung[0], ParseFailed)
        assert_parsed(beside[0])
    finally:
        pool.terminate()


async def test_call_runs_a_function_in_the_pool(pool: ParsePool) -> None:
    assert await pool.call(pow, 2, 10) == 1024
    assert pool.figures.tasks == 1


async def test_crash_does_not_fail_pages_parsing_beside_it() -> None:
    """The runner parses each page in its own call, many at once: a crash in one call must
    not turn the pages in flight in the others into ParseFailed (CONTRACT 4: "costs that
    page only")."""
    pool = make_pool(workers=3)
    try:
        await asyncio.gather(*(pool.parse([page(f"/warm-{i}?slow=0.2")]) for i in range(3)))

        async def crash_later() -> list[ParseResult | ParseFailed]:
            await asyncio.sleep(0.3)  # both slow pages are mid-parse by now
            return await pool.parse([page("/crash")])

        slow_1, slow_2, crashed = await asyncio.gather(
            pool.parse([page("/one?slow=1")]), pool.parse([page("/two?slow=1")]),
            crash_later())
        assert isinstance(crashed[0], ParseFailed)
        assert_parsed(slow_1[0])
        assert_parsed(slow_2[0])
    finally:
        pool.terminate()


async def test_hang_does_not_fail_a_page_parsing_beside_it() -> None:
    # the page beside takes 1.2 s, 0.8 s less than the timeout, when it is parsed again alone
    pool = make_pool(timeout=2.0, workers=2)
    try:
        await asyncio.gather(*(pool.parse([page(f"/warm-{i}")]) for i in range(2)))

        async def slow_later() -> list[ParseResult | ParseFailed]:
            await asyncio.sleep(1.2)  # mid-parse (1.2 s to 2.4 s) when the hang is killed at 2 s
            return await pool.parse([page("/beside?slow=1.2")])

        hung, beside = await asyncio.gather(pool.parse([page("/hang")]), slow_later())
        assert isinstance(hung[0], ParseFailed)
        assert_parsed(beside[0])
    finally:
        pool.terminate()


async def test_time_queued_behind_other_pages_does_not_count_as_hanging() -> None:
    """parse_timeout is what one page may take in a parse process, not its wait for one."""
    # two pages of 1.2 s, the second queued behind the first (a batch each: two are in flight
    # for one worker): its wait and parse (2.4 s) are past the 2 s timeout, its parse alone is
    # 0.8 s short of it (load lengthens the wait, which only makes the case sharper)
    pool = make_pool(timeout=2.0, workers=1)
    try:
        assert_parsed((await pool.parse([page("/warm")]))[0])
        results = await asyncio.gather(*(pool.parse([page(f"/p{i}?slow=1.2")])
                                         for i in range(2)))
        for (result,) in results:
            assert_parsed(result)
        assert pool.figures.restarts == 0
    finally:
        pool.terminate()


async def test_thread_pool_runs_off_the_main_thread_and_counts() -> None:
    threads = ThreadPool(2)
    try:
        def where(pause: float) -> str:
            time.sleep(pause)
            return threading.current_thread().name

        names = await asyncio.gather(threads.run(where, 0.05), threads.run(where, pause=0.05))
        assert all(name != threading.main_thread().name for name in names)
        assert all(name.startswith("crawl-io") for name in names)
        assert threads.figures.tasks == 2
        assert threads.figures.busy_s >= 0.1 - 0.01
        assert threads.figures.snapshot()["tasks"] == 2
    finally:
        threads.shutdown()


async def test_thread_pool_counts_a_task_that_raises() -> None:
    threads = ThreadPool(1)
    try:
        def boom() -> None:
            raise ValueError("nope")

        with pytest.raises(ValueError, match="nope"):
            await threads.run(boom)
        assert threads.figures.tasks == 1
    finally:
        threads.shutdown()


def page_in(folder: str, query: str = "") -> ParseInput:
    body = b"<html><head><title>Hello pool</title></head><body><a href='x'>x</a></body></html>"
    return ParseInput(url=f"http://site.test/{folder}/{query}", status=200,
                      content_type="text/html", charset="utf-8", headers={}, body=body)


async def test_pages_waiting_together_each_get_their_own_result() -> None:
    """Pages that wait for the one worker go to it in batches; every caller gets its page."""
    pool = make_pool(workers=1)
    try:
        calls = [pool.parse([page_in("slow", "?slow=0.5")])]
        calls += [pool.parse([page_in(f"d{i}"), page_in(f"e{i}")]) for i in range(6)]
        results = await asyncio.gather(*calls)
        for i, pair in enumerate(results[1:]):
            assert [r.links[0].to for r in pair if isinstance(r, ParseResult)] == [
                f"http://site.test/d{i}/x", f"http://site.test/e{i}/x"]
        assert pool.figures.tasks == 13 and pool.figures.restarts == 0
    finally:
        pool.terminate()


async def test_a_cancelled_caller_does_not_strand_pages_batched_with_its_own() -> None:
    pool = make_pool(workers=1)
    try:
        first = asyncio.create_task(pool.parse([page_in("a", "?slow=0.3")]))
        second = asyncio.create_task(pool.parse([page_in("b", "?slow=0.3")]))
        waiting = [asyncio.create_task(pool.parse([page_in(f"c{i}")])) for i in range(3)]
        await asyncio.sleep(0.1)  # the first runs, the second is queued, the rest wait
        waiting[0].cancel()
        done = await asyncio.gather(first, second, *waiting, return_exceptions=True)
        assert isinstance(done[2], asyncio.CancelledError)
        for i, result in ((1, done[3]), (2, done[4])):
            assert isinstance(result, list)
            assert result[0].links[0].to == f"http://site.test/c{i}/x"  # type: ignore[union-attr]
    finally:
        pool.terminate()


def test_the_main_process_never_imports_the_parser() -> None:
    """The parser's libraries (bs4 with soupsieve, numpy: ~0.15 s of CPU and 13 MB) load in the
    parse processes only; the main process reaches them through names resolved there
    (`pools._parse_many`, `sitemaps._parse_sitemap`, `plugins.load_callable`)."""
    code = ("import sys, crawler.cli, crawler.runner, crawler.reader; "
            "print(sorted(m for m in ('crawler.parse', 'crawler.text', 'bs4', 'numpy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"
