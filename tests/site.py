"""A hostile local website for the end-to-end tests: one route per misbehaviour.

Every request is appended to `app[LOG]` before it is answered, so a test can assert on what
the crawler asked for, in which order and when. The site only ever listens on 127.0.0.1; the
links it hands out to `localhost` are there to be refused, never followed.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import gzip
import html
import random
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from aiohttp import web

from tests import site_hostile

__all__ = [
    "BIG",
    "COUNTERS",
    "LOG",
    "ROBOTS",
    "SITE_PAGES",
    "BigStream",
    "Hit",
    "RobotsConfig",
    "binary_body",
    "gzip_body",
    "make_site",
    "site_children",
    "site_parent",
]

# /site/page/1 .. /site/page/SITE_PAGES form a binary tree under /site/ (see site_children)
SITE_PAGES = 8

CP1251_TITLE = "Привет, мир"
SJIS_TITLE = "こんにちは世界"
GZIP_TITLE = "Gzipped page"


class Hit(NamedTuple):
    """One request as the server saw it; `path_qs` is the raw target, before any decoding."""

    method: str
    path_qs: str
    headers: dict[str, str]  # lower-cased names
    at: float  # time.monotonic() of this process when the request arrived


@dataclass
class RobotsConfig:
    """What `/robots.txt` answers: `status` with `body` (the default is a plain 404)."""

    status: int = 404
    body: str = ""
    hits: int = 0
    location: str | None = None  # a Location header, to make it a redirect
    gzip: bool = False  # sent with Content-Encoding: gzip


@dataclass
class BigStream:
    """How far one streamed `/big/{n}` answer got before it ended or the client left."""

    size: int
    written: int = 0
    finished: bool = False  # the whole body was written
    ended: bool = False  # the handler is over, one way or the other
    error: str | None = None


@dataclass
class _Gate:
    """Released on shutdown so that `/hang` handlers never outlive the test server."""

    released: asyncio.Event = field(default_factory=asyncio.Event)


LOG = web.AppKey("log", list[Hit])
ROBOTS = web.AppKey("robots", RobotsConfig)
COUNTERS = web.AppKey("counters", dict[str, int])
BIG = web.AppKey("big", list[BigStream])
_GATE = web.AppKey("gate", _Gate)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def site_children(n: int) -> list[int]:
    """Child pages of page n in the tree (n = 0 is the index `/site/`)."""
    kids = [1, 2] if n == 0 else [2 * n + 1, 2 * n + 2]
    return [k for k in kids if k <= SITE_PAGES]


def site_parent(n: int) -> int:
    """The page whose links first admit page n (0 is the index)."""
    return 0 if n <= 2 else (n - 1) // 2


def binary_body() -> bytes:
    """Deterministic noise, NUL bytes included, that no decoder takes for text."""
    return b"\x00\x01\x02\xff\xfe\x00" + random.Random(7).randbytes(4096)


def gzip_body() -> bytes:
    """The decoded body of `/gzip` (what the crawler must hash and count)."""
    words = " ".join(f"word{i}" for i in range(300))
    return _html(GZIP_TITLE, f"<p>{words}</p>").encode()


def _html(title: str, body: str, *, head: str = "", lang: str | None = "en") -> str:
    lang_attr = f' lang="{lang}"' if lang else ""
    return (
        f"<!DOCTYPE html>\n<html{lang_attr}><head><meta charset=\"utf-8\">{head}"
        f"<title>{html.escape(title)}</title></head>\n<body>\n{body}\n</body></html>\n"
    )


def _page(title: str, body: str = "") -> web.Response:
    return web.Response(text=_html(title, body or f"<p>{title}</p>"), content_type="text/html")


def _port(request: web.Request) -> int:
    """The port the server listens on, whatever the Host header says."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    assert sockname, "no socket behind this request"
    return int(sockname[1])


def _words(n: int) -> str:
    """Visible text that differs from page to page, so no two pages are near duplicates."""
    rng = random.Random(n)
    return " ".join(f"w{rng.randrange(10**6)}" for _ in range(40))


# --- the generated site ---------------------------------------------------------------------


