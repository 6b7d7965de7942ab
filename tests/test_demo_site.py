"""The bundled sample site: its server's routes and the integrity of its links."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import aiohttp
import lxml.etree
import lxml.html
import pytest

from crawler.demo.server import SITE, start

BASE = "http://site.test"
ROUTES = {"/old-catalog": "/catalog/", "/missing": None}  # route -> redirect target (None: 404)
SITEMAP_ONLY = {"/news/2025-archive.html"}


@pytest.fixture
async def origin() -> AsyncIterator[str]:
    runner, origin = await start()
    try:
        yield origin
    finally:
        await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _page_url(path: Path) -> str:
    rel = path.relative_to(SITE).as_posix()
    return f"{BASE}/{rel.removesuffix('index.html')}"


def _html_pages() -> list[Path]:
    return sorted(SITE.rglob("*.html"))


def _links(path: Path) -> list[str]:
    """Absolute targets of the page's `<a href>` and `<link href>`, as a browser resolves them
    (through `<base href>`), fragments dropped."""
    tree = lxml.html.fromstring(path.read_bytes())
    base = _page_url(path)
    for href in tree.xpath("//base/@href"):
        base = urljoin(base, str(href))
    out = []
    for href in tree.xpath("//a/@href | //link/@href"):
        out.append(urljoin(base, str(href).strip()).partition("#")[0])
    return out


def _internal_paths(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or f"{parts.scheme}://{parts.netloc}" != BASE:
        return None
    return parts.path or "/"


def _served(path: str) -> bool:
    """Whether the server answers `path` from a file (or a directory's index.html)."""
    target = SITE / path.lstrip("/")
    return target.is_file() or (target / "index.html").is_file()


def test_every_internal_link_resolves_to_a_file_or_a_known_route() -> None:
    broken = [
        (page.relative_to(SITE).as_posix(), link)
        for page in _html_pages()
        for link in _links(page)
        if (path := _internal_paths(link)) is not None and not _served(path) and path not in ROUTES
    ]
    assert broken == []


def test_external_links_only_go_to_example_org_and_other_schemes_are_harmless() -> None:
    hosts = {
        urlsplit(link).hostname
        for page in _html_pages()
        for link in _links(page)
        if urlsplit(link).scheme in ("http", "https") and _internal_paths(link) is None
    }
    assert hosts == {"example.org"}
    schemes = {urlsplit(link).scheme for page in _html_pages() for link in _links(page)}
    assert schemes == {"http", "https", "mailto", "tel"}


def test_every_page_is_reachable_from_the_home_page_or_the_sitemap() -> None:
    by_path = {urlsplit(_page_url(p)).path: p for p in _html_pages()}
    seen, todo = {"/"}, ["/"]
    while todo:
        page = by_path.get(todo.pop())
        if page is None:
            continue
        for link in _links(page):
            path = _internal_paths(link)
            if path is None:
                continue
            path = ROUTES.get(path) or path
            if path + "/" in by_path:
                path += "/"
            if path not in seen:
                seen.add(path)
                todo.append(path)
    assert set(by_path) - seen == SITEMAP_ONLY
    assert len(by_path) >= 40


def test_the_iso_8859_1_page_declares_its_charset_in_html_only() -> None:
    raw = (SITE / "archive" / "harbor-log-1887.html").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert b'<meta charset="iso-8859-1">' in raw
    assert "Ødegård" in raw.decode("iso-8859-1")


async def test_the_server_serves_the_home_page(origin: str, http: aiohttp.ClientSession) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", origin)
    async with http.get(origin + "/") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "Harbor Town Public Library" in await response.text()
    async with http.head(origin + "/catalog/fiction.html") as response:
        assert response.status == 200


async def test_robots_and_sitemap_carry_the_served_origin(
    origin: str, http: aiohttp.ClientSession
) -> None:
    async with http.get(origin + "/robots.txt") as response:
        robots = await response.text()
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert "Disallow: /private/" in robots
    assert f"Sitemap: {origin}/sitemap.xml" in robots and "{{" not in robots
    async with http.get(origin + "/sitemap.xml") as response:
        assert response.status == 200
        sitemap = lxml.etree.fromstring(await response.read())
    locs = [str(loc) for loc in sitemap.xpath("//*[local-name()='loc']/text()")]
    assert locs and all(loc.startswith(origin + "/") for loc in locs)
    assert SITEMAP_ONLY.issubset(urlsplit(loc).path for loc in locs)
    assert all(_served(urlsplit(loc).path) for loc in locs)


async def test_redirects_and_not_found(origin: str, http: aiohttp.ClientSession) -> None:
    async with http.get(origin + "/old-catalog", allow_redirects=False) as response:
        assert response.status == 301
        assert response.headers["Location"] == "/catalog/"
    async with http.get(origin + "/visit", allow_redirects=False) as response:
        assert response.status == 301
        assert response.headers["Location"] == "/visit/"
    for path in ("/missing", "/no-such-page.html", "/private/nothing.html"):
        async with http.get(origin + path, allow_redirects=False) as response:
            assert (path, response.status) == (path, 404)


async def test_the_latin_1_page_is_served_without_a_charset_parameter(
    origin: str, http: aiohttp.ClientSession
) -> None:
    async with http.get(origin + "/archive/harbor-log-1887.html") as response:
        assert response.headers["Content-Type"] == "text/html"
        assert "Ødegård" in (await response.read()).decode("iso-8859-1")


async def test_conditional_requests_get_304(origin: str, http: aiohttp.ClientSession) -> None:
    url = origin + "/news/roof-repair.html"
    async with http.get(url) as response:
        etag, modified = response.headers["ETag"], response.headers["Last-Modified"]
    async with http.get(url, headers={"If-None-Match": etag}) as response:
        assert response.status == 304
    async with http.get(url, headers={"If-Modified-Since": modified}) as response:
        assert response.status == 304
    async with http.get(url, headers={"If-None-Match": '"other"'}) as response:
        assert response.status == 200


async def test_every_internal_link_answers_on_the_live_server(
    origin: str, http: aiohttp.ClientSession
) -> None:
    paths = {
        path
        for page in _html_pages()
        for link in _links(page)
        if (path := _internal_paths(link)) is not None
    }
    for path in sorted(paths):
        async with http.get(origin + path) as response:  # redirects followed
            expected = 404 if ROUTES.get(path, "") is None else 200
            assert (path, response.status) == (path, expected)
