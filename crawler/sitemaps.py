"""Step 3b: the sitemaps that robots.txt names, read for more URLs (depth 1, no records)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from .errors import FetchError
from .fetch import Fetcher
from .frontier import Candidate
from .parse import parse_sitemap
from .pools import ParseFailed, ParsePool

log = logging.getLogger(__name__)

MAX_SITEMAPS = 50  # per origin and run: an index of indexes must not become a crawl of its own
MAX_URLS = 50_000  # per sitemap file, as the sitemap protocol allows


async def read_sitemaps(origin: str, sitemaps: Sequence[str], fetcher: Fetcher,
                        parser: ParsePool, admit: Callable[[list[Candidate]], None],
                        may_follow: Callable[[str], bool]) -> tuple[int, int]:
    """Fetch the origin's sitemaps (and the sitemap indexes' children) on the loop, parse
    them in the process pool with entities off, and hand their URLs to `admit`. Returns the
    number of sitemap files asked for and of those that could not be read (an HTTP error, a
    fetch error, a parse failure). Sitemaps of other origins are ignored."""
    failed = 0
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
                failed += 1
                continue
            pages, children = await parser.call(parse_sitemap, body, MAX_URLS)
        except (FetchError, ParseFailed) as exc:
            log.info("sitemap %s: %s", url, exc)
            failed += 1
            continue
        queue.extend(c for c in children if c.startswith(origin))
        candidates = [Candidate(p, 1, url) for p in pages if may_follow(p)]
        if candidates:
            admit(candidates)
    log.debug("read %d sitemap(s) of %s, %d failed", len(seen), origin, failed)
    return len(seen), failed
