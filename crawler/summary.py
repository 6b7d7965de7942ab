"""Step 8a: a run's numbers, from its records and stats.json, as plain JSON-ready data."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .clock import iso
from .reader import read_content, read_errors, read_links, read_pages, read_stats, run_folder

__all__ = ["summarize"]

TOP_HOSTS = 10
MAX_PROBLEMS = 20
HISTOGRAM_BINS = 20
TIMELINE_COLUMNS = 60
# bucket widths for "pages over time", in ms: the smallest that gives at most 60 columns
_BUCKETS_MS = (
    *(10, 20, 50, 100, 200, 500),
    *(1000 * s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)),
    *(1000 * s for s in (7200, 21600, 43200, 86400)),
)
_CRAWL_COUNTERS = ("robots_blocked", "out_of_scope", "duplicates", "retries", "frontier_left")
_CHANGES = ("new", "changed", "unchanged", "gone")


def summarize(run_dir: Path) -> dict[str, Any]:
    """The run's numbers, from its records plus `stats.json` where the records cannot tell.

    Counts (pages, errors, bytes, statuses, depths, hosts, timings) come from the records, so
    they hold for a run that is still going or was killed; the duration, the change summary,
    the crawl counters and the engine figures come from `stats.json` when it exists. The
    result is plain JSON-ready data: `write_html` and `print_summary` only format it.
    `run_dir` is a job or run folder (see `reader.run_folder`).
    """
    run = run_folder(run_dir)
    try:
        stats = read_stats(run)
    except FileNotFoundError:
        stats = {}

    pages = total_bytes = 0
    statuses: Counter[int] = Counter()
    depths: Counter[int] = Counter()
    hosts: Counter[str] = Counter()
    elapsed: list[float] = []
    times: list[datetime] = []
    problems: list[dict[str, str]] = []
    for page in read_pages(run):
        pages += 1
        total_bytes += _int(page.get("bytes"))
        status = _int(page.get("status"))
        statuses[status] += 1
        depths[_int(page.get("depth"))] += 1
        hosts[urlsplit(str(page.get("url") or "")).hostname or "?"] += 1
        if isinstance(page.get("elapsed_ms"), int | float):
            elapsed.append(page["elapsed_ms"])
        if (at := _time(page.get("fetched_at"))) is not None:
            times.append(at)
        if status >= 400 and len(problems) < MAX_PROBLEMS:
            problems.append({"url": str(page.get("url")), "what": f"HTTP {status}"})

    kinds: Counter[str] = Counter()
    for error in read_errors(run):
        kind = str(error.get("kind") or "other")
        kinds[kind] += 1
        if len(problems) < MAX_PROBLEMS:
            what = f"{kind}: {error.get('message') or ''}".strip()
            problems.append({"url": str(error.get("url")), "what": what})

    links = followed = 0
    for link in read_links(run):
        links += 1
        followed += link.get("followed") is True

    extracted = extracted_empty = extracted_words = 0
    for record in read_content(run):
        words = _int(record.get("words"))
        extracted += words > 0
        extracted_empty += words == 0
        extracted_words += words

    if isinstance(stats.get("duration_s"), int | float):
        duration = float(stats["duration_s"])
    elif times:
        duration = (max(times) - min(times)).total_seconds()
    else:
        duration = 0.0
    return {
        "run_dir": str(run),
        "job": str(stats.get("job") or run.parent.parent.name),
        "run_id": str(stats.get("run_id") or run.name),
        "started_at": stats.get("started_at") or (iso(min(times)) if times else None),
        "finished_at": stats.get("finished_at") or (iso(max(times)) if times else None),
        "stop_reason": stats.get("stop_reason"),
        "pages": pages,
        "errors": sum(kinds.values()),
        "bytes": total_bytes,
        "duration_s": round(duration, 3),
        "pages_per_s": _pages_per_s(stats, pages, duration),
        "links": links,
        "links_followed": followed,
        "content": {"pages": extracted + extracted_empty, "with_content": extracted,
                    "empty": extracted_empty, "words": extracted_words},
        "status_counts": {str(code): n for code, n in sorted(statuses.items())},
        "errors_by_kind": dict(kinds.most_common()),
        "pages_per_depth": {str(depth): n for depth, n in sorted(depths.items())},
        "hosts": len(hosts),
        "top_hosts": [[host, n] for host, n in _top(hosts, TOP_HOSTS)],
        "elapsed_ms": _elapsed(elapsed),
        "timeline": _timeline(times),
        "changes": _pick(stats, _CHANGES),
        "crawl": _pick(stats, _CRAWL_COUNTERS),
        "loop_lag_ms": _dict_or_none(stats.get("loop_lag_ms")),
        "process_pool": _dict_or_none(stats.get("process_pool")),
        "thread_pool": _dict_or_none(stats.get("thread_pool")),
        "problems": problems,
        "has_stats": bool(stats),
    }


def _pages_per_s(stats: dict[str, Any], pages: int, duration: float) -> float | None:
    # the crawl's own figure (from the unrounded duration) when it counted the same pages
    if stats.get("pages") == pages and isinstance(stats.get("pages_per_s"), int | float):
        return float(stats["pages_per_s"])
    return round(pages / duration, 2) if duration > 0 else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _top(counts: Counter[str], n: int) -> list[tuple[str, int]]:
    # by count, then by name, so that ties do not depend on the order of the records
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:n]


def _pick(stats: dict[str, Any], keys: Iterable[str]) -> dict[str, Any] | None:
    picked = {key: stats[key] for key in keys if key in stats}
    return picked or None


def _dict_or_none(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) and value else None


def _percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty sequence."""
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _nice_step(raw: float) -> int:
    """The smallest of 1, 2, 5 times a power of ten that is at least `raw` (and at least 1)."""
    if raw <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(raw))
    factor = next((f for f in (1, 2, 5) if f * magnitude >= raw), 10)
    return int(factor * magnitude)


def _elapsed(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    ordered = sorted(values)
    top = ordered[-1]
    step = _nice_step(top / HISTOGRAM_BINS)
    bins = [0] * (int(top // step) + 1)
    for value in ordered:
        bins[int(value // step)] += 1
    return {
        "count": len(ordered),
        "p50": _percentile(ordered, 50),
        "p90": _percentile(ordered, 90),
        "p99": _percentile(ordered, 99),
        "max": top,
        "histogram": [[i * step, (i + 1) * step, n] for i, n in enumerate(bins)],
    }


def _timeline(times: list[datetime]) -> dict[str, Any] | None:
    if not times:
        return None
    start = min(times)
    span_ms = _ms(max(times) - start)
    bucket = next((b for b in _BUCKETS_MS if span_ms // b < TIMELINE_COLUMNS), _BUCKETS_MS[-1])
    counts = [0] * (span_ms // bucket + 1)
    for at in times:
        counts[_ms(at - start) // bucket] += 1
    bucket_s = bucket // 1000 if bucket >= 1000 else bucket / 1000
    return {"start": iso(start), "bucket_s": bucket_s, "counts": counts}


def _ms(delta: timedelta) -> int:
    # whole milliseconds, as the records carry them: no float rounding at bucket edges
    return delta // timedelta(milliseconds=1)
