"""More of the hostile site: broken framing, dropped keep-alives, bombs, traps, odd redirects.

`install(app)` adds these routes to the app `tests.site.make_site` builds; each request is
logged there too. Bombs are built once per test process and cached.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import html
import zlib
from datetime import date

import brotli
from aiohttp import web

__all__ = ["DOCS", "HOSTILE", "Doc", "HostileState", "bomb_sizes", "build_bombs", "encoded_page",
           "install"]

NESTED_TEXT = "bottom of the well"
ENCODED_TITLE = "Encoded twice"


class Doc:
    """A canned answer for `/doc/{name}`: status, headers and raw body bytes."""

    def __init__(self, status: int = 200, body: bytes | str = b"",
                 headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.headers = headers or {"Content-Type": "text/plain"}


class HostileState:
    """What the hostile routes remember: requests served per connection, drops made."""

    def __init__(self) -> None:
        self.per_connection: dict[object, int] = {}
        self.dropped: set[str] = set()
        self.counts: dict[str, int] = {}
        self.released = asyncio.Event()


HOSTILE = web.AppKey("hostile", HostileState)
DOCS = web.AppKey("docs", dict[str, Doc])


def _page(title: str, body: str) -> web.Response:
    text = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title></head><body>{body}</body></html>")
    return web.Response(text=text, content_type="text/html")


def encoded_page() -> bytes:
    """The decoded body of every `/encoded/...` page that is not a bomb."""
    return (f"<!DOCTYPE html><html><head><title>{ENCODED_TITLE}</title></head><body><p>"
            + " ".join(f"layer{i}" for i in range(200)) + "</p></body></html>").encode()


# --- network faults -------------------------------------------------------------------------


async def silence(request: web.Request) -> web.StreamResponse:
    """Headers and a first byte, then nothing until the test server stops."""
    resp = web.StreamResponse(headers={"Content-Type": "text/html"})
    resp.content_length = 1000
    await resp.prepare(request)
    await resp.write(b"<")
    await request.app[HOSTILE].released.wait()
    return resp


def _raw(request: web.Request, data: bytes) -> None:
    """Answer with bytes written by hand, bypassing aiohttp's writer, and hang up."""
    transport = request.transport
    assert transport is not None
    transport.write(data)
    transport.close()
    raise asyncio.CancelledError  # nothing more is written; the handler simply ends


async def chunked_broken(request: web.Request) -> web.StreamResponse:
    """A good chunk, then a chunk-size line that is not hexadecimal."""
    _raw(request, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n"
                  b"17\r\n<html><body>fine so far\r\nzz-not-hex\r\nnot chunked framing\r\n")
    raise AssertionError("unreachable")


async def keepalive(request: web.Request) -> web.Response:
    """Served normally, except that the first request for each name that arrives on an
    already used connection finds that connection closed under it, unanswered."""
    state = request.app[HOSTILE]
    name = request.match_info["name"]
    transport = request.transport
    assert transport is not None
    served = state.per_connection.get(transport, 0)
    state.per_connection[transport] = served + 1
    if served and name not in state.dropped:
        state.dropped.add(name)
        transport.close()
        raise asyncio.CancelledError  # nothing is written; the handler simply ends
    return _page(f"Kept {name}", "<p>alive</p>")


# --- statuses -------------------------------------------------------------------------------


async def throttle(request: web.Request) -> web.Response:
    """`code` with `Retry-After: ?ra=` (when given) on the first request per key, then a page."""
    code, key = int(request.match_info["code"]), request.match_info["key"]
    state = request.app[HOSTILE]
    state.counts[key] = state.counts.get(key, 0) + 1
    if state.counts[key] == 1:
        headers = {"Retry-After": request.query["ra"]} if "ra" in request.query else {}
        return web.Response(status=code, text="not now", headers=headers)
    return _page(f"Throttled {key}", "<p>finally</p>")


# --- encodings and bombs --------------------------------------------------------------------

