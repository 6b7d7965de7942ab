"""Real proxies on loopback for the tests: Debian's tinyproxy (HTTP, CONNECT) and pproxy (SOCKS5),
each read back from its own log; and a small origin site that records what reached it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import free_port

# pproxy's `main`, on asyncio's own loop: it installs uvloop when it finds it (a dependency of
# the crawler) and then asks for an event loop the way uvloop 0.2x no longer answers
PPROXY = (sys.executable, "-c", "import sys, uvloop; uvloop.install = lambda: None; "
          "from pproxy.server import main; sys.exit(main())")


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    import socket

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"proxy exited {proc.returncode}: {log.read_text(errors='replace')}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"proxy did not listen on {port}")


@dataclass
class Proxy:
    url: str
    log: Path
    port: int

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines() if self.log.exists() else []

    def requests(self) -> list[str]:
        """tinyproxy: the request lines it was asked, e.g. `GET http://127.0.0.1:1/ HTTP/1.1`."""
        return [line.split("): ", 1)[1] for line in self.lines() if "]: Request (file" in line]

    def tunnels(self) -> list[str]:
        """pproxy: one `socks5 CLIENT -> TARGET` line per connection it carried."""
        return [line for line in self.lines() if " -> " in line]


@contextmanager
def tinyproxy(tmp_path: Path, basic_auth: tuple[str, str] | None = None) -> Iterator[Proxy]:
    """tinyproxy in the foreground on a free loopback port, logging every request line."""
    binary = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
    if not Path(binary).exists():
        pytest.fail("tinyproxy is missing: `make test` installs Debian's tinyproxy")
    port = free_port()
    log = tmp_path / "tinyproxy.log"
    conf = tmp_path / "tinyproxy.conf"
    lines = [f"Port {port}", "Listen 127.0.0.1", "Timeout 30", f'LogFile "{log}"',
             "LogLevel Info", "MaxClients 100", "Allow 127.0.0.1", "DisableViaHeader Yes"]
    if basic_auth:
        lines.append(f"BasicAuth {basic_auth[0]} {basic_auth[1]}")
    conf.write_text("\n".join(lines) + "\n")  # no ConnectPort line: CONNECT to any port
    with (tmp_path / "tinyproxy.out").open("wb") as out:
        proc = subprocess.Popen([binary, "-d", "-c", str(conf)], stdout=out, stderr=out)
    try:
        _wait_for_port(port, proc, tmp_path / "tinyproxy.out")
        yield Proxy(f"http://127.0.0.1:{port}", log, port)
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def socks5(tmp_path: Path) -> Iterator[Proxy]:
    """pproxy as a SOCKS5 server on a free loopback port; -v logs each connection."""
    port = free_port()
    log = tmp_path / "pproxy.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*PPROXY, "-l", f"socks5://127.0.0.1:{port}", "-v"],
                                stdout=out, stderr=out)
    try:
        _wait_for_port(port, proc, log)
        yield Proxy(f"socks5://127.0.0.1:{port}", log, port)
    finally:
        proc.terminate()
        proc.wait(10)


@dataclass
class Seen:
    """One request as the origin got it."""

    host: str
    path: str
    headers: dict[str, str]
    peer: int  # the client's port: one per connection


@dataclass
class Origin:
    """What reached the origin site."""

    seen: list[Seen] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]

    def connections(self) -> set[int]:
        return {s.peer for s in self.seen}


def origin_app(origin: Origin, pages: int = 3) -> web.Application:
    """robots.txt naming a sitemap, the sitemap (of the first page) and a chain of linked
    pages under /p/."""

    async def record(request: web.Request) -> None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        origin.seen.append(Seen(request.host.split(":")[0], request.path_qs,
                                dict(request.headers), int(peer[1]) if peer else 0))

    async def robots(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(text="User-agent: *\nDisallow: /nowhere\n"
                                 f"Sitemap: {request.scheme}://{request.host}/sitemap.xml\n")

    async def sitemap(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(
            text='<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>'
                 f"{request.scheme}://{request.host}/p/0</loc></url></urlset>",
            content_type="application/xml")

    async def page(request: web.Request) -> web.Response:
        await record(request)
        n = int(request.match_info["n"])
        link = f'<a href="/p/{n + 1}">next</a>' if n + 1 < pages else ""
        return web.Response(text=f"<html><title>page {n}</title><body>{link}</body></html>",
                            content_type="text/html")

    app = web.Application()
    app.router.add_get("/robots.txt", robots)
    app.router.add_get("/sitemap.xml", sitemap)
    app.router.add_get("/p/{n}", page)
    return app
