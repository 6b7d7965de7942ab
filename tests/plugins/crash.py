"""Extractors that break their parse process, for the pool's crash and hang tests."""

from __future__ import annotations

import os
import time
from typing import Any


def crash_on_url(page: Any) -> None:
    """Kill the parse process outright (no exception, no cleanup) on a URL with "crash"."""
    if "crash" in page.url:
        os._exit(1)


def hang_on_url(page: Any) -> None:
    """Never return on a URL with "hang", as a parser stuck in a pathological page would."""
    while "hang" in page.url:
        time.sleep(3600)


def slow_on_url(page: Any) -> None:
    """Take a while, as a heavy page does: `?slow=0.7` sleeps 0.7 s, then returns normally."""
    _, marker, seconds = page.url.partition("slow=")
    if marker:
        time.sleep(float(seconds))
