"""Step 8: the run's summary, on the terminal and as report.html."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from html import escape
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import urlsplit

import typer
from rich.columns import Columns
from rich.console import Console
from rich.table import Table
from rich.text import Text

from crawler.charts import bar_chart, column_chart, fmt, pages_over_time
from crawler.reader import read_errors, read_links, read_pages, read_stats, run_folder

__all__ = ["app", "main", "print_summary", "summarize", "write_html"]

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


# -- the numbers ---------------------------------------------------------------------------


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
        "started_at": stats.get("started_at") or (_iso(min(times)) if times else None),
        "finished_at": stats.get("finished_at") or (_iso(max(times)) if times else None),
        "stop_reason": stats.get("stop_reason"),
        "pages": pages,
        "errors": sum(kinds.values()),
        "bytes": total_bytes,
        "duration_s": round(duration, 3),
        "pages_per_s": _pages_per_s(stats, pages, duration),
        "links": links,
        "links_followed": followed,
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


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
    return {"start": _iso(start), "bucket_s": bucket_s, "counts": counts}


def _ms(delta: timedelta) -> int:
    # whole milliseconds, as the records carry them: no float rounding at bucket edges
    return delta // timedelta(milliseconds=1)


# -- the terminal --------------------------------------------------------------------------


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    """Print the summary as rich tables (to stdout unless a console is given)."""
    out = console or Console()
    head = _table("", "")
    head.title = Text(f"Crawl {summary['job']}, run {summary['run_id']}")
    for name, value in _headline(summary):
        head.add_row(Text(name), Text(value))
    out.print(head)
    sections: list[tuple[str, str, Iterable[tuple[Any, Any]]]] = [
        ("status", "pages", summary["status_counts"].items()),
        ("depth", "pages", summary["pages_per_depth"].items()),
        ("error kind", "errors", summary["errors_by_kind"].items()),
        (f"host ({summary['hosts']} in all)", "pages", summary["top_hosts"]),
        ("change", "pages", (summary["changes"] or {}).items()),
        ("counter", "count", (summary["crawl"] or {}).items()),
        ("engine", "value", _engine_rows(summary)),
    ]
    tables = []
    for key, value_name, rows in sections:
        table = _table(key, value_name)
        for name, value in rows:
            # Text, not str: a host or an error kind must not be read as rich markup
            table.add_row(Text(str(name)), Text(fmt(value)))
        if table.row_count:
            tables.append(table)
    out.print(Columns(tables))
    out.print(Text(f"run folder: {summary['run_dir']}"), soft_wrap=True)


def _table(key: str, value: str) -> Table:
    table = Table(title_justify="left", show_header=bool(key))
    table.add_column(Text(key))
    table.add_column(Text(value), justify="right")
    return table


def _headline(summary: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [
        ("pages", fmt(summary["pages"])),
        ("errors", fmt(summary["errors"])),
        ("bytes", f"{summary['bytes']} ({_human_bytes(summary['bytes'])})"),
        ("duration (s)", fmt(summary["duration_s"])),
        ("pages/s", fmt(summary["pages_per_s"])),
        ("links", f"{summary['links']} ({summary['links_followed']} followed)"),
    ]
    if summary["stop_reason"]:
        rows.append(("stop reason", str(summary["stop_reason"])))
    if summary["elapsed_ms"]:
        e = summary["elapsed_ms"]
        figures = " / ".join(fmt(e[k]) for k in ("p50", "p90", "p99", "max"))
        rows.append(("elapsed_ms p50 / p90 / p99 / max", figures))
    return rows


def _engine_rows(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key in ("loop_lag_ms", "process_pool", "thread_pool"):
        for name, value in (summary[key] or {}).items():
            rows.append((f"{key} {name}", value))
    return rows


def _human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{size:.1f} {unit}"


# -- the HTML ------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:980px;color:#1d2430;
padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.1rem;margin:2rem 0 .5rem}
.sub{color:#5b6472;margin-top:0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(140px,1fr));gap:.6rem}
.card{border:1px solid #d8dde5;border-radius:6px;padding:.5rem .7rem}
.card b{display:block;font-size:1.3rem}.card span{color:#5b6472;font-size:.85rem}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:0 2rem}
table{border-collapse:collapse}td,th{padding:.15rem .8rem .15rem 0;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
svg text{font:12px system-ui,sans-serif;fill:#1d2430}svg rect.bar{fill:#3d7bd9}
svg line{stroke:#9aa3af}svg{max-width:100%;height:auto}.muted{color:#5b6472}
"""


def write_html(run_dir: Path, summary: dict[str, Any]) -> Path:
    """Write `report.html` into the run folder and return its path.

    One self-contained file: inline CSS, inline SVG charts, no script and nothing fetched,
    so it opens offline and from an archive. Every string from the data is escaped.
    """
    path = run_folder(run_dir) / "report.html"
    path.write_text(_html(summary), encoding="utf-8")
    return path


