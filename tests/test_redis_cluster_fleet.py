"""A fleet on a real three-master Redis Cluster: three `crawl` workers over three hosts, one
killed with SIGKILL, the site's own log the judge."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from redis.cluster import RedisCluster as ClusterClient

from tests.conftest import (
    RedisCluster,
    assert_no_traceback,
    complete_records,
    config_file,
    fast,
    load_run,
    reap,
    seeds_file,
    start_crawl,
    wait_until,
)

HOSTNAMES = (sys.executable, "-m", "tests.hostnames")
PAGES = 24  # per host
PER_HOST = 2


def _hosts(cluster: RedisCluster, job: str) -> list[str]:
    """Three `.test` host names whose keys land on three different masters."""
    client = ClusterClient(host="127.0.0.1", port=cluster.nodes[0].port)
    try:
        chosen: dict[int, str] = {}
        for i in range(200):
            name = f"h{i}.test"
            port = client.get_node_from_key(f"crawl:{{{job}:{name}}}:gate").port
            chosen.setdefault(port, name)
            if len(chosen) == RedisCluster.MASTERS:
                return sorted(chosen.values())
    finally:
        client.close()
    raise AssertionError("no three host names over three masters")


@pytest.fixture
async def multi_site(aiohttp_server: Any) -> Any:
    """PAGES linked pages on every host name; each request logged as (host, path), and the
    most requests each host ever had in flight at once."""
    hits: list[tuple[str, str]] = []
    flying: Counter[str] = Counter()
    most: Counter[str] = Counter()

    async def page(request: web.Request) -> web.Response:
        host = request.host.partition(":")[0]
        hits.append((host, request.path))
        if request.path == "/robots.txt":
            raise web.HTTPNotFound()
        flying[host] += 1
        most[host] = max(most[host], flying[host])
        try:
            await asyncio.sleep(0.05)
        finally:
            flying[host] -= 1
        n = int(request.match_info["n"])
        links = "".join(f'<a href="/p/{k}">{k}</a>' for k in (2 * n + 1, 2 * n + 2)
                        if k < PAGES)
        return web.Response(text=f"<html><title>{n}</title>{links}</html>",
                            content_type="text/html")

    app = web.Application()
    app.router.add_get("/p/{n:\\d+}", page)
    app.router.add_get("/robots.txt", page)
    server = await aiohttp_server(app, host="127.0.0.1", shutdown_timeout=0.5)
    return server.port, hits, most


@pytest.mark.slow
async def test_three_workers_on_a_cluster_one_killed_lose_nothing(
        multi_site: Any, tmp_path: Path, redis_cluster: RedisCluster) -> None:
    job = "cluster-fleet"
    port, hits, most = multi_site
    hosts = _hosts(redis_cluster, job)
    out = tmp_path / "out"
    config = config_file(tmp_path, "lease_timeout = 2.0\n")
    args = [seeds_file(tmp_path, *(f"http://{h}:{port}/p/0" for h in hosts)),
            *fast(out), "--concurrency", "4", "--per-host", str(PER_HOST), "--workers", "1",
            "--job", job, "--frontier", redis_cluster.url, "--config", config]
    crawls = {name: await start_crawl(*args, "--worker", name, command=HOSTNAMES)
              for name in ("w1", "w2", "w3")}
    runs = out / job / "runs"
    orphans: list[int] = []
    try:
        await wait_until(lambda: len(complete_records(runs.glob("*/pages-w2.jsonl"))) >= 3,
                         60, "w2's first pages")
        orphans = crawls["w2"].descendants()
        crawls["w2"].signal(signal.SIGKILL)
        assert (await crawls["w2"].wait(30)).returncode == -signal.SIGKILL
        recorded = {r["url"] for kind in ("pages", "errors")
                    for r in complete_records(runs.glob(f"*/{kind}-w2.jsonl"))}
        mark = len(hits)
        for name in ("w1", "w3"):
            result = await crawls[name].wait(180)
            assert result.returncode == 0, f"{name}: {result}"
            assert_no_traceback(result)
    finally:
        reap(orphans)
        for crawl in crawls.values():
            with contextlib.suppress(ProcessLookupError):
                crawl.proc.kill()
    run = load_run(out, job)
    urls = Counter(str(p["url"]) for p in run.pages)
    expected = {f"http://{h}:{port}/p/{n}" for h in hosts for n in range(PAGES)}
    assert set(urls) == expected, "every page of every host"
    assert max(urls.values()) == 1, "one record per URL"
    assert not run.errors
    fetched = Counter(f"http://{h}:{port}{p}" for h, p in hits if p != "/robots.txt")
    again = {u for u, n in fetched.items() if n > 1}
    assert not again & recorded, "a URL with a record was fetched again"
    assert again <= {f"http://{h}:{port}{p}" for h, p in hits[:mark]}
    assert [p for _, p in hits].count("/robots.txt") == len(hosts), "robots.txt once a host"
    assert max(most.values()) <= PER_HOST, f"per_host held for the fleet: {dict(most)}"
    assert run.stats.get("finished_at"), "the run finished by itself"
    # the job's keys and its hosts' keys sit on every master
    client = ClusterClient(host="127.0.0.1", port=redis_cluster.nodes[0].port)
    try:
        owners = set()
        for node in client.get_primaries():
            keys = client.scan_iter(match=f"crawl:{{{job}*", target_nodes=node)
            if any(True for _ in keys):
                owners.add(node.port)
        assert len(owners) == RedisCluster.MASTERS
    finally:
        client.close()
