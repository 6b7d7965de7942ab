"""What a person sees while a crawl runs: a rich progress bar on a terminal, else log lines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

from .settings import Settings
from .stats import Stats

log = logging.getLogger("crawler")

REFRESH_S = 0.25  # how often the bar takes the counters, from the event loop


class Progress:
    """Live bar when `progress` is on (default: when stderr is a terminal); a log line per
    `stats_interval` otherwise, so that cron mail and log files stay short.

    The bar shows pages done (of `--max-pages` when set, with the time left), pages per
    second, the queue (the frontier's size at the last stats snapshot), errors and the time
    spent. A task of its own on the event loop feeds it the counters four times a second;
    rich draws it from its thread. Log lines written meanwhile go above the bar.
    """

    def __init__(self, settings: Settings, stats: Stats, console: Console | None = None) -> None:
        self._stats = stats
        wanted = settings.progress
        self.live = sys.stderr.isatty() if wanted == "auto" else bool(wanted)
        self._total = settings.max_pages or None
        self._console = console
        self._bar: RichProgress | None = None
        self._task: Any = None
        self._refresher: asyncio.Task[None] | None = None
        self._handlers: list[tuple[logging.StreamHandler[Any], Any]] = []
        self._quiet = settings.verbosity < 0

    def columns(self) -> list[ProgressColumn | str]:
        """The bar's columns: the ETA only when a page limit gives the bar an end."""
        done: ProgressColumn = (MofNCompleteColumn() if self._total
                                else TextColumn("{task.completed}"))
        columns: list[ProgressColumn | str] = [
            TextColumn("[bold]crawl"), BarColumn(), done, TextColumn("pages"),
            TextColumn("{task.fields[rate]:.1f} pages/s"),
            TextColumn("queue {task.fields[left]}"),
            TextColumn("errors {task.fields[errors]}"), TimeElapsedColumn(),
        ]
        if self._total:
            columns += [TextColumn("ETA"), TimeRemainingColumn()]
        return columns

    def start(self) -> None:
        if not self.live:
            return
        self._bar = RichProgress(
            *self.columns(), console=self._console or Console(stderr=True),
            refresh_per_second=4, transient=False)
        self._task = self._bar.add_task("crawl", total=self._total, rate=0.0, left="?",
                                        errors=0)
        self._bar.start()
        self._log_above_the_bar()
        with contextlib.suppress(RuntimeError):  # no loop: the caller updates by hand
            self._refresher = asyncio.get_running_loop().create_task(
                self._refresh(), name="progress")

    async def _refresh(self) -> None:
        while True:
            self.update()
            await asyncio.sleep(REFRESH_S)

    def update(self) -> None:
        if self._bar is not None:
            counters = self._stats.counters
            elapsed = self._stats.elapsed_s() or 1.0
            self._bar.update(self._task, completed=counters["pages"],
                             rate=counters["pages"] / elapsed, errors=counters["errors"])

    def queue(self, left: int) -> None:
        """The frontier's size, between two stats snapshots."""
        if self._bar is not None:
            self._bar.update(self._task, left=left)

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
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None
        if self._bar is not None:
            self.update()
            self._bar.stop()
            self._bar = None
        for handler, stream in self._handlers:
            handler.setStream(stream)
        self._handlers = []

    def _log_above_the_bar(self) -> None:
        """Point the log handlers that write to the real stderr at rich's stand-in for it,
        which prints each line above the bar instead of through it."""
        assert self._bar is not None
        proxy = sys.stderr  # rich's FileProxy while the bar is live
        real = self._bar.console.file
        if proxy is real:
            return
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is real:
                self._handlers.append((handler, handler.setStream(proxy)))

    def summary(self, data: dict[str, Any], run_dir: Path) -> None:
        if self._quiet:
            return
        statuses = ", ".join(f"{k}: {v}" for k, v in data["status_counts"].items()) or "none"
        print(f"{data['stop_reason']}: {data['pages']} pages, {data['errors']} errors, "
              f"{data['pages_per_s']} pages/s in {data['duration_s']:.1f} s; "
              f"statuses {statuses}; {data['frontier_left']} left in the frontier\n"
              f"output: {run_dir}", file=sys.stderr)
