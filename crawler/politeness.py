"""Step 4: the one per-host gate. Every request to a host, page, retry, robots.txt or
sitemap, starts through that host's `HostSlot`; the scheduler asks the same slot whether a
leased URL may be handed out. A fleet's slots start requests only within the worker's window
on the host (`HostGate`, kept in Redis by the shared frontier).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any, Protocol

from .settings import Settings

log = logging.getLogger(__name__)

BREAKER_THRESHOLD = 3  # consecutive failed attempts on one host that open its breaker


class HostSlot:
    """Politeness for one host (Scrapy's downloader slot): concurrency, spacing, back-off.

    A small circuit breaker: after BREAKER_THRESHOLD failed attempts in a row (5xx, timeout,
    connection error), starts to this host are spaced by a pause that doubles with each
    further failure, from `pause` up to `max_pause`; one answer that is not a failure closes
    it. Other hosts have slots of their own and keep their pace.

    `claimed` counts the URLs the scheduler handed out for this host whose fetch is not over;
    `may_start` is the scheduler's question, `async with` the fetcher's.
    """

    def __init__(self, concurrency: int, delay: float, pause: float = 0.5,
                 max_pause: float = 60.0) -> None:
        self.concurrency = concurrency
        self.delay = delay
        self.active = 0
        self.claimed = 0
        self._semaphore = asyncio.Semaphore(concurrency)
        self._next_start = 0.0
        self._pause = pause
        self._max_pause = max_pause
        self.failures = 0  # consecutive failed attempts

    def failed(self) -> None:
        self.failures += 1
        if self.failures >= BREAKER_THRESHOLD:
            self.defer(self.spacing())

    def succeeded(self) -> None:
        self.failures = 0

    def spacing(self) -> float:
        """Least time between two request starts: the delay, or the breaker's pause."""
        if self.failures < BREAKER_THRESHOLD:
            return self.delay
        pause = self._pause * 2.0 ** min(self.failures - BREAKER_THRESHOLD, 30)
        return max(self.delay, min(pause, self._max_pause))

    @property
    def full(self) -> bool:
        return self.active >= self.concurrency

    def ready_at(self) -> float:
        return self._next_start

    def may_start(self, now: float) -> bool:
        """Whether one more leased URL of this host may be handed out at `now`."""
        return self.claimed < self.concurrency and self._next_start <= now

    def defer(self, seconds: float) -> None:
        """No request to this host starts within `seconds` (Retry-After, back-off)."""
        self._next_start = max(self._next_start, time.monotonic() + seconds)

    async def __aenter__(self) -> HostSlot:
        await self._semaphore.acquire()
        self.active += 1
        try:
            while True:  # defer() may push the start further while we sleep
                now = time.monotonic()
                wait = self._next_start - now
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            self._next_start = now + self.spacing()
        except BaseException:
            self.active -= 1
            self._semaphore.release()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.active -= 1
        self._semaphore.release()


WINDOW_S = 1.0  # how long a worker of a fleet holds a host's window before giving it back
WINDOW_MARGIN_S = 0.05  # no start this close to the window's end (Redis's clock is the judge)


class HostGate(Protocol):
    """The fleet's per-host windows: one worker at a time holds a host's window and paces its
    requests there itself; the next start time passes from holder to holder."""

    worker: str

    async def take(self, host: str, window_s: float, next_in_s: float) -> float:
        """Hold the host's window for `window_s` and return 0, or the seconds to wait before
        asking again; `next_in_s`: when this worker's next start may be, seen from now."""

    async def give(self, host: str, next_in_s: float) -> None:
        """Give the window back; the next holder starts no earlier than `next_in_s` from now."""

    async def defer(self, host: str, seconds: float) -> None:
        """No worker starts a request to `host` within `seconds`."""


class SharedSlot(HostSlot):
    """A `HostSlot` that starts requests only within this worker's window on the host.

    The window is taken when a request finds none held, given back once it has ended and
    this worker's requests of it are over (they may outlive it: nobody else starts until they
    are), so `per_host` and the spacing hold for the fleet at two Redis scripts a window."""

    def __init__(self, host: str, concurrency: int, delay: float, pause: float,
                 max_pause: float, gate: HostGate, owner: Politeness) -> None:
        super().__init__(concurrency, delay, pause, max_pause)
        self.host = host
        self._gate = gate
        self._owner = owner
        self._until = 0.0  # monotonic end of this worker's window; no start at or after it
        self._held = False  # whether the gate knows this worker as the holder
        self._flying = 0  # requests started in this worker's windows and not over
        self._lock = asyncio.Lock()  # one take or give at a time, in order
        self._drained = asyncio.Event()  # set while none of them is in flight
        self._drained.set()

    def _next_in(self) -> float:
        return max(0.0, self._next_start - time.monotonic())

    async def __aenter__(self) -> HostSlot:
        await super().__aenter__()
        try:
            while time.monotonic() >= self._until:
                async with self._lock:
                    if time.monotonic() < self._until:
                        break
                    await self._drained.wait()  # the last window's requests end first
                    wait = await self._gate.take(self.host, WINDOW_S, self._next_in())
                    if wait <= 0:
                        self._held = True
                        self._until = time.monotonic() + WINDOW_S - WINDOW_MARGIN_S
                        asyncio.get_running_loop().call_later(WINDOW_S, self._window_over)
                        break
                await asyncio.sleep(wait)
        except BaseException:
            await super().__aexit__()
            raise
        # spaced from when it really starts, which waiting for the window may have put off
        self._next_start = max(self._next_start, time.monotonic() + self.spacing())
        self._flying += 1
        self._drained.clear()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._flying -= 1
        if not self._flying:
            self._drained.set()
            self._window_over()
        await super().__aexit__(*exc)

    def _window_over(self) -> None:
        if self._held and not self._flying and time.monotonic() >= self._until:
            self._owner.tell(self._give())

    async def _give(self) -> None:
        async with self._lock:
            if self._held and not self._flying and time.monotonic() >= self._until:
                self._held = False
                await self._gate.give(self.host, self._next_in())

    async def close(self) -> None:
        """Give a window still held back: a worker that stops (--max-pages, SIGTERM) does
        not keep the others off the host until the window expires."""
        async with self._lock:
            if self._held:
                self._held = False
                self._until = 0.0
                await self._gate.give(self.host, self._next_in())

    def defer(self, seconds: float) -> None:
        super().defer(seconds)
        self._owner.tell(self._gate.defer(self.host, seconds))


class Politeness:
    """The run's host slots, made in one place; with a `gate`, every slot is the fleet's."""

    def __init__(self, settings: Settings, gate: HostGate | None = None) -> None:
        self._s = settings
        self._gate = gate
        self._slots: dict[str, HostSlot] = {}
        self._telling: set[asyncio.Task[None]] = set()  # fleet deferrals on their way

    def slot(self, host: str) -> HostSlot:
        slot = self._slots.get(host)
        if slot is None:
            s = self._s
            if self._gate is None:
                slot = HostSlot(s.per_host, s.delay, s.backoff, s.max_retry_after)
            else:
                slot = SharedSlot(host, s.per_host, s.delay, s.backoff, s.max_retry_after,
                                  self._gate, self)
            self._slots[host] = slot
        return slot

    def tell(self, call: Coroutine[Any, Any, None]) -> None:
        """Send a deferral to the fleet without holding up the request that learnt it; the
        task is kept and awaited by `aclose`."""
        task = asyncio.get_running_loop().create_task(call)
        self._telling.add(task)
        task.add_done_callback(self._told)

    def _told(self, task: asyncio.Task[None]) -> None:
        self._telling.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not share a host's back-off with the fleet: %s", task.exception())

    async def aclose(self) -> None:
        """Wait for the deferrals still on their way to the fleet; give the fleet's windows
        this worker holds back."""
        while self._telling:
            await asyncio.gather(*self._telling, return_exceptions=True)
        shared = [slot.close() for slot in self._slots.values() if isinstance(slot, SharedSlot)]
        for result in await asyncio.gather(*shared, return_exceptions=True):
            if isinstance(result, Exception):
                log.warning("could not give a host's window back to the fleet: %s", result)