async def site_index(request: web.Request) -> web.Response:
    port = _port(request)
    origin = f"http://127.0.0.1:{port}"
    links = [
        '<a href="page/1">  Page one  </a>',
        '<a href="page/1#top">page one, at its top</a>',
        '<a href="/site/./page/2">page two, dot segment</a>',
        '<a href="/site/x/../page/1">page one, dot-dot segment</a>',
        f'<a href="HTTP://127.0.0.1:{port}/site/page/2">page two, upper-case scheme</a>',
        f'<a href="{origin}/site/page/2#frag">page two, absolute with a fragment</a>',
        '<a href="page/1">Page one again</a>',
        '<a href="mailto:webmaster@example.com">mail us</a>',
        '<a href="javascript:void(0)">script</a>',
        f'<a href="ftp://127.0.0.1:{port}/site/file.txt">ftp</a>',
        f'<a href="http://localhost:{port}/site/page/1">the same page on another host</a>',
        '<a href="/site/private/secret">private</a>',
        '<a rel="nofollow" href="page/1">page one, nofollow</a>',
        '<a href="/site/#top">this page: no outlink</a>',
        '<a href="page/2">' + "long anchor text " * 30 + "</a>",
    ]
    head = (
        '<meta name="description" content="The index of a small generated site.">'
        f'<link rel="canonical" href="{origin}/site/">'
    )
    body = "<h1>Index</h1>\n<p>" + _words(0) + "</p>\n" + "\n".join(links)
    return web.Response(text=_html("Site index", body, head=head), content_type="text/html")


async def site_page(request: web.Request) -> web.Response:
    n = int(request.match_info["n"])
    if not 1 <= n <= SITE_PAGES:
        raise web.HTTPNotFound()
    port = _port(request)
    parent = site_parent(n)
    links = ['<a href="/site/">home</a>', f'<a href="#self">page {n}, itself</a>']
    links.append(
        '<a href="/site/#top">parent</a>' if parent == 0
        else f'<a href="../page/{parent}#section">parent</a>'
    )
    for sibling in site_children(parent):
        links.append(f'<a href="/site/./page/{sibling}">sibling {sibling}</a>')
    for i, child in enumerate(site_children(n)):
        forms = [f"./{child}", f"http://127.0.0.1:{port}/site/page/{child}#c"]
        links.append(f'<a href="{forms[i % 2]}">child {child}</a>')
        links.append(f'<a href="/site/x/y/../../page/{child}">child {child} again</a>')
    links.append(f'<a href="http://localhost:{port}/site/page/{n}">elsewhere</a>')
    head = f'<meta name="description" content="Description of page {n}">'
    h1s = "".join(f"<h1>Heading {i}</h1>" for i in range(n % 3))
    body = f"{h1s}\n<p>{_words(n)}</p>\n" + "\n".join(links)
    return web.Response(text=_html(f"Page {n}", body, head=head), content_type="text/html")


async def site_private(request: web.Request) -> web.Response:
    return _page("Secret " + request.match_info["name"])


async def root(request: web.Request) -> web.Response:
    return _page("Root", "<p>the root page, with no links</p>")


# --- robots.txt and sitemaps ----------------------------------------------------------------


async def robots_txt(request: web.Request) -> web.Response:
    config = request.app[ROBOTS]
    config.hits += 1
    headers = {"Content-Type": "text/plain"}
    if config.location is not None:
        headers["Location"] = config.location
    body = config.body.encode()
    if config.gzip:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    return web.Response(status=config.status, body=body, headers=headers)


async def sitemap(request: web.Request) -> web.Response:
    port = _port(request)
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
        f"  <url><loc>http://127.0.0.1:{port}/sm/only-in-sitemap</loc></url>\n"
        "</urlset>\n"
    )
    return web.Response(text=xml, content_type="application/xml")


async def sitemap_evil(request: web.Request) -> web.Response:
    """External and exponential entities: a safe reader expands neither."""
    port = _port(request)
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<!DOCTYPE urlset [\n"
        f'  <!ENTITY ext SYSTEM "http://127.0.0.1:{port}/xxe-canary">\n'
        '  <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">\n'
        '  <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">\n'
        '  <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">\n'
        '  <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">\n'
        '  <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">\n'
        '  <!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">\n'
        "]>\n"
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
        f"  <url><loc>http://127.0.0.1:{port}/sm/&ext;</loc></url>\n"
        f"  <url><loc>http://127.0.0.1:{port}/sm/&f;</loc></url>\n"
        "</urlset>\n"
    )
    return web.Response(text=xml, content_type="application/xml")


async def sitemap_pages(request: web.Request) -> web.Response:
    return _page("Sitemap area " + request.match_info["name"], "<p>no links here</p>")


async def xxe_canary(request: web.Request) -> web.Response:
    return web.Response(text="you should not have come here", content_type="text/plain")


# --- statuses, retries, redirects -----------------------------------------------------------


