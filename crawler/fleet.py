"""Beside steps 2 to 5: what the workers of a shared frontier share besides the queue.

A worker's `HostSlot` still spaces and caps its own requests; its fleet variant
(`politeness.SharedSlot`) starts them only within the worker's window on the host, which one
worker of the fleet holds at a time and which hands the host's next start time on, so
`--per-host`, `--delay`, `Crawl-delay`, `Retry-After` and the host's pace (`politeness`'
rule, read from and told to the fleet) hold for the fleet, not per process, at two Redis
scripts a window. robots.txt is downloaded by one
worker per host and run, the others read it from the fleet (and only that worker reads the
sitemaps it names). The runner settles dead workers' files from `orphans` and sums the
others' totals into stats.json. `Fleet` is that state; the Redis frontier keeps it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from .errors import FetchError
from .fetch import Download
from .frontier import Orphan
from .politeness import HostGate
from .settings import Settings

ROBOTS_WAIT_S = 0.1  # how often a worker looks for robots.txt another one is fetching


class Fleet(HostGate, Protocol):
    """The fleet's state beside the frontier: host windows (`HostGate`), robots.txt, workers."""

    async def robots(self, origin: str) -> tuple[int, bytes] | None:
        """robots.txt of `origin` as some worker fetched it in this run, if one has."""

    async def robots_lock(self, origin: str, seconds: float) -> bool:
        """Whether this worker is the one to download it (for `seconds` at most)."""

    async def robots_put(self, origin: str, status: int, body: bytes) -> None:
        """Share what this worker downloaded."""

    async def others(self) -> list[dict[str, Any]]:
        """The committed totals of the run's other workers."""

    async def orphans(self) -> list[Orphan]:
        """Journals of dead workers of this machine to settle onto their files, each
        claimed until `settled`."""

    async def settled(self, orphan: Orphan) -> None:
        """The orphan's files now end with its last committed batch."""


class SharedRobots:
    """robots.txt once for the fleet (a `fetch.RobotsVia`): the worker that takes the lock
    downloads it and shares what it got (an unreachable one as status 0: disallow all,
    RFC 9309); the others wait for it."""

    def __init__(self, fleet: Fleet, settings: Settings) -> None:
        self._fleet = fleet
        self._hold = settings.timeout * (settings.retries + 1) * 6 + settings.lease_timeout
        self._downloaded: set[str] = set()  # origins whose robots.txt this worker fetched

    async def __call__(self, url: str, download: Download) -> tuple[int, bytes]:
        origin = url.removesuffix("/robots.txt")
        while True:
            known = await self._fleet.robots(origin)
            if known is not None:
                return known
            if await self._fleet.robots_lock(origin, self._hold):
                answer: tuple[int, bytes]
                try:
                    answer = await download(url)
                except FetchError:
                    answer = (0, b"")
                await self._fleet.robots_put(origin, *answer)
                self._downloaded.add(origin)
                return answer
            await asyncio.sleep(ROBOTS_WAIT_S)

    def mine(self, origin: str) -> bool:
        """Whether this worker downloaded the origin's robots.txt (and so reads its sitemaps)."""
        return origin in self._downloaded
