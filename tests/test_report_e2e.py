"""The report of a real crawl of the test site: its numbers against stats.json, and the page
as headless Chromium renders it (charts drawn, no console error, nothing fetched)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lxml.html
import pytest

from tests.browser import Browser
from tests.conftest import Site, fast, load_run, run_crawl, seeds_file

CRAWL_REPORT = Path(sys.executable).parent / "crawl-report"
# `CRAWLER_SCREENSHOT=docs/report.png` keeps the screenshot (`make screenshot` does that)
SCREENSHOT_TO = os.environ.get("CRAWLER_SCREENSHOT")
CHARTS = ("pages over time", "status codes", "elapsed_ms histogram", "pages per depth",
          "errors by kind", "top hosts", "pools busy time", "loop lag")
# pages, HTTP errors, and one error record of each kind the site can cause quickly
SEEDS = ("/site/", "/status/404", "/status/500", "/redirect/2", "/gzip", "/binary",
         "/cond/etag", "/slow/3", "/reset", "/gzip-corrupt", "/loop/a")


@dataclass
class Report:
    run_dir: Path
    stats: dict[str, Any]
    pages: list[dict[str, Any]]
    html: Path
    stdout: str


async def crawl_and_report(site: Site, tmp_path: Path) -> Report:
    out = tmp_path / "out"
    seeds = seeds_file(tmp_path, *(site.url(p) for p in SEEDS))
    crawl = await run_crawl(seeds, *fast(out, timeout=1))
    assert crawl.returncode == 0, str(crawl)
    run = load_run(out, "seeds")
    done = await run_crawl(out / "seeds", command=[str(CRAWL_REPORT)])
    assert done.returncode == 0, str(done)
    html = run.dir / "report.html"
    assert f"report: {html.resolve()}" in done.stdout
    return Report(run.dir, run.stats, run.pages, html, done.stdout)


def _charts(tree: Any) -> dict[str, dict[str, Any]]:
    """Every chart's bars as {name: value}, read from their tooltips."""
    charts = {}
    for svg in tree.iter("svg"):
        bars = {}
        for title in svg.iter("title"):
            name, _, value = title.text_content().rpartition(": ")
            bars[name] = json.loads(value)
        charts[svg.get("aria-label")] = bars
    return charts


def _tables(tree: Any) -> dict[str, dict[str, Any]]:
    return {
        section.get("data-key"): {
            row[0].text_content(): json.loads(row[1].text_content())
            for row in section.iter("tr")
        }
        for section in tree.xpath("//section[@data-key]")
    }


async def test_report_numbers_match_stats_json(site: Site, tmp_path: Path) -> None:
    report = await crawl_and_report(site, tmp_path)
    stats = report.stats
    tree = lxml.html.parse(str(report.html)).getroot()

    cards = {div.get("data-key"): json.loads(div.find("b").text_content())
             for div in tree.xpath("//div[@class='card']")}
    for key in ("pages", "errors", "bytes", "duration_s", "pages_per_s"):
        assert cards[key] == stats[key], key
    assert stats["pages"] == len(report.pages) and stats["pages"] > 10

    charts = _charts(tree)
    assert set(charts) == set(CHARTS)
    assert charts["status codes"] == stats["status_counts"]
    assert charts["errors by kind"] == stats["errors_by_kind"]
    assert set(stats["errors_by_kind"]) == {"timeout", "connection", "content", "redirects"}
    assert charts["loop lag"] == stats["loop_lag_ms"]
    assert charts["pools busy time"] == {
        "wall clock": stats["duration_s"],
        "process pool": stats["process_pool"]["busy_s"],
        "thread pool": stats["thread_pool"]["busy_s"],
    }
    depths = Counter(str(p["depth"]) for p in report.pages)
    assert charts["pages per depth"] == dict(depths)
    assert charts["top hosts"] == {"127.0.0.1": stats["pages"]}
    for chart in ("pages over time", "elapsed_ms histogram"):
        assert sum(charts[chart].values()) == stats["pages"], chart

    tables = _tables(tree)
    assert tables["changes"] == {k: stats[k] for k in ("new", "changed", "unchanged", "gone")}
    assert tables["crawl"] == {k: stats[k] for k in (
        "robots_blocked", "out_of_scope", "duplicates", "retries", "frontier_left")}
    for key in ("process_pool", "thread_pool"):
        assert tables[key] == stats[key], key

    # the terminal summary carries the same headline figures
    for key, label in (("pages", "pages"), ("errors", "errors"), ("pages_per_s", "pages/s")):
        line = next(ln for ln in report.stdout.splitlines() if f" {label} " in ln)
        assert f" {stats[key]} " in line, line


@pytest.mark.slow
async def test_report_renders_in_headless_chromium(site: Site, tmp_path: Path) -> None:
    report = await crawl_and_report(site, tmp_path)
    url = report.html.resolve().as_uri()

    async with Browser() as browser, browser.page() as page:
        await page.open(url)
        drawn = await page.evaluate("""
            [...document.querySelectorAll('svg')].map(svg => {
                const box = svg.getBoundingClientRect();
                const marks = [...svg.querySelectorAll('rect.bar')]
                    .filter(r => r.getBBox().width > 0 && r.getBBox().height > 0);
                return {label: svg.getAttribute('aria-label'), width: box.width,
                        height: box.height, marks: marks.length};
            })""")
        png = await page.screenshot(width=1280)
        errors = page.console_errors()
        requested = page.requested_urls()

    assert sorted(chart["label"] for chart in drawn) == sorted(CHARTS)
    for chart in drawn:
        assert chart["width"] > 100 and chart["height"] > 20, chart
        assert chart["marks"] >= 1, f"no bar drawn in {chart['label']}"
    assert errors == []
    assert requested == [url], "the report fetched something besides itself"

    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width = int.from_bytes(png[16:20], "big")
    height = int.from_bytes(png[20:24], "big")
    assert width == 1280 and height > 800
    (tmp_path / "report.png").write_bytes(png)
    if SCREENSHOT_TO:
        shutil.copyfile(tmp_path / "report.png", SCREENSHOT_TO)