def _html(s: dict[str, Any]) -> str:
    title = f"Crawl report: {s['job']} / {s['run_id']}"
    cards = "".join(
        f'<div class="card"><b>{escape(value)}</b><span>{escape(name)}</span></div>'
        for name, value in [
            ("pages", fmt(s["pages"])),
            ("errors", fmt(s["errors"])),
            ("bytes", fmt(s["bytes"])),
            ("duration (s)", fmt(s["duration_s"])),
            ("pages/s", fmt(s["pages_per_s"])),
            ("hosts", fmt(s["hosts"])),
            ("links", fmt(s["links"])),
            ("links followed", fmt(s["links_followed"])),
        ]
    )
    when = " to ".join(escape(str(t)) for t in (s["started_at"], s["finished_at"]) if t)
    stop = f", stopped: {escape(str(s['stop_reason']))}" if s["stop_reason"] else ""
    charts = [
        ("HTTP status codes", bar_chart(list(s["status_counts"].items()), "status codes")),
        ("Pages per depth", bar_chart(list(s["pages_per_depth"].items()), "pages per depth")),
        ("Errors by kind", bar_chart(list(s["errors_by_kind"].items()), "errors by kind")),
        (
            f"Top hosts (of {s['hosts']})",
            bar_chart([(h, n) for h, n in s["top_hosts"]], "top hosts"),
        ),
    ]
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">{when}{stop}<br>{escape(s["run_dir"])}</p>',
        f'<div class="cards">{cards}</div>',
        '<div class="grid">',
        *(f"<section><h2>{escape(h)}</h2>{chart}</section>" for h, chart in charts),
        "</div>",
        _elapsed_section(s["elapsed_ms"]),
        _timeline_section(s["timeline"]),
        '<div class="grid">',
        _table_section("Changes since the last run", s["changes"]),
        _table_section("Crawl counters", s["crawl"]),
        _table_section("Event loop lag (ms)", s["loop_lag_ms"]),
        _table_section("Process pool", s["process_pool"]),
        _table_section("Thread pool", s["thread_pool"]),
        "</div>",
        _problems_section(s["problems"]),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body></html>\n"
    )


def _elapsed_section(e: dict[str, Any] | None) -> str:
    if not e:
        return ""
    columns = [(f"{lo}–{hi} ms", n) for lo, hi, n in e["histogram"]]
    figures = ", ".join(f"{k} {fmt(e[k])}" for k in ("p50", "p90", "p99", "max"))
    return (
        f"<section><h2>Response time (elapsed_ms, {e['count']} pages)</h2>"
        f'<p class="muted">{figures}</p>{column_chart(columns, "elapsed_ms histogram")}'
        "</section>"
    )


def _timeline_section(t: dict[str, Any] | None) -> str:
    if not t:
        return ""
    return (
        f"<section><h2>Pages over time (per {fmt(t['bucket_s'])} s, UTC)</h2>"
        f"{pages_over_time(t)}</section>"
    )


def _table_section(title: str, rows: dict[str, Any] | None) -> str:
    if not rows:
        return ""
    cells = "".join(
        f'<tr><td>{escape(str(k))}</td><td class="n">{escape(fmt(v))}</td></tr>'
        for k, v in rows.items()
    )
    return f"<section><h2>{escape(title)}</h2><table>{cells}</table></section>"


def _problems_section(problems: list[dict[str, str]]) -> str:
    if not problems:
        return ""
    rows = "".join(
        f"<tr><td>{escape(p['what'])}</td><td>{escape(p['url'])}</td></tr>" for p in problems
    )
    return (
        "<section><h2>Problems: HTTP status 400 and up, then error records "
        f"(first {MAX_PROBLEMS})</h2>"
        f"<table>{rows}</table></section>"
    )


# -- the command ---------------------------------------------------------------------------

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def report(
    job_dir: Annotated[
        Path,
        typer.Argument(help="A job folder (OUT/JOB, read through its `latest`) or a run folder."),
    ],
) -> None:
    """Print a crawl run's summary and write report.html into the run folder."""
    try:
        summary = summarize(job_dir)
    except FileNotFoundError as exc:
        _fail(str(exc), 2)
    except ValueError as exc:
        _fail(f"cannot read the records: {exc}", 1)
    if not summary["pages"] and not summary["errors"]:
        _fail(f"{summary['run_dir']}: no page or error records", 2)
    print_summary(summary)
    try:
        path = write_html(Path(summary["run_dir"]), summary)
    except OSError as exc:
        _fail(f"cannot write report.html: {exc}", 1)
    typer.echo(f"report: {path}")


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"crawl-report: {message}", err=True)
    raise typer.Exit(code)


def main() -> None:
    """Entry point of the `crawl-report` console script."""
    app()


if __name__ == "__main__":
    main()
