"""Step 5: where records go: JSONL files through aiofiles, and the users' sink plugins."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiofiles
import msgspec
from aiofiles.threadpool.binary import AsyncBufferedIOBase

from . import failpoints
from .plugins import load_callable
from .pools import ThreadPool
from .records import LinkRecord, Record
from .stats import Stats

log = logging.getLogger(__name__)

KINDS = ("pages", "links", "errors")
CONTENT = "content"  # content.jsonl, with --extract (or when a resumed batch wrote one)


# msgspec writes the whole batch into one buffer, byte for byte what the stdlib encoder
# wrote (measured in the README, "Libraries"); the stdlib one stays for what msgspec refuses
# (an integer past 64 bits from a plugin, say)
_LINES = msgspec.json.Encoder()
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def encode(records: Sequence[Record | LinkRecord]) -> bytes:
    """One JSON object per line, UTF-8, compact; runs in a thread, not on the loop."""
    if not records:
        return b""
    try:
        return _LINES.encode_lines(records)
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError):
        return ("\n".join([_ENCODER.encode(msgspec.to_builtins(r) if isinstance(
            r, LinkRecord) else r) for r in records]) + "\n").encode("utf-8")


def encode_batches(batches: Mapping[str, Sequence[Record | LinkRecord]]) -> dict[str, bytes]:
    return {kind: encode(records) for kind, records in batches.items() if records}


def repair(path: Path) -> int:
    """Cut a torn last line left by a killed run; returns the bytes removed."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with path.open("rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return 0
        # walk back to the last newline in blocks
        end = size
        while end > 0:
            start = max(0, end - 65536)
            f.seek(start)
            block = f.read(end - start)
            cut = block.rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            end = start
        else:
            keep = 0
        f.truncate(keep)
        return size - keep


def replay(path: Path, base: int, data: bytes) -> int:
    """Make `path` end with the last committed batch: cut it back to `base` (dropping a torn
    or partial write of that batch) and append `data`; returns the bytes that were past
    `base`. Idempotent."""
    with path.open("ab+") as f:
        size = f.seek(0, os.SEEK_END)
        if size < base:
            raise OSError(f"{path} is {size} bytes, shorter than its {base} committed bytes; "
                          "it was changed outside the crawler")
        f.truncate(base)
        f.seek(base)
        f.write(data)
        return size - base


