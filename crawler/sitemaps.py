"""Beside step 5: the sitemaps that robots.txt names, read for more URLs (depth 1, no records)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from .errors import FetchError
from .fetch import Fetcher
from .frontier import Candidate
from .pools import ParseFailed, ParsePool
from .stats import Stats

log = logging.getLogger(__name__)

MAX_SITEMAPS = 50  # per origin and run: an index of indexes must not become a crawl of its own
MAX_URLS = 50_000  # per sitemap file, as the sitemap protocol allows


async def read_sitemaps(origin: str, sitemaps: Sequence[str], fetcher: Fetcher,
                        parser: ParsePool, admit: Callable[[list[Candidate]], None],
                        may_follow: Callable[[str], bool], stats: Stats) -> int:
    """Fetch the origin's sitemaps (and the sitemap indexes' children) on the loop, parse
    them in the process pool with entities off, and hand their URLs to `admit`. Each that
    cannot be read (an HTTP error, a fetch error, a parse failure) counts in
    `sitemap_errors`. Returns the number of sitemap files asked for. Sitemaps of other
    origins are ignored."""
    queue = [u for u in sitemaps if u.startswith(origin)]
    seen: set[str] = set()
    while queue and len(seen) < MAX_SITEMAPS:
        url = queue.pop(0)
        if url in seen:
            continue
        seen.add(url)
        try:
            status, body = await fetcher.document(url)
            if status != 200:
                log.info("sitemap %s: HTTP %d", url, status)
                stats.count("sitemap_errors")
                continue
            pages, children = await parser.call(_parse_sitemap, body, MAX_URLS)
        except (FetchError, ParseFailed) as exc:
            log.info("sitemap %s: %s", url, exc)
            stats.count("sitemap_errors")
            continue
        queue.extend(c for c in children if c.startswith(origin))
        candidates = [Candidate(p, 1, url) for p in pages if may_follow(p)]
        if candidates:
            admit(candidates)
    log.debug("read %d sitemap(s) of %s", len(seen), origin)
    return len(seen)


def _parse_sitemap(body: bytes, max_urls: int) -> tuple[list[str], list[str]]:
    """`parse.parse_sitemap`, imported in the parse process that runs it: the main process
    never imports the parser (lxml, bs4, numpy)."""
    from .parse import parse_sitemap

    return parse_sitemap(body, max_urls)
