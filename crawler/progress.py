"""What a person sees while a crawl runs: a rich progress bar on a terminal, else log lines."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

from .settings import Settings
from .stats import Stats

log = logging.getLogger("crawler")


class Progress:
    """Live bar when `progress` is on (default: when stderr is a terminal); a log line per
    `stats_interval` otherwise, so that cron mail and log files stay short."""

    def __init__(self, settings: Settings, stats: Stats) -> None:
        self._stats = stats
        wanted = settings.progress
        self.live = sys.stderr.isatty() if wanted == "auto" else bool(wanted)
        self._total = settings.max_pages or None
        self._bar: RichProgress | None = None
        self._task: Any = None
        self._quiet = settings.verbosity < 0

    def start(self) -> None:
        if not self.live:
            return
        self._bar = RichProgress(
            TextColumn("[bold]crawling"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:.1f} pages/s"), TextColumn("queue {task.fields[left]}"),
            TextColumn("errors {task.fields[errors]}"), TimeElapsedColumn(),
            console=Console(stderr=True), refresh_per_second=4, transient=False)
        self._task = self._bar.add_task("crawl", total=self._total, rate=0.0, left="?",
                                        errors=0)
        self._bar.start()

    def update(self) -> None:
        if self._bar is not None:
            counters = self._stats.counters
            elapsed = self._stats.elapsed_s() or 1.0
            self._bar.update(self._task, completed=counters["pages"],
                             rate=counters["pages"] / elapsed, errors=counters["errors"])

    def tick(self, data: dict[str, Any]) -> None:
        """Called with each stats snapshot."""
        if self._bar is not None:
            self._bar.update(self._task, left=data["frontier_left"])
            self.update()
        elif not self._quiet:
            log.info("%d pages, %d errors, %.1f pages/s, %d queued, loop lag p99 %.1f ms",
                     data["pages"], data["errors"], data["pages_per_s"], data["frontier_left"],
                     data["loop_lag_ms"]["p99"])

    def stop(self) -> None:
        if self._bar is not None:
            self.update()
            self._bar.stop()
            self._bar = None

    def summary(self, data: dict[str, Any], run_dir: Path) -> None:
        if self._quiet:
            return
        statuses = ", ".join(f"{k}: {v}" for k, v in data["status_counts"].items()) or "none"
        print(f"{data['stop_reason']}: {data['pages']} pages, {data['errors']} errors, "
              f"{data['pages_per_s']} pages/s in {data['duration_s']:.1f} s; "
              f"statuses {statuses}; {data['frontier_left']} left in the frontier\n"
              f"output: {run_dir}", file=sys.stderr)
