"""The hostile web, end to end: odd redirects, crawler traps, giant pages.

Earlier cases live in `tests/test_e2e_fetch.py` (redirect chains, loops, out-of-scope and
robots-disallowed targets) and `tests/test_e2e_crawl.py` (session IDs, URLs over 2048
characters, --max-pages-per-host).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import Site
from tests.test_e2e_fetch import crawl

# --- redirects --------------------------------------------------------------------------------


async def test_odd_redirects_each_get_the_record_the_contract_asks_for(
        site: Site, tmp_path: Path) -> None:
    elsewhere = {
        "ftp": f"ftp://127.0.0.1:{site.port}/file.txt",
        "mailto": "mailto:someone@example.com",
        "javascript": "javascript:alert(1)",
        "data": "data:text/html,<p>hi</p>",
    }
    not_followed = {name: f"/redirect-to?to={quote(to, safe=':/@')}"
                    for name, to in elsewhere.items()}
    relative = "/redirect-to?to=../landing/relative"
    network_path = f"/redirect-to?to=//127.0.0.1:{site.port}/landing/network-path"
    _, run = await crawl(site, tmp_path, *not_followed.values(), "/redirect-no-location",
                         "/redirect-self", "/redirect-raw", relative, network_path)

    for name, path in not_followed.items():
        record = run.page(site.url(path))
        assert (record["status"], record["location"]) == (302, elsewhere[name]), name
        assert record["final_url"] == site.url(path)
    bare = run.page(site.url("/redirect-no-location"))
    assert (bare["status"], bare["location"], bare["final_url"]) == (
        302, None, site.url("/redirect-no-location")), "a 3xx without Location is a page"
    assert run.error(site.url("/redirect-self"))["kind"] == "redirects"
    assert site.count("/redirect-self") == 1, "a self-redirect is not asked again"
    raw = run.page(site.url("/redirect-raw"))
    assert (raw["status"], raw["final_url"]) == (200, site.url("/landing/caf%C3%A9")), \
        "a raw UTF-8 Location is read as UTF-8 and percent-encoded"
    assert run.page(site.url(relative))["final_url"] == site.url("/landing/relative")
    assert run.page(site.url(network_path))["final_url"] == site.url("/landing/network-path")
    assert not [p for p in site.paths() if p.startswith("/file.txt")]


# --- traps ------------------------------------------------------------------------------------


async def test_endless_calendar_stops_at_the_per_host_budget(site: Site, tmp_path: Path) -> None:
    _, run = await crawl(site, tmp_path, "/calendar?month=2026-06",
                              extra=("--max-pages-per-host", "15"))

    assert len(run.pages) == 15
    assert len([p for p in site.paths() if p.startswith("/calendar")]) == 15
    assert run.stats["stop_reason"] == "exhausted", "the budget ends the run, not a limit"


async def test_repeated_path_segments_are_a_trap_not_followed(site: Site, tmp_path: Path) -> None:
    _, run = await crawl(site, tmp_path, "/repeat/")

    assert sorted(run.urls()) == [site.url("/repeat/"), site.url("/repeat/a/b/"),
                                  site.url("/repeat/a/b/a/b/")]
    trap = site.url("/repeat/a/b/a/b/a/b/")
    assert [link["followed"] for link in run.links if link["to"] == trap] == [False]
    assert site.count("/repeat/a/b/a/b/a/b/") == 0


# --- giant pages ------------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_page_of_100000_links_keeps_the_cap_and_counts_the_rest(
        site: Site, tmp_path: Path) -> None:
    _, run = await crawl(site, tmp_path, "/links/100000", extra=("--max-depth", "0"))

    record = run.page(site.url("/links/100000"))
    assert record["links"] == 100_000, "links counts every outlink extracted"
    assert len(run.links) == 5000, "max_links_per_page link records are kept"
    assert run.stats.get("links_dropped") == 95_000
    assert site.paths() == ["/robots.txt", "/links/100000"]


async def test_a_page_of_15000_links_admits_each_target_once_and_reports_the_lag(
        site: Site, tmp_path: Path) -> None:
    """The engine reads a page's links in chunks, the loop turning between them (CANDIDATE_
    CHUNK): the chunks together still admit each target once, in document order."""
    _, run = await crawl(site, tmp_path, "/links-thrice/15000", extra=("--max-pages", "1"))

    record = run.page(site.url("/links-thrice/15000"))
    assert record["links"] == 15_000
    assert len(run.links) == 15_000, "5 000 distinct targets: under max_links_per_page"
    followed = [link["to"] for link in run.links if link["followed"]]
    assert followed == [site.url(f"/links-target/{i}") for i in range(5000)]
    assert run.stats["frontier_left"] == 5000, "every target queued, none fetched"
    # the lag around the page is reported (how long it is, the bench measures: no time here)
    assert set(run.stats["loop_lag_ms"]) >= {"p50", "p99", "max"}


async def test_100000_nested_tags_are_parsed(site: Site, tmp_path: Path) -> None:
    _, run = await crawl(site, tmp_path, "/nested/100000", extra=("--max-depth", "0"))

    record = run.page(site.url("/nested/100000"))
    assert record["title"] == "Nested 100000"
    assert record["words"] is not None and record["words"] >= 2, "the text above the nest"
    assert record["links"] in (1, 2), "the link above; the one below past libxml2's depth"
    assert run.errors == []
