"""The real-markup corpus: nginx serves Django's documentation on loopback."""

from __future__ import annotations

import asyncio
import fcntl
import functools
import json
import os
import urllib.request
from collections import deque
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import pytest

from tests.conftest import (
    DOC_ROOT,
    DocSite,
    config_file,
    fast,
    load_run,
    seeds_file,
    start_crawl,
)


def test_doc_site_serves_the_documentation(doc_site: DocSite) -> None:
    start = doc_site.log_size()
    with urllib.request.urlopen(doc_site.url("/index.html"), timeout=10) as answer:
        body = answer.read()
    assert answer.status == 200
    assert body == (doc_site.root / "index.html").read_bytes()
    assert doc_site.requests_since(start) == [("/index.html", 200)]


# --- crawling the documentation (issue 11) ----------------------------------------------------


class _Links(HTMLParser):
    """The hrefs of <a> and <area>, and <base href>, read by the standard library's parser."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.base: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if href is None:
            return
        if tag in ("a", "area"):
            self.hrefs.append(href)
        elif tag == "base" and self.base is None:
            self.base = href


def _file_of(doc_site: DocSite, url: str) -> Path | None:
    """The file nginx answers `url` with (a directory gives its index.html), if it is HTML."""
    path = doc_site.root / unquote(urlsplit(url).path).lstrip("/")
    if path.is_dir():
        path = path / "index.html"
    return path if path.suffix == ".html" and path.is_file() else None


def _parse(page: Path) -> tuple[str | None, list[str]]:
    links = _Links()
    links.feed(page.read_text(encoding="utf-8", errors="replace"))
    return links.base, links.hrefs


@functools.cache
def _links_table(shared: Path) -> dict[str, tuple[str | None, list[str]]]:
    """<base href> and the hrefs of every HTML file of the documentation, by file path.

    The standard library's parser takes ten CPU seconds over the whole corpus, and three
    tests walk it: the first process of the run to get here parses it, under a lock, into a
    file in `shared`, which the others (xdist's) then read.
    """
    table = shared / "doc-links.json"
    with (shared / "doc-links.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not table.exists():
            parsed = {str(p): _parse(p) for p in sorted(DOC_ROOT.rglob("*.html"))}
            partial = table.with_suffix(".partial")
            partial.write_text(json.dumps(parsed), encoding="utf-8")
            partial.rename(table)
    return {path: (base, hrefs)
            for path, (base, hrefs) in json.loads(table.read_text(encoding="utf-8")).items()}


def _walk(doc_site: DocSite, start: str, max_depth: int | None, max_links: int | None,
          shared: Path) -> dict[str, int]:
    """Breadth-first over the files on disk: URL (no fragment) -> its depth from `start`.
    With `max_links`, a page's first that many distinct http(s) targets only (contract 4b)."""
    table = _links_table(shared)
    origin = urlsplit(start)[:2]
    depths = {start: 0}
    queue = deque([start])
    while queue:
        url = queue.popleft()
        depth = depths[url]
        page = _file_of(doc_site, url)
        if page is None or (max_depth is not None and depth >= max_depth):
            continue
        found = table.get(str(page))
        base_href, hrefs = found if found is not None else _parse(page)
        base = urljoin(url, base_href) if base_href else url
        targets = dict.fromkeys(t for t in (urldefrag(urljoin(base, h.strip()))[0]
                                            for h in hrefs)
                                if urlsplit(t).scheme in ("http", "https"))
        for target in list(targets)[:max_links]:
            if urlsplit(target)[:2] == origin and target not in depths:
                depths[target] = depth + 1
                queue.append(target)
    return depths


@pytest.fixture(scope="session")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every xdist process of this run shares (without xdist, the run's own)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _key(url: str) -> str:
    # one spelling per resource on both sides: escapes decoded, fragment gone
    parts = urlsplit(url)
    return unquote(parts.path) + (f"?{unquote(parts.query)}" if parts.query else "")


async def _crawl_and_walk(doc_site: DocSite, tmp_path: Path, shared: Path,
                          max_depth: int | None, max_links: int | None,
                          *args: str | Path) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The crawl's page records, and the walk of the files the test holds them to: the walk
    runs in a thread while the crawl runs (they share nothing but the files)."""
    seeds = seeds_file(tmp_path, doc_site.url("/index.html"))
    crawl = await start_crawl(seeds, *fast(tmp_path / "out", timeout=10), "--per-host", "16",
                              *args)
    walk = await asyncio.to_thread(_walk, doc_site, doc_site.url("/index.html"), max_depth,
                                   max_links, shared)
    result = await crawl.wait(timeout=600)
    assert result.returncode == 0, str(result)
    return load_run(tmp_path / "out", "seeds").pages, walk


@pytest.mark.slow
async def test_every_reachable_page_of_the_documentation_is_recorded_once(
        doc_site: DocSite, tmp_path: Path, shared: Path) -> None:
    pages, walk = await _crawl_and_walk(doc_site, tmp_path, shared, None, None)
    keys = [_key(p["url"]) for p in pages]
    assert len(keys) == len(set(keys)), [k for k in set(keys) if keys.count(k) > 1][:10]
    assert set(keys) == {_key(u) for u in walk}
    html = [p for p in pages if p["content_type"] == "text/html" and p["status"] == 200]
    assert len(html) > 600 and all(p["title"] for p in html)


@pytest.mark.slow
async def test_a_depth_limited_crawl_is_the_breadth_first_walk_of_the_files(
        doc_site: DocSite, tmp_path: Path, shared: Path) -> None:
    pages, walk = await _crawl_and_walk(doc_site, tmp_path, shared, 2, None, "--max-depth", "2")
    found = {_key(p["url"]): p["depth"] for p in pages}
    assert len(found) == len(pages)
    assert found == {_key(u): d for u, d in walk.items()}


@pytest.mark.slow
async def test_the_links_cap_counts_the_distinct_targets_of_a_real_index(
        doc_site: DocSite, tmp_path: Path, shared: Path) -> None:
    # genindex.html: 4 339 anchors to 176 pages; releases/security.html: 970 anchors to 489
    config = config_file(tmp_path, "max_links_per_page = 300\n")
    pages, walk = await _crawl_and_walk(doc_site, tmp_path, shared, 2, 300,
                                        "--max-depth", "2", "--config", config)
    assert {_key(p["url"]): p["depth"] for p in pages} == {_key(u): d for u, d in walk.items()}
