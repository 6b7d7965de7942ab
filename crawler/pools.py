"""The two executors of the hybrid engine: processes for CPU work, threads for blocking clients.

The runner owns both; stages get them handed down and never start their own. Each keeps the
figures that `stats.json` reports (`tasks`, `busy_s`, `restarts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from .models import ParseInput, ParseResult
from .urls import LinkPolicy

log = logging.getLogger(__name__)
MAX_BATCH = 8  # pages in one trip to a parse process; a hang is found within this many timeouts
STARTUP_TIMEOUT_S = 60.0  # for a new pool's processes to start (they import lxml, numpy, ada)
_STARTED: Any = None  # in a parse process: its pool's count of processes that have started
P = ParamSpec("P")
T = TypeVar("T")


@dataclass(slots=True)
class PoolFigures:
    tasks: int = 0
    busy_s: float = 0.0
    restarts: int = 0

    def snapshot(self) -> dict[str, float | int]:
        return {"tasks": self.tasks, "busy_s": round(self.busy_s, 3), "restarts": self.restarts}


@dataclass(slots=True)
class Occupancy:
    """A count that moves (batches at the parse processes, pages waiting for one) and its
    mean over time since it was made: whether the pool is full or starved."""

    count: int = 0
    _area: float = 0.0
    _start: float = field(default_factory=time.monotonic)
    _since: float = field(default_factory=time.monotonic)

    def move(self, by: int) -> None:
        now = time.monotonic()
        self._area += self.count * (now - self._since)
        self._since = now
        self.count += by

    def mean(self) -> float:
        now = time.monotonic()
        span = now - self._start
        return (self._area + self.count * (now - self._since)) / span if span > 0 else 0.0


@dataclass(slots=True, eq=False)
class _Waiting:
    """A page waiting for a parse process, and the future its caller awaits."""

    input: ParseInput
    result: asyncio.Future[ParseResult | ParseFailed]
    taken: bool = False


class ParseFailed(Exception):
    """A page that hung or crashed its parse process; it becomes an error record of kind parse."""


def _ready(processes: int) -> None:
    """Answered by a parse process once all `processes` of its pool have started (or after
    STARTUP_TIMEOUT_S, when the main process has given up on them anyway)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while _STARTED.value < processes and time.monotonic() < deadline:
        time.sleep(0.01)


def _context() -> multiprocessing.context.BaseContext:
    # forkserver: forking a process that runs threads and an event loop is unsafe
    if not sys.platform.startswith("linux"):
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # The server imports the parser once and every parse process is forked with it; the main
    # process itself never imports it. (Python's default preload, `__main__`, does nothing:
    # the server is never told the main module's path, so each parse process imports the
    # command's module itself, 40 ms for typer; preloading it too would cost the server's RSS.)
    context.set_forkserver_preload(["crawler.parse"])
    return context


def start_processes() -> None:
    """Start the server the parse processes are forked from, so that its imports (0.3 s of
    CPU) run on the other core while the main process still imports and opens the job."""
    if isinstance(_context(), multiprocessing.context.ForkServerContext):
        multiprocessing.forkserver.ensure_running()


def _init_worker(owner: int, started: Any, *initargs: Any) -> None:
    """Parse-process start: a watchdog, then the parser's own set-up; then it counts itself
    in `started`, the pool's shared count."""
    global _STARTED
    # Ctrl-C reaches the terminal's whole process group: the main process stops the crawl and
    # its pool; a parse process must not die of it mid-page (a "broken" pool, tracebacks)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch, args=(owner,), daemon=True, name="watchdog").start()
    from . import parse  # here, not at the top: the main process never imports the parser

    parse.init_worker(*initargs)
    _STARTED = started
    with started.get_lock():
        started.value += 1


def _parse_many(inputs: list[ParseInput]) -> list[ParseResult]:
    """`parse.parse_many` as a parse process runs it (imported there by `_init_worker`)."""
    from .parse import parse_many

    return parse_many(inputs)


