"""Medians of the runs, the table `make bench` prints (Markdown, for the README), the targets."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from typing import Any

from .contenders import CONTENDERS, SCRAPY_PYTHON
from .nginx import find_nginx

Row = dict[str, Any]
MEDIAN_KEYS = ("wall_s", "pages_per_s", "peak_rss_mb", "peak_pss_mb", "cpu_pct", "cpu_s",
               "cpu_pct_crawling", "server_cpu_pct", "machine_cpu_pct",
               "loop_lag_p99_ms", "redis_ms_per_page", "redis_work_ms_per_page",
               "last_vs_first_tenth")

TARGETS = {"speed_vs_scrapy": 8.0, "rss_vs_scrapy": 2.0, "frontier_rss_mb": 300.0,
           "loop_lag_p99_ms": 50.0, "cpu_pct": 180.0, "last_vs_first_tenth": 0.9}


def summarize(runs: list[Row]) -> Row:
    """Medians of the figures; found is the worst run's, disallowed fetches the sum."""
    ok = [r for r in runs if r["returncode"] == 0] or runs
    out: Row = {"runs": len(runs), "failed": sum(r["returncode"] != 0 for r in runs),
                "found": min(r["found"] for r in ok), "expected": ok[0]["expected"],
                "disallowed_fetched": sum(r["disallowed_fetched"] for r in runs)}
    for key in MEDIAN_KEYS:
        values = [r[key] for r in ok if r.get(key) is not None]
        out[key] = round(statistics.median(values), 2) if values else None
    return out


def add_ratios(medians: dict[str, Row]) -> None:
    for ref in ("scrapy", "ceiling"):
        base = medians.get(ref, {}).get("pages_per_s")
        for row in medians.values():
            row[f"x_{ref}"] = round(row["pages_per_s"] / base, 2) if base else None


def _cell(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def table(medians: dict[str, Row]) -> str:
    head = ("| contender | found / expected | wall s | pages/s | peak RSS MB (tree) | CPU % "
            "| × Scrapy | × ceiling | disallowed fetched |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for name, row in medians.items():
        label = CONTENDERS[name].label
        failed = f" ({row['failed']} failed)" if row["failed"] else ""
        lines.append(
            f"| {label}{failed} | {row['found']:,} / {row['expected']:,} "
            f"| {_cell(row['wall_s'])} | {_cell(row['pages_per_s'])} "
            f"| {_cell(row['peak_rss_mb'], 0)} | {_cell(row['cpu_pct'], 0)} "
            f"| {_cell(row['x_scrapy'], 2)} | {_cell(row['x_ceiling'], 2)} "
            f"| {'–' if name == 'ceiling' else row['disallowed_fetched']} |")
    for name, row in medians.items():
        if row.get("redis_ms_per_page") is not None:
            ceiling = 1000 / row["redis_ms_per_page"] if row["redis_ms_per_page"] else None
            work = row.get("redis_work_ms_per_page")
            lines.append(f"\n{CONTENDERS[name].label}: Redis CPU {row['redis_ms_per_page']:.3f} "
                         f"ms per page (≈ {_cell(ceiling, 0)} pages/s per Redis core); "
                         f"less what the servers burn idle: {_cell(work, 3)} ms")
    return "\n".join(lines)


def targets(medians: dict[str, Row], frontier: Row | None, hub: Row | None = None) -> list[Row]:
    """Each target of the issue: measured value, limit, met or not (None: not measured)."""
    crawler, scrapy = medians.get("crawler"), medians.get("scrapy")
    out: list[Row] = []

    def check(name: str, value: float | None, limit: float, higher_is_better: bool) -> None:
        met = None if value is None else (value >= limit if higher_is_better else value < limit)
        out.append({"target": name, "value": value, "limit": limit, "met": met})

    if crawler and scrapy and scrapy["pages_per_s"] and scrapy["peak_rss_mb"]:
        check("pages/s vs Scrapy (x)", crawler["x_scrapy"], TARGETS["speed_vs_scrapy"], True)
        check("tree peak RSS vs Scrapy (x)",
              round(crawler["peak_rss_mb"] / scrapy["peak_rss_mb"], 2),
              TARGETS["rss_vs_scrapy"], False)
    if crawler:
        check("loop lag p99 (ms)", crawler["loop_lag_p99_ms"], TARGETS["loop_lag_p99_ms"], False)
        # judged while pages wait (first page to last); the whole run's is in the table
        check("process tree CPU while crawling (% of one core)", crawler["cpu_pct_crawling"],
              TARGETS["cpu_pct"], True)
        check("pages/s, last tenth vs first (x)", crawler["last_vs_first_tenth"],
              TARGETS["last_vs_first_tenth"], True)
        complete = crawler["found"] == crawler["expected"] and not crawler["disallowed_fetched"]
        out.append({"target": "found = expected, nothing disallowed fetched",
                    "value": f"{crawler['found']}/{crawler['expected']}, "
                             f"{crawler['disallowed_fetched']} disallowed",
                    "limit": None, "met": complete})
    extract = medians.get("crawler-extract")
    if crawler and extract and crawler["pages_per_s"]:
        check("pages/s with --extract vs without (x)",
              round(extract["pages_per_s"] / crawler["pages_per_s"], 2), 0.5, True)
    if hub and hub["returncode"] == 0:
        check(f"loop lag p99 (ms), hub run (a page of {hub['links']:,} links)",
              hub["loop_lag_p99_ms"], TARGETS["loop_lag_p99_ms"], False)
        check("loop lag max (ms), hub run", hub["loop_lag_max_ms"],
              TARGETS["loop_lag_p99_ms"], False)
    if frontier:
        check(f"frontier run peak RSS (MB), {frontier['discovered']:,} URLs",
              frontier["peak_rss_mb"], TARGETS["frontier_rss_mb"], False)
    return out


def targets_text(rows: list[Row]) -> str:
    marks = {True: "met", False: "NOT met", None: "not measured"}
    return "\n".join(
        f"- {r['target']}: {_cell(r['value'], 2)}"
        + (f" (limit {r['limit']:g})" if r["limit"] is not None else "")
        + f" — {marks[r['met']]}" for r in rows)


def _version(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return None
    return (done.stdout or done.stderr).strip().splitlines()[-1] if done.returncode == 0 else None


def machine() -> Row:
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), None)
        with open("/proc/meminfo") as f:
            memory_kb = int(f.readline().split()[1])
    except OSError:
        memory_kb = 0
    import lxml.etree  # type: ignore[import-untyped]

    scrapy = (_version([str(SCRAPY_PYTHON), "-c", "import scrapy; print(scrapy.__version__)"])
              if SCRAPY_PYTHON.exists() else None)
    return {"cores": os.cpu_count(), "cpu": model, "memory_gb": round(memory_kb / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "lxml": ".".join(map(str, lxml.etree.LXML_VERSION)),
            "nginx": _version([find_nginx(), "-v"]), "scrapy": scrapy,
            "load_average": os.getloadavg()}
