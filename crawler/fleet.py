"""Step 3b: politeness and robots.txt shared by every worker of a Redis frontier.

A worker's local `HostSlot` still spaces and caps its own requests; before a request starts
it also takes one of the host's `per_host` places in Redis and the host's next start time
there, so `--per-host`, `--delay`, `Crawl-delay` and `Retry-After` hold for the fleet, not
per process. robots.txt is downloaded by one worker per host and run, the others read it
from Redis (and only that worker reads the sitemaps it names).
"""

from __future__ import annotations

import asyncio
import itertools
import os

import aiohttp

from .errors import FetchError
from .fetch import AddressGuard, Fetcher, HostSlot
from .frontier.redis import RedisFrontier
from .robots import Robots
from .settings import Settings
from .stats import Stats
from .urls import LinkPolicy

ROBOTS_WAIT_S = 0.1  # how often a worker looks for robots.txt another one is fetching


class SharedSlot(HostSlot):
    """A `HostSlot` that also holds a place in the fleet's slot for the host in Redis."""

    _ids = itertools.count(1)

    def __init__(self, host: str, concurrency: int, delay: float,
                 frontier: RedisFrontier) -> None:
        super().__init__(concurrency, delay)
        self.host = host
        self._frontier = frontier
        self._held: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> HostSlot:
        await super().__aenter__()
        token = f"{self._frontier.worker}:{os.getpid()}:{next(self._ids)}"
        try:
            while True:  # the fleet's next start time, or a free place, is a poll away
                wait = await self._frontier.slot(self.host, self.concurrency, self.delay, token)
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
        except BaseException:
            await super().__aexit__()
            raise
        self._held.append(token)
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._frontier.unslot(self.host, self._held.pop())
        finally:
            await super().__aexit__(*exc)

    def defer(self, seconds: float) -> None:
        super().defer(seconds)
        task = asyncio.get_running_loop().create_task(self._frontier.defer(self.host, seconds))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class SharedFetcher(Fetcher):
    """A `Fetcher` whose host slots and robots.txt are the fleet's."""

    def __init__(self, session: aiohttp.ClientSession, settings: Settings, policy: LinkPolicy,
                 guard: AddressGuard, stats: Stats, frontier: RedisFrontier) -> None:
        super().__init__(session, settings, policy, guard, stats)
        self._frontier = frontier
        self.robots = Robots(self._shared_robots, settings.user_agent, obey=settings.robots)
        self.downloaded: set[str] = set()  # origins whose robots.txt this worker fetched

    def slot(self, host: str) -> HostSlot:
        slot = self._slots.get(host)
        if slot is None:
            slot = self._slots[host] = SharedSlot(host, self._s.per_host, self._s.delay,
                                                  self._frontier)
        return slot

    async def _shared_robots(self, url: str) -> tuple[int, bytes]:
        """robots.txt once for the fleet: the worker that takes the lock downloads it and
        shares what it got (an unreachable one as status 0: disallow all, RFC 9309)."""
        origin = url.removesuffix("/robots.txt")
        hold = self._s.timeout * (self._s.retries + 1) * 6 + self._s.lease_timeout
        while True:
            known = await self._frontier.robots(origin)
            if known is not None:
                return known
            if await self._frontier.robots_lock(origin, hold):
                answer: tuple[int, bytes]
                try:
                    answer = await self._download_robots(url)
                except FetchError:
                    answer = (0, b"")
                await self._frontier.robots_put(origin, *answer)
                self.downloaded.add(origin)
                return answer
            await asyncio.sleep(ROBOTS_WAIT_S)
