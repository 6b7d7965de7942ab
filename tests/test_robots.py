"""robots.txt: status handling per RFC 9309, rules by protego, one download per origin."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from crawler.robots import ROBOTS_MAX_BYTES, Robots, RobotsRules, origin_of, rules_from

UA = "crawler/0.1 (+https://github.com/crawler-project/crawler)"
SITE = "http://site.test"

RULES = b"""\
User-agent: *
Disallow: /private/
Allow: /private/open/
Disallow: /*.pdf$
Disallow: /search*q=
Crawl-delay: 2.5
Sitemap: http://site.test/sitemap.xml
Sitemap: http://site.test/news-sitemap.xml

User-agent: otherbot
Disallow: /
"""

# (case, path, allowed)
RULE_CASES = [
    ("unlisted_path_allowed", "/", True),
    ("disallowed_prefix", "/private/notes.html", False),
    ("disallow_is_a_prefix_match", "/private/", False),
    ("longest_match_allow_wins", "/private/open/page.html", True),
    ("dollar_anchors_the_end", "/files/report.pdf", False),
    ("dollar_not_matched_past_end", "/files/report.pdf.html", True),
    ("star_matches_any_run", "/search?lang=en&q=boats", False),
    ("star_needs_the_rest", "/search?lang=en", True),
]


@pytest.mark.parametrize(("path", "allowed"), [(p, a) for _, p, a in RULE_CASES],
                         ids=[c for c, _, _ in RULE_CASES])
def test_rules_from_200(path: str, allowed: bool) -> None:
    rules = rules_from(200, RULES, UA)
    assert rules.allows(SITE + path, UA) is allowed


def test_rules_from_200_reads_crawl_delay_and_sitemaps() -> None:
    rules = rules_from(200, RULES, UA)
    assert rules.crawl_delay == 2.5
    assert rules.sitemaps == ("http://site.test/sitemap.xml",
                              "http://site.test/news-sitemap.xml")
    assert not rules.deny_all


def test_rules_apply_per_user_agent() -> None:
    assert not rules_from(200, RULES, "otherbot").allows(SITE + "/", "otherbot")
    assert rules_from(200, RULES, UA).allows(SITE + "/", UA)


def test_no_crawl_delay_is_none() -> None:
    assert rules_from(200, b"User-agent: *\nDisallow: /x\n", UA).crawl_delay is None


def test_byte_order_mark_does_not_hide_the_first_line() -> None:
    rules = rules_from(200, b"\xef\xbb\xbfUser-agent: *\nDisallow: /\n", UA)
    assert not rules.allows(SITE + "/page", UA)


def test_empty_200_allows_all() -> None:
    assert rules_from(200, b"", UA).allows(SITE + "/anything", UA)


def test_binary_garbage_200_does_not_raise() -> None:
    rules = rules_from(200, bytes(range(256)) * 10, UA)
    assert isinstance(rules, RobotsRules)


@pytest.mark.parametrize("status", [404, 403, 410, 401, 400])
def test_client_error_means_no_rules(status: int) -> None:
    rules = rules_from(status, b"User-agent: *\nDisallow: /\n", UA)
    assert rules.allows(SITE + "/private/x", UA)
    assert not rules.deny_all


@pytest.mark.parametrize("status", [429, 500, 503, 0])
def test_server_error_or_unreachable_means_deny_all(status: int) -> None:
    rules = rules_from(status, b"", UA)
    assert rules.deny_all
    assert not rules.allows(SITE + "/", UA)


def test_oversize_body_is_truncated_without_error() -> None:
    head = b"User-agent: *\nDisallow: /early/\n"
    filler = b"# padding line to push the next rule past the limit\n"
    padding = filler * (ROBOTS_MAX_BYTES // len(filler) + 1)
    body = head + padding + b"Disallow: /late/\n"
    assert len(body) > ROBOTS_MAX_BYTES
    rules = rules_from(200, body, UA)
    assert not rules.allows(SITE + "/early/x", UA)
    assert rules.allows(SITE + "/late/x", UA)  # past ROBOTS_MAX_BYTES: not read


def test_origin_keeps_scheme_and_port() -> None:
    assert origin_of("http://a.test:8080/x?y") == "http://a.test:8080"
    assert origin_of("https://a.test/x") == "https://a.test"


# --- the per-run cache --------------------------------------------------------------------


class FakeDownload:
    """The seam: answers robots.txt downloads from a table and counts them."""

    def __init__(self, answers: dict[str, tuple[int, bytes]], delay: float = 0.05) -> None:
        self.answers = answers
        self.delay = delay
        self.calls: list[str] = []

    async def __call__(self, url: str) -> tuple[int, bytes]:
        self.calls.append(url)
        await asyncio.sleep(self.delay)  # long enough for every waiter to pile up
        return self.answers.get(url, (404, b""))


async def test_one_download_per_origin_under_concurrent_calls() -> None:
    download = FakeDownload({SITE + "/robots.txt": (200, b"User-agent: *\nDisallow: /no/\n")})
    robots = Robots(download, UA)
    urls = [f"{SITE}/no/{i}" if i % 2 else f"{SITE}/yes/{i}" for i in range(20)]
    answers = await asyncio.gather(*(robots.allows(u) for u in urls))
    assert download.calls == [SITE + "/robots.txt"]
    assert answers == [i % 2 == 0 for i in range(20)]
    assert robots.fetched == 1
    await robots.close()


async def test_each_origin_is_downloaded_once() -> None:
    download = FakeDownload({})
    robots = Robots(download, UA)
    await asyncio.gather(robots.allows("http://a.test/1"), robots.allows("http://a.test/2"),
                         robots.allows("http://a.test:81/"), robots.allows("https://a.test/"))
    assert sorted(download.calls) == ["http://a.test/robots.txt", "http://a.test:81/robots.txt",
                                      "https://a.test/robots.txt"]
    await robots.close()


async def test_known_is_none_before_and_a_bool_after() -> None:
    download = FakeDownload({SITE + "/robots.txt": (200, b"User-agent: *\nDisallow: /no/\n")})
    robots = Robots(download, UA)
    assert robots.known(SITE + "/yes") is None
    pending = asyncio.ensure_future(robots.allows(SITE + "/yes"))
    await asyncio.sleep(0)
    assert robots.known(SITE + "/yes") is None  # downloading: still unknown
    assert await pending is True
    assert robots.known(SITE + "/yes") is True
    assert robots.known(SITE + "/no/x") is False
    assert robots.known("http://other.test/") is None
    await robots.close()


async def test_download_that_raises_means_deny_all() -> None:
    async def broken(url: str) -> tuple[int, bytes]:
        raise ConnectionResetError("peer went away")

    robots = Robots(broken, UA)
    assert await robots.allows(SITE + "/") is False
    assert robots.known(SITE + "/anything") is False
    await robots.close()


async def test_on_loaded_hook_gets_the_sitemaps() -> None:
    download = FakeDownload({SITE + "/robots.txt": (200, RULES)})
    robots = Robots(download, UA)
    told: list[tuple[str, list[str]]] = []

    def hook(origin: str, sitemaps: Sequence[str]) -> None:
        told.append((origin, list(sitemaps)))

    robots.on_loaded = hook
    await asyncio.gather(robots.allows(SITE + "/a"), robots.allows(SITE + "/b"))
    assert told == [(SITE, ["http://site.test/sitemap.xml",
                            "http://site.test/news-sitemap.xml"])]
    await robots.close()


async def test_rules_reports_crawl_delay() -> None:
    robots = Robots(FakeDownload({SITE + "/robots.txt": (200, RULES)}), UA)
    assert (await robots.rules(SITE + "/")).crawl_delay == 2.5
    await robots.close()


async def test_no_obey_allows_everything_without_downloading() -> None:
    download = FakeDownload({SITE + "/robots.txt": (200, b"User-agent: *\nDisallow: /\n")})
    robots = Robots(download, UA, obey=False)
    assert await robots.allows(SITE + "/private") is True
    assert robots.known(SITE + "/private") is True
    assert download.calls == []
    await robots.close()


async def test_cancelled_waiter_does_not_cancel_the_download() -> None:
    download = FakeDownload({SITE + "/robots.txt": (200, b"User-agent: *\nDisallow: /no/\n")},
                            delay=0.1)
    robots = Robots(download, UA)
    first = asyncio.ensure_future(robots.allows(SITE + "/no/1"))
    await asyncio.sleep(0.01)
    first.cancel()
    assert await robots.allows(SITE + "/no/2") is False
    with pytest.raises(asyncio.CancelledError):
        await first
    assert download.calls == [SITE + "/robots.txt"]
    await robots.close()
