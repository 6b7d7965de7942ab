"""The `crawl` command: parse options, build the settings, run, map errors to exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import ConfigError, CrawlError
from .plugins import load_callable
from .pools import start_processes
from .seeds import read_seeds
from .settings import Settings, load

app = typer.Typer(add_completion=False, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]})
_M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h

log = logging.getLogger("crawler")

Opt = typer.Option


@app.command(no_args_is_help=True)
def crawl(
    seeds: Annotated[str, typer.Argument(metavar="SEEDS",
                                         help="File of seed URLs, one per line; - for stdin.")],
    config: Annotated[Path | None, Opt("--config", help="TOML settings file.")] = None,
    out: Annotated[str | None, Opt(help="Output root.")] = None,
    job: Annotated[str | None, Opt(help="Job name (default: the seeds file's stem).")] = None,
    max_pages: Annotated[int | None, Opt(help="Stop after N page records.")] = None,
    max_depth: Annotated[int | None, Opt(help="Follow links N hops from the seeds.")] = None,
    max_pages_per_host: Annotated[int | None, Opt(help="URLs admitted per host.")] = None,
    max_runtime: Annotated[str | None, Opt(help="Stop gracefully after this long (45m).")] = None,
    concurrency: Annotated[int | None, Opt(help="Requests in flight, all hosts.")] = None,
    per_host: Annotated[int | None, Opt(help="Requests in flight to one host.")] = None,
    delay: Annotated[float | None, Opt(help="Seconds between request starts per host.")] = None,
    timeout: Annotated[float | None, Opt(help="Seconds for one attempt.")] = None,
    retries: Annotated[int | None, Opt(help="Extra attempts on timeouts, 429 and 5xx.")] = None,
    throttle: Annotated[bool | None, Opt("--throttle/--no-throttle",
                                         help="Pace each host by its latency.")] = None,
    max_bytes: Annotated[int | None, Opt(help="Body limit after decompression.")] = None,
    scope: Annotated[str | None, Opt(help="host, domain or any.")] = None,
    allow: Annotated[list[str] | None, Opt(help="Regex a URL must match (repeatable).")] = None,
    deny: Annotated[list[str] | None, Opt(help="Regex a URL must not match (repeatable).")] = None,
    robots: Annotated[bool | None, Opt("--robots/--no-robots", help="Obey robots.txt.")] = None,
    user_agent: Annotated[str | None, Opt(help="User-Agent header.")] = None,
    recrawl_after: Annotated[str | None, Opt(help="Refetch pages older than this.")] = None,
    proxy: Annotated[str | None, Opt(help="Proxy for every request: http://… or socks5://….")
                     ] = None,
    cookies: Annotated[bool | None, Opt("--cookies/--no-cookies",
                                        help="Keep cookies for the invocation.")] = None,
    fresh: Annotated[bool | None, Opt("--fresh", help="Drop the job's state first.")] = None,
    frontier: Annotated[str | None, Opt(
        help="redis://host:port/db, or redis-cluster://host:port,..., to share.")] = None,
    worker: Annotated[str | None, Opt(help="This worker's name in a shared frontier.")] = None,
    workers: Annotated[int | None, Opt(help="Parse processes.")] = None,
    threads: Annotated[int | None, Opt(help="Threads for blocking clients.")] = None,
    warc: Annotated[bool | None, Opt("--warc", help="Also write WARC files.")] = None,
    extract: Annotated[str | None, Opt(help="Main content to content.jsonl: text or markdown.")
                       ] = None,
    progress: Annotated[bool | None, Opt("--progress/--no-progress",
                                         help="Live progress bar.")] = None,
    quiet: Annotated[int, Opt("--quiet", "-q", count=True, help="Quieter logging.")] = 0,
    verbose: Annotated[int, Opt("--verbose", "-v", count=True, help="More logging.")] = 0,
) -> None:
    """Crawl from the seed URLs; state and output go to OUT/JOB/."""
    given = {k: v for k, v in locals().items()
             if k not in ("seeds", "config", "quiet", "verbose") and v is not None}
    for key in ("allow", "deny"):
        if key in given and not given[key]:
            del given[key]
    if quiet or verbose:
        given["verbosity"] = max(-1, min(2, verbose - quiet))
    raise typer.Exit(run(seeds, config, given))


def run(seeds_source: str, config: Path | None, overrides: dict[str, Any]) -> int:
    """The whole invocation; returns the exit code of contract section 2."""
    verbosity = overrides.get("verbosity", 0)
    _setup_logging(verbosity)
    try:
        settings = load(config, overrides)
        _setup_logging(settings.verbosity)
        verbosity = settings.verbosity
        for spec in (*settings.extractors, *settings.sinks):
            _check_plugin(spec)
        seeds = read_seeds(seeds_source)
        name = settings.job or ("stdin" if seeds_source == "-" else Path(seeds_source).stem)
        if not re.fullmatch(r"[\w.\-]+", name) or name in (".", ".."):
            raise ConfigError(f"job: {name!r} is not a usable folder name "
                              "(letters, digits, '.', '-' and '_')")
        start_processes()
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(_crawl(settings, seeds, name))
    except CrawlError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if verbosity >= 1:
            log.exception("internal error")
        else:
            log.error("internal error: %s: %s\nThis is a bug in the crawler; run again with -v "
                      "for the traceback. State on disk is consistent: the same command "
                      "resumes.", type(exc).__name__, exc)
        return 1


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop (aiohttp's recommendation: measured in the README), else
    asyncio's own where uvloop is not installed (Windows has none)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _crawl(settings: Settings, seeds: list[str], job: str) -> int:
    from .runner import Runner

    return await Runner(settings, seeds, job).run()


def _check_plugin(spec: str) -> None:
    try:
        load_callable(spec)
    except Exception as exc:
        raise ConfigError(f"plugin {spec!r} cannot be loaded: {exc}") from None


def _setup_logging(verbosity: int) -> None:
    level = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}.get(
        verbosity, logging.DEBUG)
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                               "%Y-%m-%dT%H:%M:%S"))
        root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("crawler").setLevel(level)


def _few_malloc_arenas() -> None:
    """glibc gives each thread that allocates its own malloc arena (up to 8 per core), and the
    thread pool's JSON and SQLite work leaves each of them holding memory: two arenas keep the
    crawl's resident size down (the MALLOC_ARENA_MAX advice of gunicorn and others)."""
    if sys.platform.startswith("linux") and "MALLOC_ARENA_MAX" not in os.environ:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, 2)


def main() -> None:
    _few_malloc_arenas()  # before any thread starts
    app()