async def status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    return web.Response(status=code, text=_html(f"Status {code}", f"<p>status {code}</p>"),
                        content_type="text/html")


def _count(request: web.Request, key: str) -> int:
    counters = request.app[COUNTERS]
    counters[key] = counters.get(key, 0) + 1
    return counters[key]


async def retry(request: web.Request) -> web.Response:
    """503 for the first n requests of this key, then a page."""
    key, n = request.match_info["key"], int(request.match_info["n"])
    if _count(request, f"retry/{key}") <= n:
        return web.Response(status=503, text="try again later", content_type="text/plain")
    return _page(f"Retried {key}")


async def retry_after(request: web.Request) -> web.Response:
    """429 with `Retry-After: 1` once, then a page."""
    key = request.match_info["key"]
    if _count(request, f"retry-after/{key}") == 1:
        return web.Response(status=429, text="slow down", headers={"Retry-After": "1"},
                            content_type="text/plain")
    return _page(f"Patient {key}")


async def retry_after_date(request: web.Request) -> web.Response:
    """429 with a `Retry-After` HTTP date two seconds ahead once, then a page."""
    key = request.match_info["key"]
    if _count(request, f"retry-after-date/{key}") == 1:
        when = email.utils.formatdate(time.time() + 2, usegmt=True)
        return web.Response(status=429, text="slow down", headers={"Retry-After": when},
                            content_type="text/plain")
    return _page(f"Patient until a date {key}")


async def redirect(request: web.Request) -> web.Response:
    """`/redirect/n` -> `/redirect/n-1` ... -> `/redirect/0`, a page."""
    n = int(request.match_info["n"])
    if n <= 0:
        return _page("End of the chain")
    raise web.HTTPFound(f"/redirect/{n - 1}")


async def loop(request: web.Request) -> web.Response:
    other = "b" if request.match_info["name"] == "a" else "a"
    raise web.HTTPFound(f"/loop/{other}")


async def redirect_out(request: web.Request) -> web.Response:
    raise web.HTTPFound(f"http://localhost:{_port(request)}/site/")


async def redirect_private_path(request: web.Request) -> web.Response:
    raise web.HTTPMovedPermanently("/site/private/after-redirect")


# --- slow, broken and oversized answers -----------------------------------------------------


async def slow(request: web.Request) -> web.Response:
    """Sleeps, then answers; counts how many slow answers were in flight at once."""
    seconds = float(request.match_info["seconds"])
    counters = request.app[COUNTERS]
    counters["slow_in_flight"] = counters.get("slow_in_flight", 0) + 1
    counters["slow_max_in_flight"] = max(counters.get("slow_max_in_flight", 0),
                                         counters["slow_in_flight"])
    try:
        await asyncio.sleep(seconds)
    finally:
        counters["slow_in_flight"] -= 1
    return _page(f"Slow {seconds}")


async def hang(request: web.Request) -> web.Response:
    """Never answers; the test server cancels it when the client gives up or at shutdown."""
    await request.app[_GATE].released.wait()
    return _page("Too late")


async def drip(request: web.Request) -> web.StreamResponse:
    """A 100-byte body trickled over `seconds`: every read is quick, the whole is slow."""
    seconds = float(request.match_info["seconds"])
    resp = web.StreamResponse(headers={"Content-Type": "text/html"})
    resp.content_length = 100
    await resp.prepare(request)
    for _ in range(10):
        await resp.write(b"<p>drip</p"[:10])
        await asyncio.sleep(seconds / 10)
    return resp


def _break_after_10_of_1000_bytes(reset: bool) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/html"})
        resp.content_length = 1000
        await resp.prepare(request)
        await resp.write(b"<html><bo")
        await asyncio.sleep(0.05)
        transport = request.transport
        assert transport is not None
        if reset:
            # SO_LINGER 0: close() sends RST instead of FIN, a true connection reset
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()
        return resp

    return handler


async def big(request: web.Request) -> web.StreamResponse:
    """n bytes of HTML in 16 KiB chunks, a little at a time; `?length=1` declares the size.

    The handler notes how much it wrote before the client went away: a crawler that abandons
    an oversized body early leaves the stream unfinished.
    """
    size = int(request.match_info["n"])
    state = BigStream(size)
    request.app[BIG].append(state)
    resp = web.StreamResponse(headers={"Content-Type": "text/html"})
    if request.query.get("length"):
        resp.content_length = size
    else:
        resp.enable_chunked_encoding()
    try:
        await resp.prepare(request)
        chunk = b"<p>" + b"x" * (16 * 1024 - 7) + b"</p>\n"
        while state.written < size:
            part = chunk[: size - state.written]
            await resp.write(part)
            state.written += len(part)
            await asyncio.sleep(0.005)
        await resp.write_eof()
        state.finished = True
    except (ConnectionError, asyncio.CancelledError) as exc:
        state.error = type(exc).__name__
        raise
    finally:
        state.ended = True
    return resp


