"""Step 3: which leased URL starts next. URLs leased from the frontier wait in per-host
buffers; `ready()` hands out those whose host slot (`politeness`) admits one more now, within
the global limit. It spawns nothing: the engine starts what it is given.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from .frontier import Frontier
from .models import Request
from .politeness import HostSlot
from .urls import host_of

DRY_LEASE_S = 0.05  # after an empty lease, ask again this soon only if something changed
MAX_WAKE_S = 0.5  # the longest the engine sleeps with URLs buffered


class Scheduler:
    """The lease buffer: `fill` from the frontier, `ready` to start, `fetched` when a request
    is over (its host may take another while the page is parsed), `drain` on a stop."""

    def __init__(self, frontier: Frontier, slot: Callable[[str], HostSlot], *,
                 concurrency: int, per_host: int) -> None:
        self._frontier = frontier
        self._slot = slot
        self._concurrency = concurrency
        self._per_host = per_host
        self._buffer: dict[str, deque[Request]] = {}
        self._claimed: set[str] = set()  # URLs handed out whose fetch is not over
        self._dry: tuple[int, frozenset[str], float] | None = None  # the last empty lease

    @property
    def buffered(self) -> int:
        return sum(len(q) for q in self._buffer.values())

    async def fill(self, commits: int) -> int | None:
        """Lease up to twice the concurrency; the number leased, or None when no lease was
        asked for (the buffer is full, or a lease now would surely come back empty)."""
        buffered = self.buffered
        skip = {h for h, q in self._buffer.items() if len(q) >= self._per_host * 2}
        if buffered >= self._concurrency * 2 or self._still_dry(commits, skip):
            return None
        leased = await self._frontier.lease(self._concurrency * 2 - buffered, skip)
        for request in leased:
            self._buffer.setdefault(host_of(request.url), deque()).append(request)
        self._dry = None if leased else (commits, frozenset(skip), time.monotonic())
        return len(leased)

    def _still_dry(self, commits: int, skip: set[str]) -> bool:
        """Whether a lease now would surely come back empty, as the last one did: nothing was
        committed since (no new links), no host left the skip list, and it was just now (a
        shared frontier gains URLs from other workers, and hosts become due)."""
        dry = self._dry
        return (dry is not None and dry[0] == commits and skip >= dry[1]
                and time.monotonic() - dry[2] < DRY_LEASE_S)

    def ready(self, room: int) -> list[Request]:
        """Up to `room` buffered requests whose host slot admits them now, each claimed on
        its slot until `fetched`; a spaced host (delay, breaker) gives one per call."""
        out: list[Request] = []
        now = time.monotonic()
        for host in list(self._buffer):
            queue = self._buffer[host]
            slot = self._slot(host)
            while queue and len(out) < room and slot.may_start(now):
                request = queue.popleft()
                slot.claimed += 1
                self._claimed.add(request.url)
                out.append(request)
                if slot.spacing():
                    break
            if not queue:
                del self._buffer[host]
        return out

    def fetched(self, request: Request) -> None:
        """The request is over (answered, failed or cancelled); once per request."""
        if request.url in self._claimed:
            self._claimed.discard(request.url)
            self._slot(host_of(request.url)).claimed -= 1

    def next_wake(self) -> float:
        """Seconds until a buffered host may be ready, at least 10 ms, at most MAX_WAKE_S."""
        now = time.monotonic()
        times = [self._slot(h).ready_at() - now for h in self._buffer]
        return max(0.01, min([MAX_WAKE_S, *times]))

    def drain(self) -> list[str]:
        """Empty the buffer: the URLs to give back to the frontier."""
        urls = [r.url for q in self._buffer.values() for r in q]
        self._buffer.clear()
        return urls
