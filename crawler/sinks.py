"""Step 5: where records go: JSONL files through aiofiles, and the users' sink plugins."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiofiles
from aiofiles.threadpool.text import AsyncTextIOWrapper

from .parse import load_callable
from .pools import ThreadPool
from .records import Record
from .stats import Stats

log = logging.getLogger(__name__)

KINDS = ("pages", "links", "errors")


# One encoder for every line: json.dumps with options builds a new encoder per call, which
# costs as much as encoding a link record.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def encode(records: Sequence[Record]) -> str:
    """One JSON object per line; runs in a thread, not on the loop."""
    if not records:
        return ""
    return "\n".join([_ENCODER.encode(r) for r in records]) + "\n"


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


class JsonlFiles:
    """`pages`, `links` and `errors` JSONL files of one run (one set per worker when shared)."""

    def __init__(self, run_dir: Path, threads: ThreadPool, suffix: str = "") -> None:
        self._dir = run_dir
        self._threads = threads
        self._suffix = suffix
        self._files: dict[str, AsyncTextIOWrapper] = {}

    def path(self, kind: str) -> Path:
        return self._dir / f"{kind}{self._suffix}.jsonl"

    async def open(self) -> None:
        for kind in KINDS:
            removed = await self._threads.run(repair, self.path(kind))
            if removed:
                log.warning("cut a torn last line (%d bytes) from %s", removed, self.path(kind))
            self._files[kind] = await aiofiles.open(
                self.path(kind), "a", encoding="utf-8", executor=self._threads.executor)

    async def write(self, batches: dict[str, list[Record]]) -> None:
        """Append whole lines, then flush, so a reader never sees half a record but at the end."""
        for kind in KINDS:
            records = batches.get(kind)
            if records:
                text = await self._threads.run(encode, records)
                await self._files[kind].write(text)
        for kind in KINDS:
            if batches.get(kind):
                await self._files[kind].flush()

    async def close(self) -> None:
        for f in self._files.values():
            await f.close()
        self._files.clear()


class PluginSinks:
    """Users' sinks, fed through a bounded queue: a slow sink slows the crawl, never the loop.

    A plain function is a blocking client and runs in the thread pool; an `async def` is
    awaited on the loop. A sink that raises is logged and counted, and the crawl goes on.
    """

    def __init__(self, specs: Sequence[str], threads: ThreadPool, stats: Stats,
                 maxsize: int) -> None:
        self._sinks: list[tuple[str, Callable[..., Any]]] = [(s, load_callable(s)) for s in specs]
        self._threads = threads
        self._stats = stats
        self._queue: asyncio.Queue[Record | None] = asyncio.Queue(maxsize)
        self._task: asyncio.Task[None] | None = None

    def __bool__(self) -> bool:
        return bool(self._sinks)

    def start(self) -> None:
        if self._sinks:
            self._task = asyncio.create_task(self._drain(), name="sinks")

    async def put(self, record: Record) -> None:
        if self._sinks:
            await self._queue.put(record)

    async def _drain(self) -> None:
        while (record := await self._queue.get()) is not None:
            for name, fn in self._sinks:
                try:
                    if inspect.iscoroutinefunction(fn):
                        await fn(record)
                    else:
                        await self._threads.run(fn, record)
                except Exception as exc:
                    self._stats.count("sink_errors")
                    log.warning("sink %s failed on %s: %s: %s", name, record.get("url"),
                                type(exc).__name__, exc)

    async def close(self) -> None:
        if self._task is not None:
            await self._queue.put(None)
            await self._task
            self._task = None


def write_json_atomic(path: Path, data: Any) -> None:
    """Readers never see half a stats.json: write beside it, then rename over it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
