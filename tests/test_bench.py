"""`make bench` cannot rot: its site generator, its process-tree measure, and a small full run.

The full run leaves Scrapy out: installing it needs PyPI, and no test may leave the loopback
network. `make bench` runs it every time.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import site
from bench.contenders import CONTENDERS, cpu_between
from tests.conftest import ROOT

HREF = re.compile(r'<a href="([^"]*)"')


def _pages(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.html"))}


def test_site_is_the_same_for_the_same_seed_and_port(tmp_path: Path) -> None:
    one = site.generate(tmp_path / "a", 40, port=8000, seed=7)
    two = site.generate(tmp_path / "b", 40, port=8000, seed=7)
    other = site.generate(tmp_path / "c", 40, port=8000, seed=8)
    assert one == two
    assert _pages(tmp_path / "a") == _pages(tmp_path / "b")
    assert _pages(tmp_path / "a") != _pages(tmp_path / "c")
    assert other.expected != () and len(other.expected) == 40


def test_site_pages_have_the_promised_shape(tmp_path: Path) -> None:
    manifest = site.generate(tmp_path, 60, port=8123, seed=1)
    assert (tmp_path / "robots.txt").read_text() == "User-agent: *\nDisallow: /private/\n"
    assert manifest.expected[0] == "/" and len(set(manifest.expected)) == 60
    assert not any(p.startswith("/private/") for p in manifest.expected)
    assert site.Manifest.load(tmp_path) == manifest
    hrefs: list[str] = []
    for name, body in _pages(tmp_path).items():
        found = HREF.findall(body.decode())
        assert 15_000 <= len(body) <= 60_000, name
        assert 20 <= len(found) <= 60, name
        hrefs += found
    assert any(h.startswith("http://127.0.0.1:8123/") for h in hrefs)  # absolute, on the site
    assert any(h.startswith("../") for h in hrefs)  # dot segments
    assert any(re.fullmatch(r"p\d{5}\.html", h) for h in hrefs)  # relative
    assert any("#" in h and not h.startswith("#") for h in hrefs)  # fragments
    assert any(h.startswith("#") for h in hrefs)
    assert any(h.startswith(("https://www.example.com/", "mailto:")) for h in hrefs)
    assert any(h.startswith("/private/") for h in hrefs)  # links into the disallowed part


def test_link_heavy_profile_shares_a_navigation_bar_and_repeats_links(tmp_path: Path) -> None:
    manifest = site.generate(tmp_path, 300, port=8123, seed=1, profile="links")
    assert len(manifest.expected) == 300 and manifest.profile == "links"
    assert site.Manifest.load(tmp_path) == manifest
    pages = _pages(tmp_path)
    navs = {re.search(r"<nav>.*?</nav>", body.decode()).group(0)  # type: ignore[union-attr]
            for body in pages.values()}
    assert len(navs) == 1 and len(HREF.findall(navs.pop())) == 20
    counts = [len(HREF.findall(body.decode())) for body in pages.values()]
    assert 58 <= sum(counts) / len(counts) <= 70  # about 64 links a page
    repeated = sum(len(set(h)) < len(h) for h in
                   (HREF.findall(b.decode().split("</nav>", 1)[1]) for b in pages.values()))
    assert repeated > len(pages) / 2  # most bodies repeat some of their own links
    site.generate(tmp_path / "mixed", 300, port=8123, seed=1)
    assert _vocabulary(tmp_path / "mixed") > 5 * _vocabulary(tmp_path, skip="mixed")


def _vocabulary(root: Path, skip: str = "") -> int:
    """Distinct words in the visible text of a generated site's pages."""
    words: set[str] = set()
    for name, body in _pages(root).items():
        if not (skip and name.startswith(skip + "/")):
            words.update(re.findall(r"[a-z]{2,}", re.sub(r"<[^>]+>", " ", body.decode())))
    return len(words)


def test_hub_page_names_the_site_s_pages_three_times_each(tmp_path: Path) -> None:
    manifest = site.generate(tmp_path, 60, 8080, profile="links")
    start = site.generate_hub(tmp_path, manifest, 90)
    html = (tmp_path / start.strip("/") / "index.html").read_text(encoding="utf-8")
    hrefs = re.findall(r'<a href="([^"]+)"', html)
    assert len(hrefs) == 90
    targets = [h.partition("#")[0] for h in hrefs]
    assert len(set(targets)) == 30 and set(targets) <= set(manifest.expected) - {"/"}
    assert sum("#" in h for h in hrefs) == 30


def test_frontier_site_leads_to_the_number_of_urls_asked(tmp_path: Path) -> None:
    start, fetch = site.generate_frontier(tmp_path, 1000)
    folder = tmp_path / site.FRONTIER_DIR
    hubs = HREF.findall((folder / "index.html").read_text())
    leaves = [h for hub in hubs for h in HREF.findall((folder / hub).read_text())]
    assert start == "/frontier/" and fetch == len(hubs) + 1
    assert len(leaves) == len(set(leaves)) == 1000
    assert not any((tmp_path / leaf.lstrip("/")).exists() for leaf in leaves)


