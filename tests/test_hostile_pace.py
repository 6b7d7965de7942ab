"""A host's pace (politeness' one rule), end to end: --throttle follows a slow host's latency,
host-level failures slow a host, URLs that fail on their own do not.

Each case is a crawl by the real `crawl` command of real servers on loopback (127.0.0.1,
127.0.0.2 and 127.0.0.3 are three hosts to the crawler), judged from the servers' request
logs (ordering facts and least gaps, never an upper bound on time) and from stats.json.
"""

from __future__ import annotations

import itertools
import socket
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from crawler.frontier.redis import LEASE_BATCH
from crawler.htmlreport import render
from crawler.summary import summarize
from tests.conftest import (
    RedisServer,
    Site,
    assert_no_traceback,
    config_file,
    fast,
    load_run,
    run_crawl,
    seeds_file,
    start_crawl,
)
from tests.site import COUNTERS, LOG, make_site
from tests.test_hostile_fetch import full_backlog

SLOW_S = 0.3  # how long each answer of the slow host takes
TOLERANCE = 0.05  # server-side arrival times may bunch a little against the client's starts


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def _spaced(starts: list[float], since: float) -> tuple[int, float]:
    """Pairs of starts from the first at or after `since` on, and their span. The starts are
    the test server's handler starts, in a test process that a loaded machine may hold back:
    a late arrival and the prompt one after it bunch (a gap of 0.10 s was seen against 0.25),
    but being late shortens one gap by what it lengthens the one before, so the span of them
    all holds the spacing, less one pace for the first of them arriving late."""
    first = next(i for i, t in enumerate(starts) if t >= since)
    return len(starts) - 1 - first, starts[-1] - starts[first]


def _interleave(*lists: list[str]) -> list[str]:
    return [u for group in itertools.zip_longest(*lists) for u in group if u is not None]


async def test_throttle_spaces_a_slow_hosts_starts_by_its_latency_and_not_a_fast_hosts(
        site: Site, tmp_path: Path, aiohttp_server: Any) -> None:
    fast_app = make_site()
    other = await aiohttp_server(fast_app, host="127.0.0.2", shutdown_timeout=0.5)
    slow = [site.url(f"/slow/{SLOW_S}?i={i}") for i in range(12)]
    quick = [f"http://127.0.0.2:{other.port}/status/200?i={i}" for i in range(20)]
    out = tmp_path / "out"
    result = await run_crawl(seeds_file(tmp_path, *_interleave(slow, quick)), *fast(out),
                             "--throttle", "--per-host", "4")
    assert result.returncode == 0, str(result)
    assert_no_traceback(result)
    run = load_run(out, "seeds")
    assert len(run.pages) == 32

    starts = [h.at for h in site.log if h.path_qs.startswith("/slow/")]
    assert len(starts) == 12
    answered = starts[0] + SLOW_S  # from the first answer on, the latency is known
    # pairs of starts both made once it was known (an arrival before it may lag its start by
    # a new connection's set-up, which under load passes the tolerance)
    pairs, span = _spaced(starts, answered)
    # unspaced, the 4 a time --per-host lets through would span about 3 paces, not 10
    assert pairs >= 6 and span >= (pairs - 1) * SLOW_S, _gaps(starts)
    quick_starts = [h.at for h in fast_app[LOG] if h.path_qs.startswith("/status/")]
    assert len(quick_starts) == 20
    assert max(quick_starts) < starts[-3], "the fast host kept its own pace, not the slow one's"
    paces = run.stats["throttle_delay_s"]
    assert paces["slowest"][0][0] == "127.0.0.1" and paces["max"] >= SLOW_S
    assert paces["hosts"] == 2 and paces["p50"] < SLOW_S


async def test_without_throttle_a_slow_host_gets_its_per_host_requests_at_once(
        site: Site, tmp_path: Path) -> None:
    slow = [site.url(f"/slow/{SLOW_S}?i={i}") for i in range(8)]
    out = tmp_path / "out"
    result = await run_crawl(seeds_file(tmp_path, *slow), *fast(out), "--per-host", "4")
    assert result.returncode == 0, str(result)

    assert site.app[COUNTERS]["slow_max_in_flight"] >= 2, "latency is not followed"
    assert load_run(out, "seeds").stats["throttle_delay_s"]["max"] == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("broken_first", [True, False], ids=["broken-first", "broken-last"])