def _watch(owner: int) -> None:
    # A crawl killed with -9 cannot stop its pool; without this its workers would live on.
    while True:
        time.sleep(1.0)
        if not pid_alive(owner):
            os._exit(0)


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` exists (one of another user's counts: it is alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ThreadPool:
    """Blocking clients (sqlite3, warcio, plain-function sinks), off the event loop."""

    def __init__(self, threads: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="crawl-io")
        self.size = threads
        self.figures = PoolFigures()

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._timed, fn, args, kwargs)

    def _timed(self, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.figures.tasks += 1
            self.figures.busy_s += time.perf_counter() - start

    @property
    def executor(self) -> ThreadPoolExecutor:
        """For libraries that take an executor (aiofiles); their time is not in `figures`."""
        return self._executor

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)


class ParsePool:
    """A `ProcessPoolExecutor` running `parse.parse_many`, rebuilt when a page breaks it.

    Pages that wait for a free worker travel together: when a worker frees, the caller that
    gets it takes every page waiting (up to `MAX_BATCH`), its own first, so that one trip
    across the process boundary carries many pages while the workers are busy, and one page
    when they are not. A page that outlives `timeout` or kills its process costs that page
    only: the pool is replaced, and the other pages that shared the broken pool are parsed
    again, one by one, on the new one, each with the pool to itself. A page fails when it runs
    out of time (a batch has `timeout` per page, and its clock starts when a worker is free
    for it, not while it queues) or when it breaks a pool it has to itself.
    """

    def __init__(self, workers: int, timeout: float, extractors: Sequence[str],
                 policy: LinkPolicy | None, max_links: int, extract: str = "") -> None:
        self._workers = workers
        self._timeout = timeout
        self._initargs = (tuple(extractors), policy, max_links, extract)
        self.figures = PoolFigures()
        self._generation = 0
        # A batch waiting in the executor's call queue behind each worker's, so that a worker
        # that finishes starts on the next at once instead of waiting for the event loop's
        # turn: with one spare batch for all, the workers slept 19 % of the crawl on a loaded
        # machine (the main process descheduled when its result arrived), with one each 11 %.
        self._capacity = 2 * workers
        self._slots = asyncio.Semaphore(self._capacity)
        self._submitted = 0  # batches handed to the executor and not finished
        self._finished = 0  # batches handed to the executor that have finished, ever
        self._freed = asyncio.Event()  # set, then replaced, when one of them finishes
        self._at_workers = Occupancy()  # batches handed to the executor (at most _capacity)
        self._queued = Occupancy()  # pages given to parse() and not yet in a batch
        self._alone = asyncio.Lock()
        self._waiting: list[_Waiting] = []
        self._batches: set[asyncio.Task[None]] = set()
        self._executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        context = _context()
        executor = ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(os.getpid(), context.Value("i", 0), *self._initargs),
        )
        self._warm: asyncio.Future[list[None]] | None = None  # every new process's answer
        with contextlib.suppress(RuntimeError):  # no loop yet: the first call starts them
            # the processes start now, while the crawl opens its files and fetches its seeds
            self._warm = self._warm_up(executor)
        return executor

    def _warm_up(self, executor: ProcessPoolExecutor) -> asyncio.Future[list[None]]:
        loop = asyncio.get_running_loop()
        warm = asyncio.gather(*(loop.run_in_executor(executor, _ready, self._workers)
                                for _ in range(self._workers)))
        # a crawl may end before its first page (all disallowed): a pool that broke as it
        # started is then nobody's error
        warm.add_done_callback(lambda f: f.cancelled() or f.exception())
        return warm

    def snapshot(self) -> dict[str, float | int]:
        """stats.json's `process_pool`: the figures, and how full the pool was on average
        (`batches_mean` of at most `batches_max` at or queued for the parse processes, and
        `pages_waiting_mean` for a place among them)."""
        return {**self.figures.snapshot(), "batches_max": self._capacity,
                "batches_mean": round(self._at_workers.mean(), 2),
                "pages_waiting_mean": round(self._queued.mean(), 1)}

    async def parse(self, inputs: list[ParseInput]) -> list[ParseResult | ParseFailed]:
        """Results in the order of `inputs`."""
        loop = asyncio.get_running_loop()
        mine = [_Waiting(inp, loop.create_future()) for inp in inputs]
        self._waiting.extend(mine)
        self._queued.move(len(mine))
        try:
            await self._slots.acquire()
        except asyncio.CancelledError:
            self._waiting = [w for w in self._waiting if w not in mine]
            self._queued.move(-sum(not w.taken for w in mine))
            raise
        batch = self._take(mine)
        if batch:
            # the batch belongs to the pool, not to this caller: if the caller is cancelled,
            # the pages of other callers in it are still parsed and the slot still returned
            task = asyncio.create_task(self._run(batch), name="parse batch")
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)
        else:
            self._slots.release()  # another caller took these pages along with its own
        return [await w.result for w in mine]

    def _take(self, mine: list[_Waiting]) -> list[_Waiting]:
        """The caller's own pages still waiting, then others', up to MAX_BATCH in all."""
        batch = [w for w in mine if not w.taken]
        for w in self._waiting:
            if len(batch) >= MAX_BATCH:
                break
            if not w.taken and w not in batch:
                batch.append(w)
        for w in batch:
            w.taken = True
        self._queued.move(-len(batch))
        self._waiting = [w for w in self._waiting if not w.taken]
        return batch

    async def _run(self, batch: list[_Waiting]) -> None:
        """Parse a batch on the slot its caller acquired; on a broken pool, page by page."""
        inputs = [w.input for w in batch]
        results: list[ParseResult | ParseFailed] | None = None
        try:
            try:
                results = list(await self._submit(inputs))
            except (BrokenProcessPool, TimeoutError) as exc:
                if len(inputs) == 1 and isinstance(exc, TimeoutError):
                    results = [ParseFailed(self._describe(exc))]
            finally:
                self._slots.release()
            if results is None:
                results = [await self._one(inp) for inp in inputs]
        except BaseException as exc:  # cancelled, or a bug: no caller may wait forever
            cancelled = isinstance(exc, asyncio.CancelledError)
            for w in batch:
                if w.result.done():
                    continue
                if cancelled:
                    w.result.cancel()
                else:
                    w.result.set_exception(exc)
            if cancelled:
                raise
            return
        for w, result in zip(batch, results, strict=True):
            if not w.result.done():
                w.result.set_result(result)

    async def _one(self, inp: ParseInput) -> ParseResult | ParseFailed:
        """A page that shared a broken pool, parsed again with the pool to itself: if it
        breaks this one too, it is the culprit."""
        async with self._alone:
            held = 0
            try:
                for _ in range(self._capacity):
                    await self._slots.acquire()
                    held += 1
                result = (await self._started(_parse_many, [inp]))[0]
            except (BrokenProcessPool, TimeoutError) as exc:
                return ParseFailed(self._describe(exc))
            finally:
                for _ in range(held):
                    self._slots.release()
        self.figures.tasks += 1
        self.figures.busy_s += result.busy_s
        return result

    async def _submit(self, inputs: list[ParseInput]) -> list[ParseResult]:
        results = await self._started(_parse_many, inputs, budget=len(inputs))
        self.figures.tasks += len(inputs)
        self.figures.busy_s += sum(r.busy_s for r in results)
        return results

    async def _started(self, fn: Callable[..., T], *args: Any, budget: int = 1) -> T:
        """Run `fn` in a process, `budget` timeouts from when a worker is free for it; a pool
        that breaks or hangs meanwhile is replaced, and the error raised."""
        loop = asyncio.get_running_loop()
        generation = await self._up()
        try:
            future = loop.run_in_executor(self._executor, fn, *args)
        except BrokenProcessPool as exc:  # broken by a page whose caller has not seen it yet
            self._rebuild(generation, exc)
            raise
        # queued behind busy workers: the clock starts once as many batches have finished as
        # were queued ahead of this one (the executor's queue is first in, first out)
        start_after = self._finished + self._submitted - self._workers + 1
        self._submitted += 1
        self._at_workers.move(1)
        try:
            while self._finished < start_after and not future.done():
                freed = asyncio.ensure_future(self._freed.wait())
                await asyncio.wait((future, freed), return_when=asyncio.FIRST_COMPLETED)
                freed.cancel()
            return await asyncio.wait_for(future, self._timeout * budget)
        except (BrokenProcessPool, TimeoutError) as exc:
            self._rebuild(generation, exc)
            raise
        finally:
            self._submitted -= 1
            self._at_workers.move(-1)
            self._finished += 1
            self._freed.set()
            self._freed = asyncio.Event()

    async def _up(self) -> int:
        """A new pool's processes starting (imports, the parser's tables) is no page's parse
        time: the clocks start once every one of them has started (within STARTUP_TIMEOUT_S).
        Every one: the executor starts a process per call while none is idle, so with one up
        and busy (a hang) the next page waited for the second to import lxml, on its clock.
        The generation of the pool that is up; one that broke as it started is replaced, and
        the error raised."""
        while True:
            generation, warm = self._generation, self._warm
            try:
                if warm is None:
                    warm = self._warm = self._warm_up(self._executor)
                if not warm.done():
                    await asyncio.wait_for(asyncio.shield(warm), STARTUP_TIMEOUT_S)
                warm.result()
            except (BrokenProcessPool, TimeoutError) as exc:
                if generation == self._generation:
                    self._rebuild(generation, exc)
                    raise
            if generation == self._generation:
                return generation
            # another page replaced the pool meanwhile: this caller waits for the new one

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Any other CPU-bound top-level function (sitemaps), under the same time limit."""
        start = time.perf_counter()
        try:
            async with self._slots:
                result = await self._started(fn, *args)
        except (BrokenProcessPool, TimeoutError) as exc:
            raise ParseFailed(self._describe(exc)) from None
        self.figures.tasks += 1
        self.figures.busy_s += time.perf_counter() - start
        return result

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError):
            return f"parsing took longer than parse_timeout ({self._timeout:g} s)"
        return "the parse process died while parsing this page"

    def _rebuild(self, generation: int, exc: BaseException) -> None:
        if generation != self._generation:
            return  # another page already replaced the pool it shared with this one
        log.warning("parse pool %s; starting a new one", "hung" if isinstance(exc, TimeoutError)
                    else "broke")
        self._kill()
        self._generation += 1
        self.figures.restarts += 1
        self._executor = self._start()

    def _kill(self) -> None:
        # A hung worker never returns: shutdown() alone would wait for it forever. The stdlib
        # gains terminate_workers() only in 3.14, hence the private attribute.
        processes = dict(getattr(self._executor, "_processes", None) or {})
        for process in processes.values():
            if process.is_alive():
                process.kill()
        # not cancel_futures: the calls still queued would end cancelled, and a page's caller
        # would take that for its own cancellation (its URL neither recorded nor given back,
        # the crawl waiting for it forever); with the processes killed they end broken instead
        self._executor.shutdown(wait=False)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def terminate(self) -> None:
        self._kill()
