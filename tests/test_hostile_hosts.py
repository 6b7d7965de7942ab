"""The hostile web across hosts: a failing host slowed alone, scope by domain, private space.

Hosts are told apart by name or by loopback address (127.0.0.1 and 127.0.0.2 are two hosts
to the crawler); no test leaves 127.0.0.0/8.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    Site,
    assert_error_shape,
    assert_no_traceback,
    config_file,
    fast,
    load_run,
    run_crawl,
    seeds_file,
)
from tests.site import LOG, make_site

HOSTNAMES = (sys.executable, "-m", "tests.hostnames")


@pytest.mark.slow
async def test_a_failing_host_is_slowed_alone_and_loses_nothing(
        site: Site, tmp_path: Path, aiohttp_server: Any) -> None:
    healthy = make_site()
    other = await aiohttp_server(healthy, host="127.0.0.2", shutdown_timeout=0.5)
    failing = [site.url(f"/status/503?i={i}") for i in range(12)]
    fine = [f"http://127.0.0.2:{other.port}/status/200?i={i}" for i in range(12)]
    config = config_file(tmp_path, "backoff = 0.2\nmax_retry_after = 0.5\n")
    out = tmp_path / "out"
    seeds = seeds_file(tmp_path, *(u for pair in zip(failing, fine, strict=True) for u in pair))
    result = await run_crawl(seeds, *fast(out), "--config", str(config), "--per-host", "2")
    assert result.returncode == 0, str(result)
    assert_no_traceback(result)
    run = load_run(out, "seeds")

    assert sorted(p["url"] for p in run.pages if p["status"] == 503) == sorted(failing)
    assert sorted(p["url"] for p in run.pages if p["status"] == 200) == sorted(fine)
    bad_hits = [h.at for h in site.log if h.path_qs.startswith("/status/503")]
    good_hits = [h.at for h in healthy[LOG] if h.path_qs.startswith("/status/200")]
    assert len(bad_hits) == len(good_hits) == 12, "each URL asked once: --retries 0"
    after = [t for t in bad_hits if t > max(good_hits)]
    assert len(after) >= 6, "the healthy host finished long before the failing one"
    assert bad_hits[-1] - bad_hits[-2] >= 0.45, "starts to the failing host are spaced"


async def test_scope_domain_follows_sibling_hosts_only(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "out"
    seed = f"http://www.site.test:{site.port}/domain/www.site.test"
    result = await run_crawl(seeds_file(tmp_path, seed), *fast(out), "--scope", "domain",
                             "--max-depth", "1", command=HOSTNAMES)
    assert result.returncode == 0, str(result)
    assert_no_traceback(result)
    run = load_run(out, "seeds")

    fetched = {h.headers["host"] for h in site.log if h.path_qs.startswith("/domain/")}
    assert fetched == {f"{name}:{site.port}" for name in
                       ("www.site.test", "shop.site.test", "site.test")}
    refused = {link["to"] for link in run.links if not link["followed"]}
    for name in ("other.test", "site.test.evil.test"):
        assert f"http://{name}:{site.port}/domain/{name}" in refused
    assert run.stats["out_of_scope"] >= 2


async def test_scope_host_keeps_to_the_seed_host_by_name(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "out"
    seed = f"http://www.site.test:{site.port}/domain/www.site.test"
    result = await run_crawl(seeds_file(tmp_path, seed), *fast(out), "--max-depth", "1",
                             command=HOSTNAMES)
    assert result.returncode == 0, str(result)

    assert {h.headers["host"] for h in site.log} == {f"www.site.test:{site.port}"}


async def test_private_networks_deny_checks_the_resolved_address_of_a_name(
        site: Site, tmp_path: Path) -> None:
    """localhost is a name: only its resolved address (loopback) says it is private."""
    config = config_file(tmp_path, 'private_networks = "deny"\n')
    out = tmp_path / "out"
    seed = f"http://localhost:{site.port}/site/"
    result = await run_crawl(seeds_file(tmp_path, seed), *fast(out), "--config", str(config))
    assert result.returncode == 4, str(result)
    assert_no_traceback(result)
    run = load_run(out, "seeds")

    assert site.log == [], f"requests to a denied address: {site.paths()}"
    error = run.error(seed)
    assert_error_shape(error)
    assert error["kind"] == "other" and "loopback" in error["message"]

