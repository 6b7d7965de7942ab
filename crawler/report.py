"""Step 8: the `crawl-report` command: a run's summary on the terminal, and report.html."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.columns import Columns
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .charts import fmt
from .htmlreport import write_html
from .summary import summarize

__all__ = ["app", "main", "print_summary", "summarize", "write_html"]


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
    content = summary["content"]
    if content["pages"]:
        rows.append(("content extracted", f"{content['with_content']} pages, "
                     f"{content['empty']} empty, {content['words']} words"))
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