async def test_ten_broken_urls_in_a_row_leave_the_hosts_pace_alone(
        site: Site, tmp_path: Path, aiohttp_server: Any, broken_first: bool) -> None:
    """Ten URLs that fail on their own (500s, resets, a hang, a bomb), retried, among fifty
    good ones: the good ones keep the host's pace (`delay`), as a second host with as many
    requests and the same delay shows; under the old breaker they came one a minute."""
    reference = make_site()
    other = await aiohttp_server(reference, host="127.0.0.2", shutdown_timeout=0.5)
    broken = [site.url(path) for path in (
        *(f"/status/500?i={i}" for i in range(4)), *(f"/reset?i={i}" for i in range(4)),
        "/hang?i=0", "/gzip-bomb?i=0")]
    good = [site.url(f"/status/200?i={i}") for i in range(50)]
    ordered = broken + good if broken_first else good + broken
    # as many requests as the broken host makes with its retries (50 + 9 * 3 + 1), and more
    steady = [f"http://127.0.0.2:{other.port}/status/200?i={i}" for i in range(90)]
    delay = 0.1
    out = tmp_path / "out"
    result = await run_crawl(seeds_file(tmp_path, *_interleave(ordered, steady)),
                             *fast(out, timeout=1, retries=2), "--delay", str(delay),
                             "--per-host", "2", "--max-bytes", "1000000", timeout=120)
    assert result.returncode == 0, str(result)
    assert_no_traceback(result)
    run = load_run(out, "seeds")

    assert all(run.page(u)["status"] == 200 for u in good + steady)
    assert all(run.page(u)["status"] == 500 for u in broken[:4])
    assert {run.error(u)["kind"] for u in broken[4:8]} == {"connection"}
    assert [run.error(u)["kind"] for u in broken[8:]] == ["timeout", "too_large"]
    hits = [h for h in site.log if h.path_qs != "/robots.txt"]
    assert len(hits) == 50 + 9 * 3 + 1, "each broken URL costs its own retries"
    good_starts = [h.at for h in hits if h.path_qs.startswith("/status/200")]
    # each start is `delay` after the one before (an arrival may lag its start when a new
    # connection replaces a reset one, so the span of them all is what is judged)
    span = hits[-1].at - hits[0].at
    assert span >= (len(hits) - 1) * delay - TOLERANCE, "the delay holds"
    steady_starts = [h.at for h in reference[LOG] if h.path_qs.startswith("/status/200")]
    assert max(good_starts) < max(steady_starts), (
        "the good URLs came at the host's normal pace, as fast as the steady host's")
    assert run.stats["throttle_delay_s"]["max"] == delay, "no host was slowed"


async def test_503_and_429_across_urls_double_the_hosts_pace(
        site: Site, tmp_path: Path) -> None:
    """Each 503 or 429 from another URL doubles the pace (from `backoff` at least); healthy
    answers bring it back."""
    statuses = [200, 200, 503, 429, 503, 200, 200, 200]
    urls = [site.url(f"/status/{code}?i={i}") for i, code in enumerate(statuses)]
    config = config_file(tmp_path, "backoff = 0.1\nmax_retry_after = 5.0\n")
    out = tmp_path / "out"
    result = await run_crawl(seeds_file(tmp_path, *urls), *fast(out), "--delay", "0.1",
                             "--per-host", "1", "--config", str(config))
    assert result.returncode == 0, str(result)
    assert_no_traceback(result)

    hits = [h for h in site.log if h.path_qs.startswith("/status/")]
    assert sorted(h.path_qs for h in hits) == sorted(u.removeprefix(site.origin) for u in urls)
    doublings = 0
    for before, after in itertools.pairwise(hits):
        if before.path_qs.startswith(("/status/503", "/status/429")):
            doublings += 1  # in a row: 0.2, 0.4, 0.8 s
            assert after.at - before.at >= 0.1 * 2 ** doublings - TOLERANCE, before.path_qs
        else:
            assert after.at - before.at >= 0.1 - TOLERANCE
    assert doublings == 3
    assert load_run(out, "seeds").stats["throttle_delay_s"]["max"] < 0.8, "brought back"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.3", 0))
        return int(probe.getsockname()[1])


