"""What the fleet tests share: kill one worker with SIGKILL once it has pages, wait for the
others to finish by themselves, and judge the site's request log against the dead worker's
records (nothing recorded is fetched again)."""

from __future__ import annotations

import contextlib
import signal
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import Crawl, assert_no_traceback, complete_records, reap, wait_until


def recorded(runs: Path, worker: str) -> set[str]:
    """URLs with a page or error record in the worker's part files (complete lines)."""
    return {str(r["url"]) for kind in ("pages", "errors")
            for r in complete_records(runs.glob(f"*/{kind}-{worker}.jsonl"))}


@dataclass
class Killed:
    """The dead worker's records at its death, and the request log's length then."""

    recorded: set[str] = field(default_factory=set)
    mark: int = 0
    survivors: dict[str, str] = field(default_factory=dict)  # name -> stderr
    victim: str = ""


async def kill_one_and_finish(crawls: Mapping[str, Crawl], victim: str | None, runs: Path,
                              fetched: Callable[[], list[str]], *, pages: int = 3,
                              timeout: float = 180) -> Killed:  # noqa: ASYNC109
    """SIGKILL `victim` (None: the first worker to get there) once it has `pages` page
    records; every other worker must then exit 0 by itself with no traceback. Every crawl is
    killed on the way out, failed or not."""
    orphans: list[int] = []
    killed = Killed()

    def ready() -> bool:
        for name in [victim] if victim else list(crawls):
            if len(complete_records(runs.glob(f"*/pages-{name}.jsonl"))) >= pages:
                killed.victim = name
                return True
        return False

    try:
        await wait_until(ready, 60, f"{victim or 'a worker'}'s first pages")
        victim = killed.victim
        orphans = crawls[victim].descendants()
        crawls[victim].signal(signal.SIGKILL)
        assert (await crawls[victim].wait(30)).returncode == -signal.SIGKILL
        killed.recorded = recorded(runs, victim)
        killed.mark = len(fetched())
        await finish(crawls, skip=victim, timeout=timeout, into=killed.survivors)
    finally:
        reap(orphans)
        stop(crawls.values())
    return killed


async def finish(crawls: Mapping[str, Crawl], *, skip: str = "", timeout: float = 180,  # noqa: ASYNC109
                 into: dict[str, str] | None = None) -> None:
    """Every crawl but `skip` exits 0 by itself, with no traceback."""
    for name, crawl in crawls.items():
        if name == skip:
            continue
        result = await crawl.wait(timeout)
        assert result.returncode == 0, f"{name}: {result}"
        assert_no_traceback(result)
        if into is not None:
            into[name] = result.stderr


def stop(crawls: Iterable[Crawl]) -> None:
    for crawl in crawls:
        with contextlib.suppress(ProcessLookupError):
            crawl.proc.kill()


def assert_not_fetched_again(fetched: list[str], killed: Killed) -> set[str]:
    """No URL the dead worker had recorded is fetched again, and only URLs fetched before its
    death are fetched twice (its in-flight ones). The URLs fetched twice."""
    counts = Counter(fetched)
    again = {url for url, n in counts.items() if n > 1}
    assert not again & killed.recorded, "a URL with a record was fetched again"
    assert again <= set(fetched[:killed.mark]), "only the dead worker's in-flight URLs twice"
    return again
