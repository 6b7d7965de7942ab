"""Step 8b: a run's summary as report.html: one self-contained file, inline CSS and SVG."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from .charts import bar_chart, column_chart, fmt, pages_over_time
from .reader import run_folder
from .summary import MAX_PROBLEMS

__all__ = ["write_html"]

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1180px;color:#1d2430;
padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.05rem;margin:1.6rem 0 .4rem}
.sub{color:#5b6472;margin-top:0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(130px,1fr));gap:.6rem}
.card{border:1px solid #d8dde5;border-radius:6px;padding:.5rem .7rem}
.card b{display:block;font-size:1.3rem}.card span{color:#5b6472;font-size:.85rem}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:0 2rem}
table{border-collapse:collapse}td,th{padding:.15rem .8rem .15rem 0;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
svg text{font:12px system-ui,sans-serif;fill:#1d2430}svg rect.bar{fill:#3d7bd9}
svg line{stroke:#9aa3af}svg{max-width:100%;height:auto}.muted{color:#5b6472}
"""
# the headline figures: (data-key, label); the keys are the summary's (and stats.json's)
_CARDS = (
    ("pages", "pages"),
    ("errors", "errors"),
    ("bytes", "bytes"),
    ("duration_s", "duration (s)"),
    ("pages_per_s", "pages/s"),
    ("hosts", "hosts"),
    ("links", "links"),
    ("links_followed", "links followed"),
)


def write_html(run_dir: Path, summary: dict[str, Any]) -> Path:
    """Write `report.html` into the run folder and return its path.

    One self-contained file: inline CSS, inline SVG charts, no script and nothing fetched,
    so it opens offline and from an archive. Every string from the data is escaped. Each
    figure carries the summary key it shows (`data-key`), so scripts and tests can read the
    numbers back without scraping prose.
    """
    path = run_folder(run_dir) / "report.html"
    path.write_text(render(summary), encoding="utf-8")
    return path


def render(s: dict[str, Any]) -> str:
    """The whole page for a summary made by `summary.summarize`."""
    title = f"Crawl report: {s['job']} / {s['run_id']}"
    cards = "".join(
        f'<div class="card" data-key="{key}"><b>{escape(fmt(s[key]))}</b>'
        f"<span>{escape(name)}</span></div>"
        for key, name in _CARDS
    )
    when = " to ".join(escape(str(t)) for t in (s["started_at"], s["finished_at"]) if t)
    stop = f", stopped: {escape(str(s['stop_reason']))}" if s["stop_reason"] else ""
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">{when}{stop}<br>{escape(s["run_dir"])}</p>',
        f'<div class="cards">{cards}</div>',
        _timeline_section(s["timeline"]),
        '<div class="grid">',
        _chart_section("HTTP status codes", s["status_counts"].items(), "status codes"),
        _elapsed_section(s["elapsed_ms"]),
        _chart_section("Pages per depth", s["pages_per_depth"].items(), "pages per depth"),
        _chart_section("Errors by kind", s["errors_by_kind"].items(), "errors by kind"),
        _chart_section(f"Top hosts (of {s['hosts']})", s["top_hosts"], "top hosts"),
        *_engine_sections(s),
        "</div>",
        '<div class="grid">',
        _table_section("Changes since the last run", "changes", s["changes"]),
        _table_section("Crawl counters", "crawl", s["crawl"]),
        _table_section("Process pool", "process_pool", s["process_pool"]),
        _table_section("Thread pool", "thread_pool", s["thread_pool"]),
        _pace_section(s.get("throttle_delay_s")),
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


def _chart_section(title: str, rows: Any, label: str) -> str:
    chart = bar_chart([(str(name), value) for name, value in rows], label)
    return f"<section><h2>{escape(title)}</h2>{chart}</section>"


def _engine_sections(s: dict[str, Any]) -> list[str]:
    """The hybrid engine at a glance: how long each pool was busy against the wall clock,
    and how late the event loop woke (the proof that nothing blocked it)."""
    sections = []
    pools = [
        (name, s[key]["busy_s"])
        for name, key in (("process pool", "process_pool"), ("thread pool", "thread_pool"))
        if s[key] and isinstance(s[key].get("busy_s"), int | float)
    ]
    if pools:
        rows = [("wall clock", s["duration_s"]), *pools]
        sections.append(
            _chart_section("Pools' busy time (s, summed over workers)", rows, "pools busy time")
        )
    if s["loop_lag_ms"]:
        sections.append(
            _chart_section("Event loop lag (ms)", s["loop_lag_ms"].items(), "loop lag")
        )
    return sections


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


def _table_section(title: str, key: str, rows: dict[str, Any] | None) -> str:
    if not rows:
        return ""
    cells = "".join(
        f'<tr><td>{escape(str(k))}</td><td class="n">{escape(fmt(v))}</td></tr>'
        for k, v in rows.items()
    )
    return f'<section data-key="{key}"><h2>{escape(title)}</h2><table>{cells}</table></section>'


def _pace_section(d: dict[str, Any] | None) -> str:
    """The slowest hosts' pace (seconds between starts): where politeness held the crawl."""
    if not d or not d.get("slowest"):
        return ""
    rows = "".join(
        f'<tr><td>{escape(str(host))}</td><td class="n">{escape(fmt(pace))}</td></tr>'
        for host, pace in d["slowest"]
    )
    figures = f"p50 {fmt(d.get('p50'))}, max {fmt(d.get('max'))} over {fmt(d.get('hosts'))} hosts"
    return (
        '<section data-key="throttle_delay_s"><h2>Slowest hosts (s between starts)</h2>'
        f'<p class="muted">{escape(figures)}</p><table>{rows}</table></section>'
    )


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
