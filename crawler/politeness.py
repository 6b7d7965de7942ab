"""Step 4: the one per-host gate. Every request to a host, page, retry, robots.txt or
sitemap, starts through that host's `HostSlot`; the scheduler asks the same slot whether a
leased URL may be handed out. A fleet's slots start requests only within the worker's window
on the host (`HostGate`, kept in Redis by the shared frontier), and share the host's pace.

The one rule of a host's pace (the least time between two request starts to it):

    pace = max(delay, min(p, max_retry_after))

where `delay` is the setting (or the host's robots.txt Crawl-delay, if longer) and `p` moves
with what the host tells us:

1. A host-level signal doubles `p` (from at least `backoff`): an answer 429, 502, 503 or
   504 from a URL that has not doubled it already (so a run of them across different URLs
   slows the host, one URL retried does not keep doubling it), a connection refused or not
   made within `connect_timeout`. The next start moves out to the last start plus the new
   pace, so the doubling holds at once.
2. A healthy answer (any status below 500 but 429) brings `p` back: half-way towards the
   target when it is above it, to the target at once when below. The target is `delay`;
   with `throttle`, the host's recent latency (a moving average of its answers' times)
   divided by `throttle_target`, so that about `throttle_target` requests are in flight.
3. A URL that fails on its own (a 500, a reset, a read timeout, a body over `max_bytes`)
   leaves `p` alone: it costs that URL its retries, each after its own back-off, spent
   outside the host's places (`rest`), so the host's other URLs keep their pace.

A `Retry-After` (contract section 4) pushes the host's next start out by its value, within
`max_retry_after`, on top of the rule. The per-host concurrency (`per_host`) holds as well.
Without `throttle` only the latency part is off: host-level signals slow a host all the same.
In a fleet, `p` is the fleet's: a worker tells it when it moves and reads it back before a
start; the worker holding the host's window spaces its starts by the rule, and hands the
next start time on to the next holder (`SharedSlot`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any, Protocol

from .settings import Settings

log = logging.getLogger(__name__)

HOST_STATUSES = frozenset({429, 502, 503, 504})  # answers about the host, not the URL
LATENCY_WEIGHT = 0.3  # weight of the newest answer in the moving average of latency
STRUCK_MEMORY = 64  # URLs remembered as having doubled the pace already
SHARE_CHANGE = 0.1  # a fleet worker tells the fleet a pace that moved by this fraction
PACE_READ_S = 1.0  # how often a fleet worker reads a host's pace from the fleet


class HostSlot:
    """Politeness for one host (Scrapy's downloader slot): concurrency and the pace of the
    module docstring's rule.

    `claimed` counts the URLs the scheduler handed out for this host whose fetch is not over,
    `resting` those of them waiting between two of their own retries; `may_start` is the
    scheduler's question, `async with` the fetcher's. `answered`, `unreachable` and `rest`
    are what the fetcher tells the slot.
    """

    def __init__(self, concurrency: int, delay: float, *, backoff: float = 0.5,
                 cap: float = 60.0, throttle: bool = False, target: float = 1.0) -> None:
        self.concurrency = concurrency
        self.delay = delay  # the floor: the setting, or a longer Crawl-delay
        self.active = 0
        self.claimed = 0
        self.resting = 0
        self.latency: float | None = None  # moving average of answer times, with throttle
        self._semaphore = asyncio.Semaphore(concurrency)
        self._next_start = 0.0
        self._last_start: float | None = None
        self._p = delay
        self._backoff = backoff
        self._cap = cap
        self._throttle = throttle
        self._target = target
        self._struck: deque[str] = deque(maxlen=STRUCK_MEMORY)

    # -- what the fetcher tells the slot ------------------------------------------------

    def answered(self, url: str, status: int, latency_s: float) -> None:
        """An HTTP answer from the host, `latency_s` after the request started."""
        if status in HOST_STATUSES:
            if url not in self._struck:
                self._struck.append(url)
                self._slow()
            return
        if status >= 500:
            return  # the URL's own failure: its retries pay for it
        if self._throttle:
            old = self.latency
            self.latency = latency_s if old is None else (
                old + LATENCY_WEIGHT * (latency_s - old))
        target = self._aim()
        self._set(target if self._p <= target else (self._p + target) / 2)

    def unreachable(self) -> None:
        """The host refused a connection, did not answer one in time or did not resolve."""
        self._slow()

    async def rest(self, seconds: float) -> None:
        """A URL's own back-off before its retry, holding none of the host's places (the
        scheduler may hand out another URL meanwhile; the semaphore still caps what is in
        flight when the rested one comes back)."""
        self.resting += 1
        try:
            await asyncio.sleep(seconds)
        finally:
            self.resting -= 1

    def defer(self, seconds: float) -> None:
        """No request to this host starts within `seconds` (Retry-After)."""
        self._next_start = max(self._next_start, time.monotonic() + seconds)

    # -- the rule ---------------------------------------------------------------------------

    def spacing(self) -> float:
        """The host's pace: least time between two request starts."""
        return max(self.delay, min(self._p, self._cap))

    def _aim(self) -> float:
        if self._throttle and self.latency is not None:
            return max(self.delay, min(self.latency / self._target, self._cap))
        return self.delay

    def _slow(self) -> None:
        self._set(min(self._cap, max(2 * self._p, self._backoff)))
        if self._last_start is not None:
            self._next_start = max(self._next_start, self._last_start + self.spacing())

    def _set(self, p: float) -> None:
        self._p = p

    # -- the gate ---------------------------------------------------------------------------

    @property
    def full(self) -> bool:
        return self.active >= self.concurrency

    def ready_at(self) -> float:
        return self._next_start

    def may_start(self, now: float) -> bool:
        """Whether one more leased URL of this host may be handed out at `now`."""
        return self.claimed - self.resting < self.concurrency and self._next_start <= now

    async def __aenter__(self) -> HostSlot:
        await self._semaphore.acquire()
        self.active += 1
        try:
            now = await self._turn()
            self._last_start = now
            self._next_start = now + self.spacing()
        except BaseException:
            self.active -= 1
            self._semaphore.release()
            raise
        return self

    async def _turn(self) -> float:
        """Wait until this request may start; the instant it does."""
        while True:  # defer() may push the start further while we sleep
            now = time.monotonic()
            wait = self._next_start - now
            if wait <= 0:
                return now
            await asyncio.sleep(wait)

    async def __aexit__(self, *exc: object) -> None:
        self.active -= 1
        self._semaphore.release()


WINDOW_S = 1.0  # how long a worker of a fleet holds a host's window before giving it back
WINDOW_MARGIN_S = 0.05  # no start this close to the window's end (Redis's clock is the judge)


class HostGate(Protocol):
    """The fleet's per-host state: the host's window, which one worker at a time holds and
    paces its requests in itself (the next start time passes from holder to holder), and the
    host's pace, every worker's."""

    worker: str

    async def take(self, host: str, window_s: float, next_in_s: float) -> float:
        """Hold the host's window for `window_s` and return 0, or the seconds to wait before
        asking again; `next_in_s`: when this worker's next start may be, seen from now."""

    async def give(self, host: str, next_in_s: float) -> None:
        """Give the window back; the next holder starts no earlier than `next_in_s` from now."""

    async def defer(self, host: str, seconds: float) -> None:
        """No worker starts a request to `host` within `seconds`."""

    async def pace(self, host: str, seconds: float | None = None) -> float | None:
        """The host's pace as the fleet last learnt it (None: not yet); with `seconds`,
        this worker's new pace, set first."""


class SharedSlot(HostSlot):
    """A `HostSlot` that starts requests only within this worker's window on the host, and
    shares the host's pace with the fleet.

    The window is taken when a request finds none held, given back once it has ended and
    this worker's requests of it are over (they may outlive it: nobody else starts until they
    are), so `per_host` and the spacing hold for the fleet at two Redis scripts a window. A
    worker that learns a new pace tells the fleet, and every worker reads it back at most
    PACE_READ_S old (the last change wins)."""

    def __init__(self, host: str, concurrency: int, delay: float, gate: HostGate,
                 owner: Politeness, **rule: Any) -> None:
        super().__init__(concurrency, delay, **rule)
        self.host = host
        self._gate = gate
        self._owner = owner
        self._until = 0.0  # monotonic end of this worker's window; no start at or after it
        self._held = False  # whether the gate knows this worker as the holder
        self._flying = 0  # requests started in this worker's windows and not over
        self._lock = asyncio.Lock()  # one take or give at a time, in order
        self._drained = asyncio.Event()  # set while none of them is in flight
        self._drained.set()
        self._told = delay
        self._read_at = 0.0

    def _next_in(self) -> float:
        return max(0.0, self._next_start - time.monotonic())

    async def _read_pace(self) -> None:
        self._read_at = time.monotonic()
        shared = await self._gate.pace(self.host)
        if shared is not None:
            self._p = self._told = shared

    async def __aenter__(self) -> HostSlot:
        if time.monotonic() - self._read_at >= PACE_READ_S:
            await self._read_pace()
        await super().__aenter__()
        self._flying += 1
        self._drained.clear()
        return self

    async def _turn(self) -> float:
        """The host's spacing, within this worker's window: a request that waited for the
        window is spaced again from the requests of this worker that started meanwhile, and
        one that waited for the spacing past the window's end takes the window again."""
        while True:
            await self._window()
            now = time.monotonic()
            wait = self._next_start - now
            if wait <= 0 and now < self._until:
                return now
            if wait > 0:
                await asyncio.sleep(wait)

    async def _window(self) -> None:
        """Hold this worker's window on the host (take it from the fleet when it is over)."""
        while time.monotonic() >= self._until:
            async with self._lock:
                if time.monotonic() < self._until:
                    return
                await self._drained.wait()  # the last window's requests end first
                wait = await self._gate.take(self.host, WINDOW_S, self._next_in())
                if wait <= 0:
                    self._held = True
                    self._until = time.monotonic() + WINDOW_S - WINDOW_MARGIN_S
                    asyncio.get_running_loop().call_later(WINDOW_S, self._window_over)
                    await self._read_pace()  # what the last holder learnt, before starting
                    return
            await asyncio.sleep(wait)

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

    def _slow(self) -> None:
        super()._slow()
        self._owner.tell(self._gate.defer(self.host, self.spacing()))

    def _set(self, p: float) -> None:
        super()._set(p)
        if abs(p - self._told) > SHARE_CHANGE * max(self._told, 0.01):
            self._told = p
            self._owner.tell(self._share())

    async def _share(self) -> None:
        # the pace told last, read when the write goes out: writes on the pool's different
        # connections may reach Redis out of order, and the last one must be the newest pace
        await self._gate.pace(self.host, self._told)


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
            rule: dict[str, Any] = {"backoff": s.backoff, "cap": s.max_retry_after,
                                    "throttle": s.throttle, "target": s.throttle_target}
            if self._gate is None:
                slot = HostSlot(s.per_host, s.delay, **rule)
            else:
                slot = SharedSlot(host, s.per_host, s.delay, self._gate, self, **rule)
            self._slots[host] = slot
        return slot

    def delays(self) -> dict[str, float]:
        """Every host's pace now, in seconds."""
        return {host: slot.spacing() for host, slot in self._slots.items()}

    def tell(self, call: Coroutine[Any, Any, None]) -> None:
        """Send a deferral or a pace to the fleet without holding up the request that
        learnt it; the task is kept and awaited by `aclose`."""
        task = asyncio.get_running_loop().create_task(call)
        self._telling.add(task)
        task.add_done_callback(self._told)

    def _told(self, task: asyncio.Task[None]) -> None:
        self._telling.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not share a host's pace with the fleet: %s", task.exception())

    async def aclose(self) -> None:
        """Wait for the deferrals and paces still on their way to the fleet; give the
        fleet's windows this worker holds back."""
        while self._telling:
            await asyncio.gather(*self._telling, return_exceptions=True)
        shared = [slot.close() for slot in self._slots.values() if isinstance(slot, SharedSlot)]
        for result in await asyncio.gather(*shared, return_exceptions=True):
            if isinstance(result, Exception):
                log.warning("could not give a host's window back to the fleet: %s", result)
