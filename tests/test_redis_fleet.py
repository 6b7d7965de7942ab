"""Many `crawl` workers on one Redis frontier: kill -9 one, politeness for the fleet, an outage.

The judge is the site's own request log, as in test_durability: the slow binary `Tree`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import (
    Crawl,
    RedisServer,
    assert_no_traceback,
    complete_records,
    config_file,
    fast,
    load_run,
    seeds_file,
    start_crawl,
    wait_until,
)
from tests.fleets import assert_not_fetched_again, finish, kill_one_and_finish, stop
from tests.test_durability import Tree, _check_run, tree  # noqa: F401 -- the fixture

JOB = "fleet"


def _args(site: Tree, tmp_path: Path, redis_url: str, lease_timeout: float,
          *extra: str) -> list[str | Path]:
    config = config_file(tmp_path, f"lease_timeout = {lease_timeout}\n")
    return [seeds_file(tmp_path, site.url(0)), *fast(tmp_path / "out"), "--no-robots",
            "--concurrency", "2", "--per-host", "6", "--workers", "1", "--job", JOB,
            "--frontier", redis_url, "--config", config, *extra]


def _part(out: Path, kind: str, worker: str) -> list[dict[str, Any]]:
    return complete_records((out / JOB / "runs").glob(f"*/{kind}-{worker}.jsonl"))


async def _reset(redis_url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    keys = [k async for k in client.scan_iter(match=f"crawl:{{{JOB}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.mark.slow
async def test_three_workers_one_killed_lose_nothing_and_the_others_finish(
        tree: Tree, tmp_path: Path, redis_server: RedisServer) -> None:  # noqa: F811
    await _reset(redis_server.url)
    tree.delay = 0.15
    out = tmp_path / "out"
    args = _args(tree, tmp_path, redis_server.url, 2.0)
    crawls = {name: await start_crawl(*args, "--worker", name) for name in ("w1", "w2", "w3")}
    # the first worker with pages dies: which one gets the first URLs is a race
    killed = await kill_one_and_finish(crawls, None, out / JOB / "runs", tree.fetched,
                                       timeout=120)
    run = load_run(out, JOB)
    assert {p.name for p in run.dir.glob("pages-*.jsonl")} == {
        "pages-w1.jsonl", "pages-w2.jsonl", "pages-w3.jsonl"}
    _check_run(tree, run.pages, run.errors, run.links, run.stats)
    again = assert_not_fetched_again(tree.fetched(), killed)
    assert max(Counter(tree.fetched()).values()) <= 2
    assert len(again) <= 2 * 2 + 2, "at most what the dead worker had leased"
    assert (out / JOB / "latest").resolve() == run.dir.resolve()


@pytest.fixture
async def clock_site(aiohttp_server: Any) -> Any:
    """Twelve linked pages and a 404 robots.txt; each request's arrival time is logged."""
    hits: list[tuple[float, str]] = []

    async def page(request: web.Request) -> web.Response:
        hits.append((time.monotonic(), request.path))
        if request.path == "/robots.txt":
            raise web.HTTPNotFound()
        n = int(request.match_info.get("n", "0"))
        links = "".join(f'<a href="/p/{k}">{k}</a>' for k in (2 * n + 1, 2 * n + 2) if k < 12)
        return web.Response(text=f"<html><title>{n}</title>{links}</html>",
                            content_type="text/html")

    app = web.Application()
    app.router.add_get("/p/{n:\\d+}", page)
    app.router.add_get("/robots.txt", page)
    server = await aiohttp_server(app, host="127.0.0.1", shutdown_timeout=0.5)
    return f"http://127.0.0.1:{server.port}", hits


@pytest.mark.slow
async def test_per_host_and_delay_hold_for_the_fleet_and_robots_is_fetched_once(
        clock_site: Any, tmp_path: Path, redis_server: RedisServer) -> None:
    await _reset(redis_server.url)
    origin, hits = clock_site
    args = [seeds_file(tmp_path, f"{origin}/p/0"), *fast(tmp_path / "out"), "--job", JOB,
            "--frontier", redis_server.url, "--per-host", "1", "--delay", "0.2",
            "--workers", "1"]
    crawls = [await start_crawl(*args) for _ in range(3)]
    results = [await crawl.wait(120) for crawl in crawls]
    for result in results:
        assert result.returncode == 0, str(result)
    assert [path for _, path in hits].count("/robots.txt") == 1, "one robots.txt for the fleet"
    pages = [path for _, path in hits if path != "/robots.txt"]
    assert sorted(pages) == sorted(f"/p/{n}" for n in range(12)), "each page once"
    times = sorted(at for at, _ in hits)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # the fleet spaces the starts it sends; arrivals here add the 2-core machine's scheduling
    assert min(gaps) >= 0.2 - 0.05, f"two requests {min(gaps):.3f} s apart: {sorted(hits)}"
    workers = {p.name for p in load_run(tmp_path / "out", JOB).dir.glob("stats-*.json")}
    assert len(workers) == 3


@pytest.mark.slow
async def test_redis_outage_is_waited_out_and_the_crawl_completes(
        tree: Tree, tmp_path: Path) -> None:  # noqa: F811
    server = RedisServer(tmp_path)
    server.start()
    tree.delay = 0.1
    out = tmp_path / "out"
    args = _args(tree, tmp_path, server.url, 20.0)
    crawls: list[Crawl] = []
    try:
        crawls = [await start_crawl(*args) for _ in range(2)]
        await wait_until(lambda: len(_all(out, "pages")) >= 5, 30, "first pages")
        server.stop()
        await asyncio.sleep(1.5)
        server.start()
        await finish({f"w{i}": c for i, c in enumerate(crawls, 1)}, timeout=120)
    finally:
        stop(crawls)
        server.stop()
    run = load_run(out, JOB)
    _check_run(tree, run.pages, run.errors, run.links, run.stats)


async def test_redis_gone_for_good_ends_the_worker_with_a_clear_error(
        tree: Tree, tmp_path: Path) -> None:  # noqa: F811
    server = RedisServer(tmp_path)
    server.start()
    tree.delay = 0.2
    out = tmp_path / "out"
    crawl = await start_crawl(*_args(tree, tmp_path, server.url, 2.0))
    try:
        await wait_until(lambda: len(_all(out, "pages")) >= 2, 30, "first pages")
        server.stop()
        result = await crawl.wait(60)
    finally:
        server.stop()
    assert result.returncode == 1, str(result)
    assert server.url in result.stderr and "unreachable" in result.stderr
    assert "bug" not in result.stderr
    assert_no_traceback(result)


def _all(out: Path, kind: str) -> list[dict[str, Any]]:
    return complete_records((out / JOB / "runs").glob(f"*/{kind}*.jsonl"))
