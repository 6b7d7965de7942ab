"""Run `crawl` with names under `.test` resolving to 127.0.0.1: a hosts file for one process.

`python -m tests.hostnames SEEDS [OPTIONS]` is the `crawl` command, unchanged, except that the
system resolver answers 127.0.0.1 for `site.test`, `www.site.test` and every other name ending
in `.test` (RFC 2606 reserves it for testing). The crawler's own resolver, its address guard
and its scope rules all see the names; the connections all go to loopback.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

_system_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(host, str) and host.lower().rstrip(".").endswith(".test"):
        host = "127.0.0.1"
    return _system_getaddrinfo(host, *args, **kwargs)


if __name__ == "__main__":
    socket.getaddrinfo = _getaddrinfo
    # uvloop resolves in libuv (getaddrinfo(3) itself), never through socket.getaddrinfo, so
    # this one-process hosts file needs asyncio's own loop: the crawler's fallback without it
    sys.modules["uvloop"] = None  # type: ignore[assignment]
    from crawler.cli import main

    main()