# --- encodings ------------------------------------------------------------------------------


async def charset_cp1251(request: web.Request) -> web.Response:
    text = _html(CP1251_TITLE, "<p>Съешь же ещё этих мягких французских булок, да выпей чаю</p>",
                 lang="ru").replace('<meta charset="utf-8">', "")
    return web.Response(body=text.encode("cp1251"),
                        headers={"Content-Type": "text/html; charset=windows-1251"})


async def charset_meta_sjis(request: web.Request) -> web.Response:
    text = _html(SJIS_TITLE, "<p>日本語のテキストです。いろはにほへと、ちりぬるを。</p>",
                 lang="ja").replace('<meta charset="utf-8">', '<meta charset="Shift_JIS">')
    return web.Response(body=text.encode("shift_jis"), headers={"Content-Type": "text/html"})


async def binary(request: web.Request) -> web.Response:
    return web.Response(body=binary_body(), headers={"Content-Type": "text/html"})


async def gzipped(request: web.Request) -> web.Response:
    return web.Response(body=gzip.compress(gzip_body()),
                        headers={"Content-Type": "text/html", "Content-Encoding": "gzip"})


@functools.cache
def _gzip_bomb() -> bytes:
    return gzip.compress(b"<p>" + b"\0" * 20_000_000, compresslevel=9)


async def gzip_bomb(request: web.Request) -> web.Response:
    """About 20 KB on the wire, 20 MB once decoded."""
    return web.Response(body=_gzip_bomb(),
                        headers={"Content-Type": "text/html", "Content-Encoding": "gzip"})


async def gzip_corrupt(request: web.Request) -> web.Response:
    body = gzip.compress(gzip_body())
    body = body[:10] + bytes(b ^ 0x5A for b in body[10:60]) + body[60:]
    return web.Response(body=body,
                        headers={"Content-Type": "text/html", "Content-Encoding": "gzip"})


async def encoding_unknown(request: web.Request) -> web.Response:
    return web.Response(body=_html("Bogus", "<p>plain</p>").encode(),
                        headers={"Content-Type": "text/html",
                                 "Content-Encoding": "x-bogus-squeeze"})


# --- normalization, duplicates, recrawl -----------------------------------------------------


async def norm_index(request: web.Request) -> web.Response:
    long_path = "/norm/long-" + "a" * 2100
    links = [
        "/norm/target?a=1&b=2",
        "/norm/target?a=1&PHPSESSID=zz9&b=2",
        "/norm/target;jsessionid=ABC123?a=1&b=2",
        "/norm/target?a=1&b=2&SessionId=q",
        "/norm/target?a=1&sid=7&b=2#x",
        "/norm/target?b=2&a=1",
        "/norm/%7Euser",
        "/norm/%7euser",
        "/norm/~user",
        long_path,
    ]
    body = "\n".join(f'<a href="{html.escape(href)}">link</a>' for href in links)
    return _page("Normalization", body)


async def norm_leaf(request: web.Request) -> web.Response:
    return _page("Leaf " + request.match_info["name"], "<p>nothing to follow</p>")


async def dup_index(request: web.Request) -> web.Response:
    body = f"<p>{_words(1000)}</p>\n<a href='/dup/a'>a</a>\n<a href='/dup/b'>b</a>"
    return _page("Duplicates", body)


async def dup_page(request: web.Request) -> web.Response:
    text = " ".join(f"same{i}" for i in range(120))
    return _page("Twin " + request.match_info["name"], f"<p>{text}</p>")


async def cond_etag(request: web.Request) -> web.Response:
    if request.headers.get("If-None-Match") == '"v1"':
        return web.Response(status=304, headers={"ETag": '"v1"'})
    return web.Response(text=_html("Tagged", "<p>validated by an entity tag</p>"),
                        content_type="text/html", headers={"ETag": '"v1"'})


async def set_cookies(request: web.Request) -> web.Response:
    """Two Set-Cookie headers (which cannot be joined with ", ") and a name in mixed case."""
    response = web.Response(text=_html("Cookies", "<p>two cookies</p>"),
                            content_type="text/html")
    response.headers.add("Set-Cookie", "a=1; Expires=Wed, 09 Jun 2027 10:18:14 GMT")
    response.headers.add("Set-Cookie", "b=2; Path=/")
    response.headers["X-Mixed-Case"] = "kept"
    return response