async def test_refused_and_unanswered_connections_slow_the_host_and_the_report_shows_it(
        site: Site, tmp_path: Path) -> None:
    """Connection refused (nothing listens) and a connect timeout (a full accept queue) are
    the host's failures: each doubles its pace; the healthy host keeps its delay. (No server
    sees these attempts: stats.json and the report are the judges.)"""
    refused = [f"http://127.0.0.3:{_closed_port()}/r{i}" for i in range(4)]
    healthy = [site.url(f"/status/200?i={i}") for i in range(6)]
    config = config_file(tmp_path, "backoff = 0.1\nconnect_timeout = 0.3\n")
    out = tmp_path / "out"
    with full_backlog("127.0.0.4") as port:
        unanswered = [f"http://127.0.0.4:{port}/t{i}" for i in range(2)]
        result = await run_crawl(seeds_file(tmp_path, *refused, *unanswered, *healthy),
                                 *fast(out), "--delay", "0.01", "--no-robots", "--config",
                                 str(config))
    assert result.returncode == 0, str(result)
    assert_no_traceback(result)
    run = load_run(out, "seeds")

    assert {run.error(u)["kind"] for u in refused} == {"connection"}
    assert {run.error(u)["kind"] for u in unanswered} == {"timeout"}
    paces = dict(run.stats["throttle_delay_s"]["slowest"])
    assert paces == {"127.0.0.3": 0.8, "127.0.0.4": 0.2, "127.0.0.1": 0.01}
    summary = summarize(run.dir)
    assert summary["throttle_delay_s"]["slowest"][0] == ["127.0.0.3", 0.8]
    page = render(summary)
    assert 'data-key="throttle_delay_s"' in page and "<td>127.0.0.3</td>" in page


@pytest.mark.slow
async def test_a_fleet_spaces_a_slow_host_by_the_pace_its_workers_share(
        site: Site, tmp_path: Path, redis_server: RedisServer) -> None:
    """Two workers with --throttle on one Redis frontier: the host's pace (its latency) is the
    fleet's, so their starts together, not each worker's alone, are spaced by it."""
    job = "pace-fleet"
    client = aioredis.Redis.from_url(redis_server.url)
    keys = [k async for k in client.scan_iter(match=f"crawl:{{{job}*")]
    if keys:
        await client.delete(*keys)
    # more URLs than one lease script takes (LEASE_BATCH, the rest kept as a worker's spares),
    # so that both workers have some to fetch
    urls = [site.url(f"/slow/{SLOW_S}?i={i}") for i in range(LEASE_BATCH + 8)]
    args = [seeds_file(tmp_path, *urls), *fast(tmp_path / "out"), "--job", job, "--throttle",
            "--frontier", redis_server.url, "--per-host", "4", "--concurrency", "2",
            "--workers", "1"]
    crawls = [await start_crawl(*args, "--worker", name) for name in ("a", "b")]
    results = [await crawl.wait(120) for crawl in crawls]
    for result in results:
        assert result.returncode == 0, str(result)
        assert_no_traceback(result)
    assert await client.hget(f"crawl:{{{job}:127.0.0.1}}:gate", "p") is not None, \
        "the pace in the host's window hash"
    await client.aclose()

    starts = sorted(h.at for h in site.log if h.path_qs.startswith("/slow/"))
    assert len(starts) == len(urls)
    answered = starts[0] + SLOW_S
    # pairs whose second start comes a pace after the first answer (the first pair's first
    # start may be before it), spaced by the fleet's pace together
    first_later = next(i for i, t in enumerate(starts) if t >= answered + SLOW_S)
    pairs, span = _spaced(starts, starts[max(0, first_later - 1)])
    assert pairs >= 6 and span >= (pairs - 1) * SLOW_S, _gaps(starts)
    run = load_run(tmp_path / "out", job)
    by_worker = {f.name for f in run.dir.glob("pages-*.jsonl") if f.stat().st_size}
    assert by_worker == {"pages-a.jsonl", "pages-b.jsonl"}, "both workers fetched"
