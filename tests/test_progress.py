"""Progress: the rich bar on a terminal (pages, queue, pages/s, errors, ETA with a page limit),
one log line per stats interval elsewhere, and never terminal codes in a log file."""

from __future__ import annotations

import asyncio
import fcntl
import io
import os
import re
import struct
import termios
from pathlib import Path

from rich.console import Console

from crawler.progress import Progress
from crawler.settings import load
from crawler.stats import Stats
from tests.conftest import CRAWL, Site, config_file, crawl_env, run_crawl, seeds_file

PROGRESS_LINE = re.compile(r"INFO \d+ pages, \d+ errors, [\d.]+ pages/s, \d+ queued")


def _snapshot(stats: Stats, left: int) -> dict[str, object]:
    return stats.snapshot(frontier_left=left)


def _render(max_pages: int) -> str:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200, color_system=None)
    stats = Stats()
    progress = Progress(load(None, {"progress": True, "max_pages": max_pages}), stats, console)
    progress.start()  # outside a loop: updated by tick() alone
    for status in (200, 200, 404):
        stats.page(status, 100)
    stats.error("timeout")
    progress.tick(_snapshot(stats, 7))
    progress.stop()
    return out.getvalue()


def _frames(screen: str) -> list[str]:
    """The bar's successive states, terminal codes removed."""
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    return [ln for ln in re.split(r"[\r\n]+", text) if ln.startswith("crawl ")]


def test_bar_shows_pages_rate_queue_errors_and_eta_with_a_page_limit() -> None:
    last = _frames(_render(10))[-1]
    assert re.search(r"3/10 pages [\d.]+ pages/s queue 7 errors 1 0:00:\d\d ETA \S+$", last)


def test_bar_without_a_page_limit_counts_pages_and_has_no_eta() -> None:
    last = _frames(_render(0))[-1]
    assert re.search(r" 3 pages [\d.]+ pages/s queue 7 errors 1 0:00:\d\d$", last), last


async def crawl_on_a_terminal(*args: str | Path) -> str:
    """Run `crawl ARGS` with a 160-column pseudo-terminal as its output; what it wrote."""
    controller, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 160, 0, 0))
    try:
        proc = await asyncio.create_subprocess_exec(
            str(CRAWL), *map(str, args), stdin=asyncio.subprocess.DEVNULL, stdout=terminal,
            stderr=terminal, env=crawl_env(TERM="xterm"))
    finally:
        os.close(terminal)
    screen = await asyncio.wait_for(asyncio.to_thread(_read_all, controller), 60)
    assert await proc.wait() == 0, screen
    return screen


def _read_all(fd: int) -> str:
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError:  # EIO: every writer of the terminal has closed it
        pass
    finally:
        os.close(fd)
    return b"".join(chunks).decode(errors="replace")


async def test_on_a_terminal_the_crawl_draws_the_bar(site: Site, tmp_path: Path) -> None:
    seeds = seeds_file(tmp_path, site.url("/site/"))
    # a failing sink logs a warning per page while the bar is up
    config = config_file(tmp_path, 'sinks = ["tests.e2e_plugins:failing_sink"]\n')
    screen = await crawl_on_a_terminal(seeds, "--out", tmp_path / "out", "--max-pages", "5",
                                       "--delay", "0.2", "--config", config)

    assert "\x1b[" in screen, "no terminal control codes: the bar was not drawn"
    frames = _frames(screen)
    assert len(frames) >= 2, screen  # redrawn while the pages came in
    assert re.search(r" 5/5 pages [\d.]+ pages/s queue \S+ errors 0 \S+ ETA", frames[-1]), \
        frames
    assert not PROGRESS_LINE.search(screen), "log lines as well as the bar"
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    warnings = [ln for ln in re.split(r"[\r\n]+", text) if "e2e sink failure" in ln]
    assert len(warnings) == 5, text
    for line in warnings:  # each on a line of its own, above the bar, not through it
        assert re.match(r"^\S+ WARNING sink ", line) and "pages/s" not in line, line


async def test_with_no_progress_a_terminal_gets_log_lines(site: Site, tmp_path: Path) -> None:
    config = config_file(tmp_path, "stats_interval = 0.2\n")
    seeds = seeds_file(tmp_path, site.url("/site/"))
    screen = await crawl_on_a_terminal(seeds, "--out", tmp_path / "out", "--no-progress",
                                       "--config", config, "--delay", "0.1")
    assert PROGRESS_LINE.search(screen), screen
    assert _frames(screen) == [] and "\x1b[" not in screen, screen


async def test_elsewhere_one_log_line_per_stats_interval(site: Site, tmp_path: Path) -> None:
    interval = 0.5
    config = config_file(tmp_path, f"stats_interval = {interval}\n")
    seeds = seeds_file(tmp_path, site.url("/site/"))
    result = await run_crawl(seeds, "--out", tmp_path / "out", "--config", config,
                             "--delay", "0.2", "--timeout", "5")
    assert result.returncode == 0, str(result)

    assert "\r" not in result.stderr and "\x1b[" not in result.stderr, result.stderr
    lines = PROGRESS_LINE.findall(result.stderr)
    # nine pages 0.2 s apart span several intervals: a line per interval, not per page
    assert 1 <= len(lines) <= result.seconds / interval + 1, result.stderr