async def cond_last_modified(request: web.Request) -> web.Response:
    stamp = "Tue, 01 Sep 2026 10:00:00 GMT"
    if request.headers.get("If-Modified-Since") == stamp:
        return web.Response(status=304, headers={"Last-Modified": stamp})
    return web.Response(text=_html("Dated", "<p>validated by a date</p>"),
                        content_type="text/html", headers={"Last-Modified": stamp})


async def cond_changing(request: web.Request) -> web.Response:
    n = _count(request, "changing")
    return _page(f"Changing {n}", f"<p>version {n} {_words(n + 500)}</p>")


async def cond_vanishing(request: web.Request) -> web.Response:
    if _count(request, "vanishing") > 1:
        raise web.HTTPNotFound()
    return _page("Here today")


async def to_port(request: web.Request) -> web.Response:
    """A page that links to the same host on another port."""
    port = int(request.match_info["port"])
    return _page("Another port", f'<a href="http://127.0.0.1:{port}/site/page/8">there</a>')


async def plugin_page(request: web.Request) -> web.Response:
    """`/plugin/n` has n h1 headings; `/plugin/crash` and `/plugin/hang` trip e2e_plugins."""
    name = request.match_info["name"]
    if name in ("crash", "hang"):
        return _page(name, f"<p>E2E-{name.upper()}-ME</p>")
    n = int(name)
    return _page(f"Plugin {n}", "".join(f"<h1>h{i}</h1>" for i in range(n)) + f"<p>{n}</p>")


# --- the application ------------------------------------------------------------------------


@web.middleware
async def _log_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    headers = {k.lower(): v for k, v in request.headers.items()}
    request.app[LOG].append(Hit(request.method, request.raw_path, headers, time.monotonic()))
    return await handler(request)


async def _release_hangs(app: web.Application) -> None:
    app[_GATE].released.set()


def make_site() -> web.Application:
    """A fresh site with an empty log, a 404 robots.txt and zeroed counters."""
    app = web.Application(middlewares=[_log_requests])
    app[LOG] = []
    app[ROBOTS] = RobotsConfig()
    app[COUNTERS] = {}
    app[BIG] = []
    app[_GATE] = _Gate()
    app.on_shutdown.append(_release_hangs)
    get = app.router.add_get
    get("/", root)
    get("/robots.txt", robots_txt)
    get("/sitemap.xml", sitemap)
    get("/sitemap-evil.xml", sitemap_evil)
    get("/sm/{name}", sitemap_pages)
    get("/xxe-canary", xxe_canary)
    get("/site/", site_index)
    get("/site/page/{n:\\d+}", site_page)
    get("/site/private/{name}", site_private)
    get("/status/{code:\\d+}", status)
    get("/retry/{key}/{n:\\d+}", retry)
    get("/retry-after/{key}", retry_after)
    get("/retry-after-date/{key}", retry_after_date)
    get("/redirect/{n:\\d+}", redirect)
    get("/loop/{name:[ab]}", loop)
    get("/redirect-out", redirect_out)
    get("/redirect-private-path", redirect_private_path)
    get("/slow/{seconds}", slow)
    get("/hang", hang)
    get("/drip/{seconds}", drip)
    get("/reset", _break_after_10_of_1000_bytes(reset=True))
    get("/short", _break_after_10_of_1000_bytes(reset=False))
    get("/big/{n:\\d+}", big)
    get("/charset/cp1251", charset_cp1251)
    get("/charset/meta-sjis", charset_meta_sjis)
    get("/binary", binary)
    get("/gzip", gzipped)
    get("/gzip-corrupt", gzip_corrupt)
    get("/gzip-bomb", gzip_bomb)
    get("/encoding-unknown", encoding_unknown)
    get("/norm/", norm_index)
    get("/norm/{name}", norm_leaf)
    get("/dup/", dup_index)
    get("/dup/{name}", dup_page)
    get("/cond/etag", cond_etag)
    get("/headers/set-cookie", set_cookies)
    get("/cond/last-modified", cond_last_modified)
    get("/cond/changing", cond_changing)
    get("/cond/vanishing", cond_vanishing)
    get("/plugin/{name}", plugin_page)
    get("/to-port/{port:\\d+}", to_port)
    site_hostile.install(app)
    return app