class JsonlFiles:
    """`pages`, `links` and `errors` JSONL files of one run (one set per worker when shared).

    Binary, append-only, with the size of each file known at every instant, so that a batch's
    journal can name where the batch starts.
    """

    def __init__(self, run_dir: Path, threads: ThreadPool, suffix: str = "",
                 content: bool = False) -> None:
        self._dir = run_dir
        self._content = content
        self._threads = threads
        self._suffix = suffix
        self._files: dict[str, AsyncBufferedIOBase] = {}
        self.sizes: dict[str, int] = {}

    def path(self, kind: str) -> Path:
        return self._dir / f"{kind}{self._suffix}.jsonl"

    async def open(self, journal: Mapping[str, tuple[int, bytes]]) -> None:
        """Open for appending; first write the last committed batch again where `journal`
        has it, else cut a torn last line."""
        kinds = [*KINDS, CONTENT] if self._content or CONTENT in journal else KINDS
        for kind in kinds:
            path = self.path(kind)
            if kind in journal:
                base, data = journal[kind]
                found = await self._threads.run(replay, path, base, data)
                if found != len(data):
                    log.warning("%s: wrote its last committed batch again (%d bytes; %d were "
                                "on disk)", path, len(data), found)
            else:
                removed = await self._threads.run(repair, path)
                if removed:
                    log.warning("cut a torn last line (%d bytes) from %s", removed, path)
            self._files[kind] = await aiofiles.open(path, "ab", executor=self._threads.executor)
            self.sizes[kind] = await self._files[kind].tell()

    async def write(self, data: Mapping[str, bytes]) -> None:
        """Append whole lines and flush each file."""
        for kind in list(self._files):
            blob = data.get(kind)
            if not blob:
                continue
            f = self._files[kind]
            if failpoints.due(f"torn-{kind}"):  # the durability tests' torn write
                await f.write(blob[: len(blob) // 2])
                await f.flush()
                failpoints.kill()
            await f.write(blob)
            await f.flush()
            self.sizes[kind] += len(blob)

    async def close(self) -> None:
        for f in self._files.values():
            await f.close()
        self._files.clear()


class PluginSinks:
    """Users' sinks, fed through a bounded queue: a slow sink slows the crawl, never the loop.

    A plain function is a blocking client and runs in the thread pool, called from up to
    `threads` threads at once; an `async def` is awaited on the loop, a record at a time. A
    sink that raises is logged and counted, and the crawl goes on.
    `delivered` is how far into `pages.jsonl` every sink has had its records: each commit
    keeps it, and a resumed run feeds the sinks again from there (at least once across a
    `kill -9`, exactly once otherwise).
    """

    def __init__(self, specs: Sequence[str], threads: ThreadPool, stats: Stats,
                 maxsize: int) -> None:
        self._sinks: list[tuple[str, Callable[..., Any]]] = [(s, load_callable(s)) for s in specs]
        self._threads = threads
        self._stats = stats
        # (record, the end of its batch in pages.jsonl when it is the batch's last record)
        self._queue: asyncio.Queue[tuple[Record, int | None] | None] = asyncio.Queue(maxsize)
        self._task: asyncio.Task[None] | None = None
        # records being delivered, in queue order, each with its batch end (or None)
        self._running: deque[tuple[asyncio.Task[None], int | None]] = deque()
        self._one_async = asyncio.Lock()
        self.delivered = 0

    def __bool__(self) -> bool:
        return bool(self._sinks)

    def start(self, delivered: int) -> None:
        self.delivered = delivered
        if self._sinks:
            self._task = asyncio.create_task(self._drain(), name="sinks")

    async def put(self, records: Sequence[Record], end: int) -> None:
        """Queue one batch of page records that ends at byte `end` of pages.jsonl."""
        if not self._sinks:
            self.delivered = end
            return
        for i, record in enumerate(records, start=1):
            await self._queue.put((record, end if i == len(records) else None))

    async def _drain(self) -> None:
        """Deliver records up to `threads` at once (contract 4b): a plain-function sink that
        takes L seconds a call keeps up with `threads / L` records a second. `async def`
        sinks still get one record at a time. `delivered` moves to a batch's end once every
        record queued up to it has been delivered."""
        slots = asyncio.Semaphore(self._threads.size)
        while (item := await self._queue.get()) is not None:
            record, end = item
            await slots.acquire()
            task = asyncio.create_task(self._deliver(record, slots), name="sink")
            self._running.append((task, end))
            task.add_done_callback(self._advance)
        await asyncio.gather(*(task for task, _ in self._running))
        self._advance()

    def _advance(self, _: object = None) -> None:
        running = self._running
        while running and running[0][0].done():
            _task, end = running.popleft()
            if end is not None:
                self.delivered = end

    async def _deliver(self, record: Record, slots: asyncio.Semaphore) -> None:
        try:
            for name, fn in self._sinks:
                try:
                    if inspect.iscoroutinefunction(fn):
                        async with self._one_async:
                            await fn(record)
                    else:
                        await self._threads.run(fn, record)
                except Exception as exc:
                    self._stats.count("sink_errors")
                    log.warning("sink %s failed on %s: %s: %s", name, record.get("url"),
                                type(exc).__name__, exc)
        finally:
            slots.release()

    async def close(self) -> None:
        if self._task is not None:
            await self._queue.put(None)
            await self._task
            self._task = None


def read_lines(path: Path, start: int) -> list[Record]:
    """The records of a JSONL file from byte `start` (a line boundary) to its end."""
    with path.open("rb") as f:
        f.seek(start)
        return [json.loads(line) for line in f.read().splitlines() if line]


def write_json_atomic(path: Path, data: Any) -> None:
    """Readers never see half a stats.json: write beside it, then rename over it."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # workers may share the folder
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
