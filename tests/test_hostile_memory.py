"""Memory stays flat through bombs and giant pages: the crawler's peak RSS, measured."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import pytest

from tests.conftest import (
    CRAWL,
    Site,
    assert_no_traceback,
    fast,
    load_checked_run,
    seeds_file,
    start_crawl,
)
from tests.site_hostile import bomb_sizes

LIMIT_MIB = 300
TREE_LIMIT_MIB = 450


def tree_pss_kib(pids: list[int]) -> int:
    """The proportional set size of these processes together, in KiB, from /proc."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):  # shared pages counted once, split among sharers
                    total += int(line.split()[1])
    return total


@pytest.mark.slow
async def test_peak_memory_stays_under_300_mb_through_bombs_and_giant_pages(
        site: Site, tmp_path: Path) -> None:
    paths = [*(f"/encoded/bomb-{kind}" for kind in bomb_sizes()), "/gzip-bomb",
             "/links/100000", "/nested/100000", f"/big/{10**15}", "/big/9000000",
             "/big/20000000?length=1", "/site/"]
    out, peak_file = tmp_path / "out", tmp_path / "maxrss"
    seeds = seeds_file(tmp_path, *(site.url(p) for p in paths))
    crawl = await start_crawl(seeds, *fast(out, timeout=30), "--max-depth", "0", "--workers", "2",
                              command=(sys.executable, "-m", "tests.maxrss", str(peak_file),
                                       str(CRAWL)))
    tree_peak = 0
    while crawl.proc.returncode is None:
        tree_peak = max(tree_peak, tree_pss_kib(crawl.descendants()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(crawl.proc.wait(), 0.05)
    result = await crawl.wait()
    assert result.returncode == 0, str(result)
    assert_no_traceback(result)
    run = load_checked_run(out)

    peak_mib, tree_mib = int(peak_file.read_text()) / 1024, tree_peak / 1024
    print(f"peak RSS of one process: {peak_mib:.0f} MiB; of the tree at once (PSS, sampled "
          f"every 50 ms): {tree_mib:.0f} MiB")
    assert peak_mib < LIMIT_MIB, "the largest process of the crawl (ru_maxrss)"
    # the main process, two parse processes, the forkserver and the resource tracker
    # together: a bomb decoded whole would be gigabytes
    assert tree_mib < TREE_LIMIT_MIB
    for kind in bomb_sizes():
        assert run.error(site.url(f"/encoded/bomb-{kind}"))["kind"] == "too_large"
    assert run.error(site.url(f"/big/{10**15}"))["kind"] == "too_large"
    assert run.page(site.url("/big/9000000"))["bytes"] == 9_000_000
    assert run.page(site.url("/links/100000"))["links"] == 100_000
    assert run.page(site.url("/nested/100000"))["title"] == "Nested 100000"