GRANDCHILD = """
import subprocess, sys
child = "import time; block = b'x' * (150 * 2**20); time.sleep(1.5)"
subprocess.run([sys.executable, "-c", child], check=True)
"""
ORPHAN = """
import subprocess, sys
burn = "import time; sum(i * i for i in range(3_000_000)); time.sleep(0.5)"
subprocess.Popen([sys.executable, "-c", burn])
"""


def _measure(tmp_path: Path, code: str) -> dict[str, float]:
    out = tmp_path / "m.json"
    done = subprocess.run([sys.executable, "-m", "bench.measure", str(out), "--", sys.executable,
                           "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result: dict[str, float] = json.loads(out.read_text())
    return result


def test_measure_counts_the_memory_of_grandchildren(tmp_path: Path) -> None:
    result = _measure(tmp_path, GRANDCHILD)
    assert result["peak_rss_mb"] >= 150
    assert result["max_processes"] == 2


def test_measure_reaps_orphans_and_counts_their_cpu(tmp_path: Path) -> None:
    result = _measure(tmp_path, ORPHAN)
    # the orphan's three million squares are CPU time the parent alone never spent
    assert result["cpu_s"] > 0.1


BUSY_THEN_IDLE = """
import time
end = time.monotonic() + 1.5
while time.monotonic() < end:
    pass
time.sleep(1.5)
"""


def test_measure_samples_the_trees_cpu_so_a_stretch_is_judged_alone(tmp_path: Path) -> None:
    result = _measure(tmp_path, BUSY_THEN_IDLE)
    series: list[list[float]] = result["cpu_series"]  # type: ignore[assignment]
    assert len(series) > 20 and series == sorted(series)
    start, end = series[0][0], series[-1][0]
    busy, idle = cpu_between(series, start, start + 1.2), cpu_between(series, end - 1.2, end)
    assert busy is not None and idle is not None
    assert idle < 10 < busy  # spinning (a share of a core, however loaded), then asleep
    assert cpu_between(series, start, start + 0.5) is None  # under a second: no figure


# the smallest sizes that still take every path: 100 pages give the crawler's rows their
# last-tenth-vs-first figure (none below 100) and three /private/ pages to link into; the
# frontier run needs hubs, not a big number (its memory is reported, never judged here)
BENCH_PAGES = 100
BENCH_FRONTIER = 1000


@pytest.mark.slow
def test_bench_runs_end_to_end(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    # not Scrapy (PyPI), nor the extraction row (a minute of trafilatura on these pages;
    # --extract is tested end to end in test_content.py)
    names = [n for n in CONTENDERS if n not in ("scrapy", "crawler-extract")]
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--pages", str(BENCH_PAGES), "--repeat", "1",
         "--frontier", str(BENCH_FRONTIER), "--contenders", ",".join(names),
         "--results", str(results)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(results.read_text())
    assert list(data["sites"]) == list(site.PROFILES)
    for profile, one in data["sites"].items():
        assert list(one["medians"]) == names
        for name, row in one["medians"].items():
            assert row["found"] == row["expected"] == BENCH_PAGES, (profile, name)
            assert row["disallowed_fetched"] == 0, (profile, name)
            assert row["peak_rss_mb"] > 0 and row["pages_per_s"] > 0, (profile, name)
        assert one["medians"]["ceiling"]["x_ceiling"] == 1.0
        assert one["medians"]["crawler"]["loop_lag_p99_ms"] is not None
        for fleet in ("crawler-redis", "crawler-cluster"):  # Redis CPU per page, measured
            assert one["medians"][fleet]["redis_ms_per_page"] > 0, (profile, fleet)
        assert {t["target"] for t in one["targets"]} >= {"loop lag p99 (ms)"}
        # the hub run: a page of 15 000 links, its loop lag reported (never judged here)
        assert one["hub"]["returncode"] == 0 and one["hub"]["pages"] > BENCH_PAGES, profile
        assert one["hub"]["loop_lag_p99_ms"] is not None, profile
        assert any(t["target"].startswith("loop lag p99 (ms), hub run (a page of 15,000")
                   for t in one["targets"]), profile
        assert f"site {profile!r}" in done.stdout
    assert data["sites"]["links"]["links_per_page"] > data["sites"]["mixed"]["links_per_page"]
    for name in names:
        assert CONTENDERS[name].label in done.stdout
    assert "Redis CPU" in done.stdout
    assert data["frontier"]["discovered"] >= BENCH_FRONTIER
    assert data["machine"]["cores"] >= 1
