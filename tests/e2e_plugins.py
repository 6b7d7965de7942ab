"""Plugins for the end-to-end tests: sinks that report where they ran, an extractor that fails.

Sinks append one JSON line per record to the file named by an environment variable, so the
test process can see what the crawl process gave them.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from typing import Any

SINK_FILE = "E2E_SINK_FILE"
ASYNC_SINK_FILE = "E2E_ASYNC_SINK_FILE"


def _append(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def _where(record: dict[str, Any]) -> str:
    thread = threading.current_thread()
    return json.dumps({"url": record["url"], "thread": thread.name,
                       "is_main": thread is threading.main_thread(), "pid": os.getpid()})


def record_sink(record: dict[str, Any]) -> None:
    """A plain function: a blocking client, so the crawler runs it in its thread pool."""
    _append(os.environ[SINK_FILE], _where(record))


async def record_sink_async(record: dict[str, Any]) -> None:
    """An `async def`: awaited on the crawler's event loop."""
    line = _where(record)  # taken here, on the loop, not in the helper thread below
    await asyncio.to_thread(_append, os.environ[ASYNC_SINK_FILE], line)


SLOW_SINK_S = 1.0


def slow_sink(record: dict[str, Any]) -> None:
    """A blocking client that takes its time (a second a call): it must not hold up the event
    loop, which would then lag by that second."""
    time.sleep(SLOW_SINK_S)
    _append(os.environ[SINK_FILE], _where(record))


_inflight = 0
_inflight_lock = threading.Lock()


def concurrent_sink(record: dict[str, Any]) -> None:
    """A blocking client that takes 50 ms a call and is thread-safe; each line says how many
    calls, this one included, were running when it started."""
    global _inflight
    with _inflight_lock:
        _inflight += 1
        running = _inflight
    try:
        time.sleep(0.05)
    finally:
        with _inflight_lock:
            _inflight -= 1
    _append(os.environ[SINK_FILE], json.dumps({"url": record["url"], "running": running}))


def failing_sink(record: dict[str, Any]) -> None:
    raise RuntimeError(f"e2e sink failure for {record['url']}")


def _field(page: Any, name: str) -> Any:
    return page[name] if isinstance(page, dict) else getattr(page, name)


def crash_or_hang(page: Any) -> dict[str, Any]:
    """Kills its parse process on E2E-CRASH-ME, hangs it on E2E-HANG-ME, else reports in."""
    text = _field(page, "html") or ""
    if "E2E-CRASH-ME" in text:
        os._exit(3)
    if "E2E-HANG-ME" in text:
        time.sleep(30)  # bounded, so a crawler that never kills it still ends one day
    return {"survived": True}
