"""robots.txt per RFC 9309: a table of cases for the rules, then the fetch end to end.

The table is the crawler's reading of the RFC; `tests/test_robots.py` holds the first unit
tests and `tests/test_e2e_fetch.py` the first end-to-end ones (4xx, 5xx, Crawl-delay, the
user-agent's group, sitemaps).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.robots import ROBOTS_MAX_BYTES, rules_from
from tests.conftest import Site
from tests.site_hostile import DOCS, Doc
from tests.test_e2e_fetch import crawl

UA = "crawler/0.1 (+https://github.com/crawler-project/crawler)"
SITE = "http://site.test"
STAR = "User-agent: *\n"
_PAD = b"# padding to push what follows past the 500 KiB the RFC asks crawlers to read\n"
PADDING = _PAD * (ROBOTS_MAX_BYTES // len(_PAD) + 1)

# (case, status, body, path, allowed)
CASES: list[tuple[str, int, bytes | str, str, bool]] = [
    ("longest_match_disallow", 200, STAR + "Allow: /a\nDisallow: /a/b\n", "/a/b/c", False),
    ("longest_match_allow", 200, STAR + "Disallow: /a\nAllow: /a/b\n", "/a/b/c", True),
    ("allow_wins_a_tie", 200, STAR + "Disallow: /page\nAllow: /page\n", "/page", True),
    ("allow_wins_a_tie_in_any_order", 200, STAR + "Allow: /page\nDisallow: /page\n", "/page",
     True),
    ("dollar_anchors_the_end", 200, STAR + "Disallow: /*.pdf$\n", "/doc/x.pdf", False),
    ("dollar_does_not_match_more", 200, STAR + "Disallow: /*.pdf$\n", "/doc/x.pdf?v=2", True),
    ("star_matches_any_run", 200, STAR + "Disallow: /s*q=\n", "/search?lang=en&q=x", False),
    ("allow_only_the_root", 200, STAR + "Allow: /$\nDisallow: /\n", "/", True),
    ("allow_only_the_root_not_below", 200, STAR + "Allow: /$\nDisallow: /\n", "/x", False),
    ("paths_are_case_sensitive", 200, STAR + "Disallow: /Private\n", "/private", True),
    ("paths_are_case_sensitive_match", 200, STAR + "Disallow: /Private\n", "/Private/x", False),
    ("user_agent_is_case_insensitive", 200, "User-agent: CRAWLER\nDisallow: /\n", "/x", False),
    ("own_group_beats_star", 200, STAR + "Disallow: /\n\nUser-agent: crawler\nAllow: /\n",
     "/x", True),
    ("groups_of_one_agent_merge_first", 200,
     "User-agent: crawler\nDisallow: /x\n\nUser-agent: other\nDisallow: /\n\n"
     "User-agent: crawler\nDisallow: /y\n", "/x", False),
    ("groups_of_one_agent_merge_second", 200,
     "User-agent: crawler\nDisallow: /x\n\nUser-agent: other\nDisallow: /\n\n"
     "User-agent: crawler\nDisallow: /y\n", "/y", False),
    ("agents_sharing_a_group", 200, "User-agent: a\nUser-agent: crawler\nDisallow: /m\n", "/m",
     False),
    ("rules_before_any_user_agent_are_ignored", 200,
     "Disallow: /early\n" + STAR + "Disallow: /late\n", "/early", True),
    ("byte_order_mark", 200, b"\xef\xbb\xbfUser-agent: *\nDisallow: /\n", "/x", False),
    ("crlf_lines", 200, "User-agent: *\r\nDisallow: /crlf\r\n", "/crlf", False),
    ("lone_cr_lines", 200, "User-agent: *\rDisallow: /cr\r", "/cr", False),
    ("comments_are_stripped", 200, "User-agent: * # all\nDisallow: /c # hidden\n", "/c", False),
    ("empty_disallow_allows", 200, STAR + "Disallow:\n", "/anything", True),
    ("percent_escapes_match_their_characters", 200, STAR + "Disallow: /%7Ejoe\n", "/~joe",
     False),
    ("utf8_rules_match_escaped_urls", 200, STAR + "Disallow: /café\n", "/caf%C3%A9", False),
    ("rule_within_500_kib", 200, STAR.encode() + b"Disallow: /early\n" + PADDING, "/early",
     False),
    ("rule_past_500_kib_is_not_read", 200, STAR.encode() + PADDING + b"Disallow: /late\n",
     "/late", True),
    ("not_found_means_no_rules", 404, STAR + "Disallow: /\n", "/x", True),
    ("forbidden_means_no_rules", 403, STAR + "Disallow: /\n", "/x", True),
    ("gone_means_no_rules", 410, "", "/x", True),
    ("too_many_requests_means_disallow_all", 429, "", "/x", False),
    ("server_error_means_disallow_all", 500, "", "/x", False),
    ("unavailable_means_disallow_all", 503, "", "/x", False),
    ("unreachable_means_disallow_all", 0, "", "/x", False),
]


def test_the_table_has_at_least_fifteen_cases() -> None:
    assert len(CASES) >= 15
    assert len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize(("status", "body", "path", "allowed"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_rfc_9309(status: int, body: bytes | str, path: str, allowed: bool) -> None:
    data = body.encode() if isinstance(body, str) else body
    assert rules_from(status, data, UA).allows(SITE + path, UA) is allowed


# --- end to end ---------------------------------------------------------------------------------

DISALLOW_PRIVATE = "User-agent: *\nDisallow: /site/private/\n"


async def test_robots_txt_redirect_is_followed_to_its_rules(site: Site, tmp_path: Path) -> None:
    site.robots.status, site.robots.location = 301, "/doc/moved-robots"
    site.app[DOCS]["moved-robots"] = Doc(200, DISALLOW_PRIVATE)
    _, run = await crawl(site, tmp_path, "/site/")

    assert site.paths()[:2] == ["/robots.txt", "/doc/moved-robots"]
    assert site.count("/site/private/secret") == 0
    assert run.stats["robots_blocked"] >= 1


async def test_robots_txt_redirecting_forever_counts_as_unavailable(
        site: Site, tmp_path: Path) -> None:
    site.robots.status, site.robots.location = 302, "/doc/robots-loop"
    site.app[DOCS]["robots-loop"] = Doc(302, "", {"Location": "/robots.txt"})
    _, run = await crawl(site, tmp_path, "/site/page/1", extra=("--max-depth", "0"))

    hops = [p for p in site.paths() if p in ("/robots.txt", "/doc/robots-loop")]
    assert len(hops) <= 6, "at most five redirects are followed (RFC 9309 2.3.1.2)"
    assert run.page(site.url("/site/page/1"))["status"] == 200, "unavailable: no rules"


async def test_robots_txt_larger_than_500_kib_is_read_up_to_the_limit(
        site: Site, tmp_path: Path) -> None:
    site.robots.status = 200
    site.robots.body = (DISALLOW_PRIVATE + PADDING.decode() + "Disallow: /site/page/\n"
                        + PADDING.decode() * 3)
    _, run = await crawl(site, tmp_path, "/site/", extra=("--max-depth", "1"))

    assert site.count("/site/private/secret") == 0, "the rule within the limit holds"
    assert site.count("/site/page/1") == 1, "the rule past the limit is not read"
    assert run.errors == []


async def test_gzipped_robots_txt_is_decoded(site: Site, tmp_path: Path) -> None:
    site.robots.status, site.robots.body, site.robots.gzip = 200, DISALLOW_PRIVATE, True
    await crawl(site, tmp_path, "/site/")

    assert site.count("/site/private/secret") == 0
    assert site.count("/site/page/1") == 1
