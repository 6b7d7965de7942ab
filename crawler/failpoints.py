"""Crash points for the durability tests, the way databases test theirs.

With `CRAWL_FAILPOINT=NAME:N` in the environment, the N-th pass through `reach(NAME)` kills
this process with SIGKILL, exactly as `kill -9` would, at an instant a test could never hit
from outside (between a commit and the file write that follows it, say). Unset, which it
always is outside the tests, `reach` is one comparison.
"""

from __future__ import annotations

import os
import signal

_NAME, _, _COUNT = os.environ.get("CRAWL_FAILPOINT", "").partition(":")
_left = int(_COUNT or 1) if _NAME else 0


def due(name: str) -> bool:
    """Count a pass through `name`; True on the N-th (the caller then tears and `kill()`s)."""
    global _left
    if name != _NAME:
        return False
    _left -= 1
    return _left == 0


def kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def reach(name: str) -> None:
    if due(name):
        kill()
