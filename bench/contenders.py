"""The contenders: how to start each one on the site, and how to count what it found."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urlsplit

from crawler.reader import read_pages, read_stats

from .site import Manifest

REPO = Path(__file__).resolve().parent.parent
SCRAPY_PYTHON = REPO / "bench" / ".venv-scrapy" / "bin" / "python"
JOB = "bench"


@dataclass(frozen=True, slots=True)
class Context:
    """The site every contender is run against."""

    root: Path
    origin: str
    manifest: Manifest
    python: str = sys.executable  # the project's environment: crawl, aiohttp, bs4, lxml

    @property
    def start(self) -> str:
        return self.origin + "/"


@dataclass(slots=True)
class Found:
    """What a run found: expected pages fetched with status 200, and figures of its own."""

    pages: int
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Contender:
    name: str
    label: str
    command: Callable[[Context, Path], list[str]]
    found: Callable[[Context, Path], Found]


def count_found(ctx: Context, records: Iterable[dict[str, Any]]) -> int:
    """Expected paths recorded with status 200, each once, whatever the spelling of its URL."""
    expected = set(ctx.manifest.expected)
    got = set()
    for record in records:
        if record.get("status") == 200:
            got.add(urlsplit(urldefrag(str(record["url"]))[0]).path or "/")
    return len(got & expected)


def _jsonl(path: Path) -> Iterable[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _crawler_command(ctx: Context, work: Path) -> list[str]:
    seeds = work / "seeds.txt"
    seeds.write_text(ctx.start + "\n", encoding="utf-8")
    crawl = str(Path(ctx.python).with_name("crawl"))
    return [crawl, str(seeds), "--out", str(work / "out"), "--job", JOB, "--fresh",
            "--no-progress", "-q"]


def _extract_command(ctx: Context, work: Path) -> list[str]:
    """The default crawl with `--extract text`: main content of every page, in the pool."""
    return [*_crawler_command(ctx, work), "--extract", "text"]


def _fleet_command(cluster: bool) -> Callable[[Context, Path], list[str]]:
    """Two workers on one machine sharing a Redis frontier, on one server or a 3-master
    cluster (no --fresh: the server is new, and a worker's --fresh would wipe the run the
    other has started); Redis's CPU goes to redis-cpu.json."""

    def command(ctx: Context, work: Path) -> list[str]:
        crawl = [c for c in _crawler_command(ctx, work) if c != "--fresh"]
        where = ["--cluster"] if cluster else []
        return [ctx.python, "-m", "bench.fleet", "2", *where, "--cpu",
                str(work / "redis-cpu.json"), *crawl]

    return command


def _fleet_found(ctx: Context, work: Path) -> Found:
    """The crawler's figures and Redis's CPU per page (ms)."""
    found = _crawler_found(ctx, work)
    cpu = json.loads((work / "redis-cpu.json").read_text(encoding="utf-8"))
    pages = found.pages
    found.info["redis_ms_per_page"] = round(1000 * cpu["redis_cpu_s"] / pages, 3) if pages \
        else None
    work_s = cpu["redis_cpu_s"] - cpu.get("idle_cpu_s", 0.0)
    found.info["redis_work_ms_per_page"] = round(1000 * work_s / pages, 3) if pages else None
    return found


def tenths(times: list[float]) -> float | None:
    """Pages/s over the last tenth of the pages fetched, as a share of the first tenth's:
    1.0 is a cost flat in the size of the job. None below 100 pages."""
    times = sorted(times)
    tenth = len(times) // 10
    if tenth < 10:
        return None
    first, last = times[tenth] - times[0], times[-1] - times[-1 - tenth]
    return round(first / last, 3) if last > 0 else None


def cpu_between(series: list[list[float]], start: float, end: float) -> float | None:
    """The tree's CPU (% of one core) from `start` to `end` (Unix times), from the first and
    the last sample of `bench.measure` inside them (a sample sums the live processes: one
    after `end` may come when the parse processes have exited, their CPU gone from the sum);
    None for under a second of samples."""
    inside = [s for s in series if start <= s[0] <= end]
    if len(inside) < 2 or inside[-1][0] - inside[0][0] < 1.0:
        return None
    (t0, c0), (t1, c1) = inside[0], inside[-1]
    return round(100 * (c1 - c0) / (t1 - t0), 1)


def _crawler_found(ctx: Context, work: Path) -> Found:
    job = work / "out" / JOB
    stats = read_stats(job)
    pages = list(read_pages(job))
    fetched = sorted(datetime.fromisoformat(p["fetched_at"]).timestamp() for p in pages)
    info = {"loop_lag_p99_ms": stats["loop_lag_ms"]["p99"],
            "loop_lag_max_ms": stats["loop_lag_ms"]["max"],
            "process_pool_busy_s": stats["process_pool"]["busy_s"],
            "thread_pool_busy_s": stats["thread_pool"]["busy_s"],
            "stats_pages_per_s": stats["pages_per_s"],
            "last_vs_first_tenth": tenths(fetched),
            "crawling_from": fetched[0] if fetched else None,
            "crawling_to": fetched[-1] if fetched else None}
    return Found(count_found(ctx, pages), info)


def _items_found(ctx: Context, work: Path) -> Found:
    return Found(count_found(ctx, _jsonl(work / "items.jsonl")))


def _scrapy_command(ctx: Context, work: Path) -> list[str]:
    if not SCRAPY_PYTHON.exists():
        raise RuntimeError(f"{SCRAPY_PYTHON} is missing: `make bench` installs Scrapy there")
    return [str(SCRAPY_PYTHON), "-m", "scrapy", "runspider",
            str(REPO / "bench" / "scrapy_spider.py"), "-a", f"start={ctx.start}",
            "-O", str(work / "items.jsonl")]


def _naive_command(pool: bool) -> Callable[[Context, Path], list[str]]:
    def command(ctx: Context, work: Path) -> list[str]:
        extra = ["--pool"] if pool else []
        return [ctx.python, "-m", "bench.naive", ctx.start, str(work / "items.jsonl"), *extra]

    return command


def _ceiling_command(ctx: Context, work: Path) -> list[str]:
    return [ctx.python, "-m", "bench.ceiling", str(ctx.root), "2"]


def _ceiling_found(ctx: Context, work: Path) -> Found:
    summary = json.loads((work / "stdout.txt").read_text(encoding="utf-8"))
    return Found(int(summary["pages"]), {"links": summary["links"]})


CONTENDERS = {c.name: c for c in (
    Contender("crawler", "this crawler (default analysis)", _crawler_command, _crawler_found),
    Contender("crawler-extract", "this crawler with --extract text (trafilatura)",
              _extract_command, _crawler_found),
    Contender("crawler-redis", "this crawler, 2 workers sharing a Redis frontier",
              _fleet_command(False), _fleet_found),
    Contender("crawler-cluster", "this crawler, 2 workers on a 3-master Redis Cluster",
              _fleet_command(True), _fleet_found),
    Contender("scrapy", "Scrapy, link-following spider", _scrapy_command, _items_found),
    Contender("naive", "aiohttp + BeautifulSoup, one process", _naive_command(False),
              _items_found),
    Contender("naive-pool", "aiohttp + BeautifulSoup + process pool", _naive_command(True),
              _items_found),
    Contender("ceiling", "lxml parse + links only, from disk, 2 processes", _ceiling_command,
              _ceiling_found),
)}
