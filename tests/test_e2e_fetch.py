"""End to end: robots.txt, redirects, retries, timeouts, size limits and encodings."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import pytest

from tests.conftest import (
    Result,
    Run,
    Site,
    assert_no_traceback,
    config_file,
    fast,
    load_checked_run,
    run_crawl,
    seeds_file,
    wait_until,
)
from tests.site import (
    COUNTERS,
    CP1251_TITLE,
    GZIP_TITLE,
    SITE_PAGES,
    SJIS_TITLE,
    binary_body,
    gzip_body,
)

SITE_PATHS = ["/site/", *(f"/site/page/{n}" for n in range(1, SITE_PAGES + 1)),
              "/site/private/secret"]
DISALLOW_PRIVATE = "User-agent: *\nDisallow: /site/private/\n"


async def crawl(site: Site, tmp_path: Path, *paths: str, fetch_timeout: float = 5, retries: int = 0,
                extra: tuple[str, ...] = (), expect: int = 0) -> tuple[Result, Run]:
    """Crawl from the seeds `paths` of the site and load the run it wrote."""
    out = tmp_path / "out"
    seeds = seeds_file(tmp_path, *(site.url(p) for p in paths))
    result = await run_crawl(seeds, *fast(out, timeout=fetch_timeout, retries=retries), *extra)
    assert result.returncode == expect, str(result)
    assert_no_traceback(result)
    return result, load_checked_run(out)


# --- robots.txt -----------------------------------------------------------------------------


async def test_robots_disallow_blocks_the_path_and_is_fetched_once_first(
        site: Site, tmp_path: Path) -> None:
    site.robots.status, site.robots.body = 200, DISALLOW_PRIVATE
    _, run = await crawl(site, tmp_path, "/site/")

    assert site.paths()[0] == "/robots.txt", f"first request: {site.paths()[:3]}"
    assert site.count("/robots.txt") == 1
    assert not [p for p in site.paths() if p.startswith("/site/private/")]
    assert sorted(run.urls()) == sorted(site.url(p) for p in SITE_PATHS[:-1])
    assert run.stats["robots_blocked"] >= 1
    secret = [link for link in run.links if link["to"] == site.url("/site/private/secret")]
    assert secret and not any(link["followed"] for link in secret)
    assert site.url("/robots.txt") not in run.urls(), "robots.txt gets no page record"


@pytest.mark.parametrize("status", [404, 403])
async def test_robots_txt_4xx_allows_everything(site: Site, tmp_path: Path, status: int) -> None:
    site.robots.status, site.robots.body = status, "User-agent: *\nDisallow: /\n"
    _, run = await crawl(site, tmp_path, "/site/")

    assert site.paths()[0] == "/robots.txt" and site.count("/robots.txt") == 1
    assert site.count("/site/private/secret") == 1
    assert sorted(run.urls()) == sorted(site.url(p) for p in SITE_PATHS)


async def test_robots_txt_500_disallows_everything(site: Site, tmp_path: Path) -> None:
    site.robots.status, site.robots.body = 500, "oops"
    _, run = await crawl(site, tmp_path, "/site/", "/site/page/1")

    assert site.paths() == ["/robots.txt"], f"only robots.txt may be asked: {site.paths()}"
    assert run.pages == []
    assert run.stats["robots_blocked"] >= 1


async def test_no_robots_ignores_robots_txt(site: Site, tmp_path: Path) -> None:
    site.robots.status, site.robots.body = 200, "User-agent: *\nDisallow: /\n"
    _, run = await crawl(site, tmp_path, "/site/", extra=("--no-robots",))

    assert sorted(run.urls()) == sorted(site.url(p) for p in SITE_PATHS)
    assert site.url("/robots.txt") not in run.urls()
    assert run.stats["robots_blocked"] == 0


def assert_spaced(starts: list[float], pace: float) -> None:
    """Request starts `pace` apart, judged by their span, not their least gap: the times are
    the test server's handler starts, and a handler that starts late on a loaded machine
    shortens the next gap by what it lengthened its own. The span must hold one pace fewer than
    the gaps (unspaced, these requests would span a few hundredths of a second)."""
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert starts[-1] - starts[0] >= (len(gaps) - 1) * pace, f"gaps between starts: {gaps}"


async def test_robots_crawl_delay_spaces_request_starts(site: Site, tmp_path: Path) -> None:
    site.robots.status, site.robots.body = 200, "User-agent: *\nCrawl-delay: 0.5\n"
    _, run = await crawl(site, tmp_path, "/site/page/4", extra=("--max-depth", "1"))

    assert len(run.pages) == 4
    starts = [h.at for h in site.log if h.path_qs != "/robots.txt"]
    assert_spaced(starts, 0.5)


async def test_delay_spaces_request_starts_to_one_host(site: Site, tmp_path: Path) -> None:
    _, run = await crawl(site, tmp_path, "/site/page/4", extra=("--max-depth", "1",
                                                                "--delay", "0.3"))

    assert len(run.pages) == 4
    starts = [h.at for h in site.log]
    assert_spaced(starts, 0.3)


async def test_per_host_caps_requests_in_flight(site: Site, tmp_path: Path) -> None:
    seeds = [f"/slow/0.3?i={i}" for i in range(6)]
    _, run = await crawl(site, tmp_path, *seeds, extra=("--per-host", "2"))

    assert len(run.pages) == 6
    assert site.app[COUNTERS]["slow_max_in_flight"] == 2


async def test_user_agent_is_sent_and_picks_its_robots_group(site: Site, tmp_path: Path) -> None:
    agent = "E2EBot/1.0 (+http://127.0.0.1/bot)"
    site.robots.status = 200
    site.robots.body = "User-agent: E2EBot\nDisallow: /site/page/\n\nUser-agent: *\nAllow: /\n"
    _, run = await crawl(site, tmp_path, "/site/", extra=("--user-agent", agent))

    assert {h.headers.get("user-agent") for h in site.log} == {agent}
    assert not [p for p in site.paths() if p.startswith("/site/page/")]
    assert sorted(run.urls()) == [site.url("/site/"), site.url("/site/private/secret")]


async def test_sitemaps_named_in_robots_txt_are_read_safely(site: Site, tmp_path: Path) -> None:
    site.robots.status = 200
    site.robots.body = (f"User-agent: *\nAllow: /\nSitemap: {site.url('/sitemap.xml')}\n"
                        f"Sitemap: {site.url('/sitemap-evil.xml')}\n")
    _, run = await crawl(site, tmp_path, "/sm/start")

    found = run.page(site.url("/sm/only-in-sitemap"))
    assert (found["depth"], found["referrer"]) == (1, site.url("/sitemap.xml"))
    for path in ("/robots.txt", "/sitemap.xml", "/sitemap-evil.xml"):
        assert site.url(path) not in run.urls(), f"{path} gets no page record"
    assert site.count("/xxe-canary") == 0, "an external entity was resolved"
    assert not [p for p in site.paths() if "aaaa" in p], "an entity was expanded"


async def test_a_sitemap_that_cannot_be_read_is_counted_and_the_others_still_read(
        site: Site, tmp_path: Path) -> None:
    site.robots.status = 200
    site.robots.body = (f"User-agent: *\nAllow: /\nSitemap: {site.url('/sitemap-gone.xml')}\n"
                        f"Sitemap: {site.url('/sitemap.xml')}\n")
    _, run = await crawl(site, tmp_path, "/sm/start")

    assert site.count("/sitemap-gone.xml") == 1, "the missing sitemap was asked for"
    assert run.stats["sitemap_errors"] == 1, "its failure is counted, not swallowed"
    found = run.page(site.url("/sm/only-in-sitemap"))
    assert (found["depth"], found["referrer"]) == (1, site.url("/sitemap.xml"))


# --- redirects ------------------------------------------------------------------------------


async def test_redirect_chain_gives_one_record_from_start_to_end(
        site: Site, tmp_path: Path) -> None:
    _, run = await crawl(site, tmp_path, "/redirect/3")

    assert len(run.pages) == 1, run.urls()
    record = run.page(site.url("/redirect/3"))
    assert record["final_url"] == site.url("/redirect/0")
    assert (record["status"], record["title"], record["location"]) == (200, "End of the chain",
                                                                       None)
    for n in range(4):
        assert site.count(f"/redirect/{n}") == 1
    assert run.errors == []


async def test_ten_redirect_hops_are_followed(site: Site, tmp_path: Path) -> None:
    _, run = await crawl(site, tmp_path, "/redirect/10")

    record = run.page(site.url("/redirect/10"))
    assert (record["status"], record["final_url"]) == (200, site.url("/redirect/0"))


async def test_eleven_redirect_hops_are_an_error_record(site: Site, tmp_path: Path) -> None:
    _, run = await crawl(site, tmp_path, "/redirect/11")

    assert run.pages == []
    error = run.error(site.url("/redirect/11"))
    assert error["kind"] == "redirects"
    assert site.count("/redirect/0") == 0, "an 11th hop was followed"


async def test_redirect_loop_is_an_error_record(site: Site, tmp_path: Path) -> None:
    _, run = await crawl(site, tmp_path, "/loop/a")

    assert run.pages == []
    assert run.error(site.url("/loop/a"))["kind"] == "redirects"
    assert site.count("/loop/a") + site.count("/loop/b") <= 12


async def test_redirect_out_of_scope_is_not_followed(site: Site, tmp_path: Path) -> None:
    _, run = await crawl(site, tmp_path, "/redirect-out")

    record = run.page(site.url("/redirect-out"))
    assert record["status"] == 302
    assert record["location"] == f"http://localhost:{site.port}/site/"
    assert record["final_url"] == site.url("/redirect-out")
    assert site.hosts() == {f"127.0.0.1:{site.port}"}, f"hosts asked: {site.hosts()}"
    assert site.count("/site/") == 0
    assert run.errors == []


async def test_redirect_into_a_robots_disallowed_path_is_not_followed(
        site: Site, tmp_path: Path) -> None:
    site.robots.status, site.robots.body = 200, DISALLOW_PRIVATE
    _, run = await crawl(site, tmp_path, "/redirect-private-path")

    record = run.page(site.url("/redirect-private-path"))
    assert record["status"] == 301
    assert record["location"] == site.url("/site/private/after-redirect"), "location is absolute"
    assert site.count("/site/private/after-redirect") == 0
    assert len(run.pages) == 1


# --- retries --------------------------------------------------------------------------------


async def test_503_twice_then_200_with_two_retries_ends_200(site: Site, tmp_path: Path) -> None:
    _, run = await crawl(site, tmp_path, "/retry/a/2", retries=2)

    record = run.page(site.url("/retry/a/2"))
    assert (record["status"], record["attempts"]) == (200, 3)
    assert site.count("/retry/a/2") == 3
    assert run.stats["retries"] >= 2


async def test_503_past_the_retries_is_a_page_record_with_503(site: Site, tmp_path: Path) -> None:
    _, run = await crawl(site, tmp_path, "/retry/b/2", retries=1)

    record = run.page(site.url("/retry/b/2"))
    assert (record["status"], record["attempts"]) == (503, 2)
    assert run.errors == [], "an HTTP error status is a page record, not an error record"
    assert site.count("/retry/b/2") == 2


async def test_429_retry_after_is_honoured(site: Site, tmp_path: Path) -> None:
    _, run = await crawl(site, tmp_path, "/retry-after/k", retries=2)

    record = run.page(site.url("/retry-after/k"))
    assert (record["status"], record["attempts"]) == (200, 2)
    first, second = site.requests_for("/retry-after/k")
    assert second.at - first.at >= 0.95, f"retried after {second.at - first.at:.2f}s"


async def test_retry_after_as_an_http_date_is_honoured(site: Site, tmp_path: Path) -> None:
    _, run = await crawl(site, tmp_path, "/retry-after-date/k", retries=2)

    assert run.page(site.url("/retry-after-date/k"))["status"] == 200
    first, second = site.requests_for("/retry-after-date/k")
    assert second.at - first.at >= 0.9, f"retried after {second.at - first.at:.2f}s"


# --- timeouts and broken connections --------------------------------------------------------


async def test_hanging_server_is_a_timeout_error(site: Site, tmp_path: Path) -> None:
    _, run = await crawl(site, tmp_path, "/hang", fetch_timeout=1)

    error = run.error(site.url("/hang"))
    assert (error["kind"], error["attempts"], error["depth"]) == ("timeout", 1, 0)
    assert error["referrer"] is None
    assert run.pages == []
    assert site.count("/hang") == 1


async def test_timeout_covers_the_whole_body_not_each_read(site: Site, tmp_path: Path) -> None:
    _, run = await crawl(site, tmp_path, "/drip/3", fetch_timeout=1)

    assert run.error(site.url("/drip/3"))["kind"] == "timeout"
    assert run.pages == []


@pytest.mark.parametrize("path", ["/reset", "/short"])
async def test_broken_connection_is_a_connection_error(site: Site, tmp_path: Path,
                                                       path: str) -> None:
    _, run = await crawl(site, tmp_path, path, retries=1)

    error = run.error(site.url(path))
    assert (error["kind"], error["attempts"]) == ("connection", 2), "retried once"
    assert site.count(path) == 2
    assert run.pages == []


# --- size limits ----------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "?length=1"], ids=["chunked", "content-length"])
async def test_oversized_body_is_abandoned_early(site: Site, tmp_path: Path, query: str) -> None:
    big, small = f"/big/5000000{query}", f"/big/50000{query}"
    _, run = await crawl(site, tmp_path, big, small, extra=("--max-bytes", "100000"))

    error = run.error(site.url(big))
    assert (error["kind"], error["attempts"]) == ("too_large", 1)
    assert site.count(big) == 1
    assert run.page(site.url(small))["bytes"] == 50000, "a body under the limit is kept whole"
    streams = [s for s in site.big_streams if s.size == 5_000_000]
    await wait_until(lambda: all(s.ended for s in streams), timeout=5, what="the stream to end")
    assert len(streams) == 1
    assert not streams[0].finished, "the crawler read the whole oversized body"
    assert streams[0].written < 2_500_000, f"{streams[0].written} bytes written before the end"


async def test_decoded_size_counts_against_max_bytes(site: Site, tmp_path: Path) -> None:
    _, run = await crawl(site, tmp_path, "/gzip-bomb", extra=("--max-bytes", "1000000"))

    assert run.error(site.url("/gzip-bomb"))["kind"] == "too_large"
    assert run.pages == []


# --- encodings ------------------------------------------------------------------------------


async def test_charset_from_the_content_type_header_decodes_the_title(
        site: Site, tmp_path: Path) -> None:
    _, run = await crawl(site, tmp_path, "/charset/cp1251")

    record = run.page(site.url("/charset/cp1251"))
    assert record["title"] == CP1251_TITLE
    assert (record["content_type"], record["lang"]) == ("text/html", "ru")


async def test_charset_from_a_meta_tag_decodes_the_title(site: Site, tmp_path: Path) -> None:
    _, run = await crawl(site, tmp_path, "/charset/meta-sjis")

    record = run.page(site.url("/charset/meta-sjis"))
    assert record["title"] == SJIS_TITLE
    assert record["lang"] == "ja"


async def test_binary_labelled_html_is_a_page_with_null_html_fields(
        site: Site, tmp_path: Path) -> None:
    _, run = await crawl(site, tmp_path, "/binary")

    record = run.page(site.url("/binary"))
    body = binary_body()
    assert (record["status"], record["content_type"]) == (200, "text/html")
    assert record["bytes"] == len(body)
    assert record["sha256"] == hashlib.sha256(body).hexdigest()
    for key in ("title", "description", "lang", "canonical", "words", "simhash"):
        assert record[key] is None, f"{key}={record[key]!r} for binary bytes"
    assert record["links"] in (None, 0)
    assert run.errors == []


async def test_gzip_body_is_counted_and_hashed_after_decoding(
        site: Site, tmp_path: Path) -> None:
    _, run = await crawl(site, tmp_path, "/gzip")

    record = run.page(site.url("/gzip"))
    body = gzip_body()
    assert record["bytes"] == len(body)
    assert record["sha256"] == hashlib.sha256(body).hexdigest()
    assert record["title"] == GZIP_TITLE


@pytest.mark.parametrize("path", ["/gzip-corrupt", "/encoding-unknown"])
async def test_corrupt_or_unknown_content_encoding_is_a_content_error(
        site: Site, tmp_path: Path, path: str) -> None:
    _, run = await crawl(site, tmp_path, path)

    assert run.error(site.url(path))["kind"] == "content"
    assert run.pages == []


# --- address rules --------------------------------------------------------------------------


async def test_private_networks_deny_blocks_even_a_loopback_seed(
        site: Site, tmp_path: Path) -> None:
    config = config_file(tmp_path, 'private_networks = "deny"\n')
    _, run = await crawl(site, tmp_path, "/site/", extra=("--config", str(config)), expect=4)

    assert site.log == [], f"requests to a denied address: {site.paths()}"
    assert run.pages == []
    assert run.error(site.url("/site/"))["kind"] == "other"