_MIB = 1 << 20


def bomb_sizes() -> dict[str, int]:
    """Decoded size of each bomb: each far past the 10 MiB default limit."""
    return {"gzip": 512 * _MIB, "deflate": 128 * _MIB, "deflate-raw": 128 * _MIB,
            "br": 1024 * _MIB, "gzip,gzip": 512 * _MIB}


@functools.cache
def _zeros_gzip_member() -> bytes:
    return gzip.compress(b"\0" * (16 * _MIB), compresslevel=9)


def _deflate_zeros(size: int, wbits: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = b"\0" * _MIB
    return b"".join(packer.compress(block) for _ in range(size // _MIB)) + packer.flush()


def build_bombs() -> None:
    """Build (and cache) every bomb now: built on its first request, in the site's event loop,
    they held every answer of the site back for 1.2 s, and for over the crawl's 5 s timeout on
    a loaded machine (the deflate bomb, 1 s of compressing alone, came back as a timeout)."""
    for kind in bomb_sizes():
        _bomb(kind)


@functools.cache
def _bomb(kind: str) -> bytes:
    size = bomb_sizes()[kind]
    if kind == "gzip":  # concatenated members, as a gzip stream may be
        return _zeros_gzip_member() * (size // (16 * _MIB))
    if kind == "deflate":
        return _deflate_zeros(size, 15)
    if kind == "deflate-raw":
        return _deflate_zeros(size, -15)
    if kind == "br":
        packer = brotli.Compressor(quality=1)
        block = b"\0" * _MIB
        return b"".join(packer.process(block) for _ in range(size // _MIB)) + packer.finish()
    return gzip.compress(_bomb("gzip"), compresslevel=9)  # a bomb inside a gzip layer


def _encoded(name: str) -> tuple[bytes, str]:
    page = encoded_page()
    table = {
        "x-gzip": (gzip.compress(page), "x-gzip"),
        "stacked": (brotli.compress(gzip.compress(page)), "gzip, br"),
        "deflate": (zlib.compress(page), "deflate"),
        "deflate-raw": (zlib.compress(page, wbits=-15), "deflate"),
        "br": (brotli.compress(page), "br"),
        "br-corrupt": (b"\xff\x00garbage that is not brotli" * 10, "br"),
        "deflate-corrupt": (b"x\x9c" + b"\xff" * 64, "deflate"),
        "gzip-truncated": (gzip.compress(page)[:-40], "gzip"),
        "too-many": (functools.reduce(lambda d, _: gzip.compress(d), range(6), page),
                     ", ".join(["gzip"] * 6)),
        "zstd": (page, "zstd"),
    }
    return table[name]


async def encoded(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name.startswith("bomb-"):
        kind = name.removeprefix("bomb-")
        body = _bomb(kind)
        coding = {"deflate-raw": "deflate"}.get(kind, kind).replace(",", ", ")
    else:
        body, coding = _encoded(name)
    return web.Response(body=body, headers={"Content-Type": "text/html",
                                            "Content-Encoding": coding})


# --- giant pages ----------------------------------------------------------------------------


async def nested(request: web.Request) -> web.Response:
    n = int(request.match_info["n"])
    body = ("<p>above</p><a href='/nested-before'>before</a>" + "<div>" * n
            + f"<p>{NESTED_TEXT}</p><a href='/nested-leaf'>leaf</a>" + "</div>" * n)
    return _page(f"Nested {n}", body)


async def links(request: web.Request) -> web.Response:
    n = int(request.match_info["n"])
    body = "\n".join(f'<a href="/links-target/{i}">{i}</a>' for i in range(n))
    return _page(f"Links {n}", body)


async def links_thrice(request: web.Request) -> web.Response:
    """n anchors to n / 3 targets, like a documentation index: each target named as is, then
    with a fragment, then again."""
    n = int(request.match_info["n"])
    targets = max(1, n // 3)
    hrefs = [f"/links-target/{i % targets}" + ("#part" if (i // targets) % 3 == 1 else "")
             for i in range(n)]
    return _page(f"Links thrice {n}", "\n".join(f'<a href="{h}">{h}</a>' for h in hrefs))


# --- traps ----------------------------------------------------------------------------------


async def calendar(request: web.Request) -> web.Response:
    """An endless calendar: every month links to the one before and the one after."""
    year, month = map(int, request.query.get("month", "2026-01").split("-"))
    first = date(year, month, 1)
    before = date(year - (month == 1), (month - 2) % 12 + 1, 1)
    after = date(year + (month == 12), month % 12 + 1, 1)
    body = "".join(f'<a href="/calendar?month={d:%Y-%m}">{d:%B %Y}</a>'
                   for d in (before, after))
    return _page(f"{first:%B %Y}", body)


async def repeat(request: web.Request) -> web.Response:
    """A relative link that grows the path: /repeat/ -> /repeat/a/b/ -> /repeat/a/b/a/b/ ..."""
    return _page("Repeat " + request.match_info["tail"], '<a href="a/b/">deeper</a>')


# --- redirects ------------------------------------------------------------------------------


async def redirect_to(request: web.Request) -> web.Response:
    """`?to=` verbatim as the Location of a `?status=` (302) answer."""
    status = int(request.query.get("status", "302"))
    return web.Response(status=status, headers={"Location": request.query["to"]})


async def redirect_no_location(request: web.Request) -> web.Response:
    return web.Response(status=302, text="moved, but nobody says where")


async def redirect_self(request: web.Request) -> web.Response:
    return web.Response(status=301, headers={"Location": request.path_qs})


async def redirect_raw(request: web.Request) -> web.StreamResponse:
    """A Location header of raw UTF-8 bytes, as some servers send: written by hand."""
    _raw(request, b"HTTP/1.1 302 Found\r\nLocation: /landing/caf\xc3\xa9\r\n"
                  b"Content-Length: 0\r\nConnection: close\r\n\r\n")
    raise AssertionError("unreachable")


async def landing(request: web.Request) -> web.Response:
    return _page("Landing " + request.match_info["name"], "<p>arrived</p>")


# --- canned documents -----------------------------------------------------------------------


async def doc(request: web.Request) -> web.Response:
    found = request.app[DOCS].get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    return web.Response(status=found.status, body=found.body, headers=found.headers)


async def domain_page(request: web.Request) -> web.Response:
    """Links to sibling hosts of one registrable domain, and to another domain."""
    port = request.url.port
    names = ["www.site.test", "shop.site.test", "site.test", "other.test", "site.test.evil.test"]
    body = "".join(f'<a href="http://{n}:{port}/domain/{n}">{n}</a>' for n in names)
    return _page("Domain " + request.match_info["host"], body)


async def _release(app: web.Application) -> None:
    app[HOSTILE].released.set()


def install(app: web.Application) -> None:
    """Add the routes above to a hostile site app."""
    app[HOSTILE] = HostileState()
    app[DOCS] = {}
    app.on_shutdown.append(_release)
    get = app.router.add_get
    get("/silence", silence)
    get("/chunked-broken", chunked_broken)
    get("/ka/{name}", keepalive)
    get("/throttle/{code:\\d+}/{key}", throttle)
    get("/encoded/{name}", encoded)
    get("/nested/{n:\\d+}", nested)
    get("/links/{n:\\d+}", links)
    get("/links-thrice/{n:\\d+}", links_thrice)
    get("/calendar", calendar)
    get("/repeat/{tail:.*}", repeat)
    get("/redirect-to", redirect_to)
    get("/redirect-no-location", redirect_no_location)
    get("/redirect-self", redirect_self)
    get("/redirect-raw", redirect_raw)
    get("/landing/{name}", landing)
    get("/doc/{name}", doc)
    get("/domain/{host}", domain_page)
