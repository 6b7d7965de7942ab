"""The bundled sample site, served on 127.0.0.1 for `make demo` and tests."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

from aiohttp import web

__all__ = ["SITE", "SiteFile", "load_site", "make_app", "start"]

SITE = Path(__file__).with_name("site")
"""The sample site's files: a small public library's web site."""

_TEMPLATED = {"/robots.txt", "/sitemap.xml"}  # absolute URLs there need the served origin
_TYPES = {
    ".html": "text/html",
    ".txt": "text/plain",
    ".xml": "application/xml",
    ".css": "text/css",
}


@dataclass(frozen=True, slots=True)
class SiteFile:
    """One file of the site as served: its bytes, its Content-Type and its mtime."""

    body: bytes
    content_type: str
    mtime: float


def load_site(root: Path = SITE) -> dict[str, SiteFile]:
    """Read the site into memory, keyed by URL path (`/about/` for `about/index.html`).

    Forty small files: holding them in memory keeps file I/O off the event loop and makes
    the answers (and their ETags) the same for every request.
    """
    files: dict[str, SiteFile] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(root).as_posix()
        body = path.read_bytes()
        kind = _TYPES.get(path.suffix, "application/octet-stream")
        if kind.startswith("text/"):
            try:
                body.decode("utf-8")
                kind += "; charset=utf-8"
            except UnicodeDecodeError:
                pass  # e.g. the ISO-8859-1 page: its charset is in its meta tag only
        entry = SiteFile(body, kind, path.stat().st_mtime)
        files["/" + rel] = entry
        if path.name == "index.html":
            files["/" + rel.removesuffix("index.html")] = entry
    return files


def make_app(files: dict[str, SiteFile] | None = None) -> web.Application:
    """The aiohttp application: the site's files, plus a moved page and a missing one."""
    site = files if files is not None else load_site()
    app = web.Application()
    app.router.add_get("/old-catalog", _old_catalog)
    app.router.add_get("/missing", _missing)
    app.router.add_get("/{path:.*}", _Files(site).serve)
    return app


async def start(port: int = 0) -> tuple[web.AppRunner, str]:
    """Serve the site on 127.0.0.1 (`port` 0: any free port).

    Returns the runner, which the caller stops with `await runner.cleanup()`, and the
    origin, `http://127.0.0.1:PORT`.
    """
    files = await asyncio.to_thread(load_site)
    runner = web.AppRunner(make_app(files), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    bound = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{bound}"


async def _old_catalog(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently("/catalog/")


async def _missing(request: web.Request) -> web.StreamResponse:
    raise web.HTTPNotFound(text="This page was removed.")


class _Files:
    """GET and HEAD of the in-memory files, with ETag and Last-Modified validators."""

    def __init__(self, files: dict[str, SiteFile]) -> None:
        self._files = files

    async def serve(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        entry = self._files.get(path)
        if entry is None:
            if path + "/" in self._files:
                raise web.HTTPMovedPermanently(path + "/")
            raise web.HTTPNotFound(text="No such page.")
        body = entry.body
        if path in _TEMPLATED:
            origin = f"{request.scheme}://{request.host}"
            body = body.replace(b"{{ORIGIN}}", origin.encode("ascii"))
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        headers = {
            "Content-Type": entry.content_type,
            "ETag": etag,
            "Last-Modified": formatdate(entry.mtime, usegmt=True),
        }
        if _not_modified(request, etag, entry.mtime):
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers=headers)


def _not_modified(request: web.Request, etag: str, mtime: float) -> bool:
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return etag in tags or "*" in tags
    if_modified_since = request.headers.get("If-Modified-Since")
    if if_modified_since is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since).timestamp()
    except (TypeError, ValueError):
        return False
    return int(mtime) <= since
