"""The report over a synthetic run: its numbers, its self-contained HTML, the console script."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html import escape
from pathlib import Path
from typing import Any

import pytest

from crawler.charts import bar_chart, column_chart
from crawler.report import summarize, write_html

CRAWL_REPORT = Path(sys.executable).parent / "crawl-report"
RUN_ID = "20261124T120000Z"
ODD_URL = 'http://a.test/q?x=1&y="<2>"'


def _page(url: str, status: int, depth: int, second: int, elapsed_ms: int) -> dict[str, Any]:
    return {
        "url": url,
        "final_url": url,
        "status": status,
        "depth": depth,
        "referrer": None if depth == 0 else "http://a.test/",
        "fetched_at": f"2026-11-24T12:00:{second:02d}.250Z",
        "content_type": "text/html",
        "bytes": 1000 + second,
        "elapsed_ms": elapsed_ms,
        "attempts": 1,
        "title": "<script>alert('title')</script>",
        "description": None,
        "lang": "en",
        "canonical": None,
        "words": 50,
        "links": 3,
        "sha256": "0" * 64,
        "simhash": "0" * 16,
        "near_duplicate_of": None,
        "changed": None,
        "not_modified": False,
        "location": None,
        "extra": {},
    }


PAGES = [
    _page("http://a.test/", 200, 0, 0, 12),
    _page("http://a.test/one", 200, 1, 1, 30),
    _page("http://a.test/two", 200, 1, 2, 45),
    _page("http://b.test:8080/", 200, 0, 2, 250),
    _page("http://b.test:8080/x", 301, 1, 5, 7),
    _page(ODD_URL, 404, 2, 9, 80),
]
PAGES_W2 = [_page("http://a.test/three", 200, 2, 10, 1200)]
ERRORS = [
    {
        "url": "http://a.test/slow",
        "depth": 1,
        "referrer": "http://a.test/",
        "kind": "timeout",
        "message": "no answer in 30 s",
        "attempts": 3,
        "at": "2026-11-24T12:00:04.000Z",
    },
    {
        "url": "http://c.test/",
        "depth": 0,
        "referrer": None,
        "kind": "connection",
        "message": "<b>refused</b>",
        "attempts": 3,
        "at": "2026-11-24T12:00:06.000Z",
    },
    {
        "url": "http://a.test/slow2",
        "depth": 2,
        "referrer": "http://a.test/one",
        "kind": "timeout",
        "message": "no answer in 30 s",
        "attempts": 3,
        "at": "2026-11-24T12:00:07.000Z",
    },
]
LINKS = [
    {
        "from": "http://a.test/",
        "to": "http://a.test/one",
        "text": "1",
        "nofollow": False,
        "followed": True,
    },
    {
        "from": "http://a.test/",
        "to": "https://elsewhere.test/",
        "text": "x",
        "nofollow": False,
        "followed": False,
    },
]
STATS = {
    "job": "demo",
    "run_id": RUN_ID,
    "started_at": "2026-11-24T12:00:00.000Z",
    "finished_at": "2026-11-24T12:00:12.500Z",
    "duration_s": 12.5,
    "pages": 7,
    "errors": 3,
    "bytes": 7029,
    "pages_per_s": 0.56,
    "status_counts": {"200": 5, "301": 1, "404": 1},
    "robots_blocked": 2,
    "out_of_scope": 1,
    "duplicates": 4,
    "retries": 6,
    "frontier_left": 0,
    "stop_reason": "exhausted",
    "new": 5,
    "changed": 1,
    "unchanged": 1,
    "gone": 0,
    "loop_lag_ms": {"p50": 0.4, "p99": 3.2, "max": 17.9},
    "process_pool": {"tasks": 7, "busy_s": 0.31, "restarts": 0},
    "thread_pool": {"tasks": 9, "busy_s": 0.02, "restarts": 0},
}


def _jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


@pytest.fixture
def job(tmp_path: Path) -> Path:
    job = tmp_path / "out" / "demo"
    run = job / "runs" / RUN_ID
    run.mkdir(parents=True)
    _jsonl(run / "pages.jsonl", PAGES)
    _jsonl(run / "pages-w2.jsonl", PAGES_W2)
    with (run / "pages-w2.jsonl").open("a") as f:
        f.write('{"url": "http://a.test/torn", "status": 2')
    _jsonl(run / "errors.jsonl", ERRORS)
    _jsonl(run / "links.jsonl", LINKS)
    (run / "stats.json").write_text(json.dumps(STATS))
    os.symlink(Path("runs") / RUN_ID, job / "latest")
    return job


def test_summary_numbers_come_from_the_records(job: Path) -> None:
    s = summarize(job)
    assert s["run_dir"] == str((job / "runs" / RUN_ID).resolve())
    assert (s["job"], s["run_id"], s["stop_reason"]) == ("demo", RUN_ID, "exhausted")
    assert s["pages"] == 7
    assert s["errors"] == 3
    assert s["bytes"] == sum(p["bytes"] for p in PAGES + PAGES_W2)
    assert s["duration_s"] == 12.5
    assert s["pages_per_s"] == round(7 / 12.5, 2)
    assert s["status_counts"] == {"200": 5, "301": 1, "404": 1}
    assert s["errors_by_kind"] == {"timeout": 2, "connection": 1}
    assert s["pages_per_depth"] == {"0": 2, "1": 3, "2": 2}
    assert s["hosts"] == 2
    assert s["top_hosts"] == [["a.test", 5], ["b.test", 2]]
    assert (s["links"], s["links_followed"]) == (2, 1)
    assert s["changes"] == {"new": 5, "changed": 1, "unchanged": 1, "gone": 0}
    assert s["crawl"]["robots_blocked"] == 2
    assert s["loop_lag_ms"] == {"p50": 0.4, "p99": 3.2, "max": 17.9}
    assert s["process_pool"]["tasks"] == 7
    json.dumps(s)  # plain data, ready for `make demo` and scripts


def test_elapsed_histogram_and_timeline_account_for_every_page(job: Path) -> None:
    s = summarize(job)
    e = s["elapsed_ms"]
    assert (e["count"], e["p50"], e["max"]) == (7, 45, 1200)
    assert sum(n for _, _, n in e["histogram"]) == 7
    lows = [lo for lo, _, _ in e["histogram"]]
    assert lows == sorted(lows) and lows[0] == 0
    t = s["timeline"]
    assert t["start"] == "2026-11-24T12:00:00.250Z"
    assert t["bucket_s"] == 0.2  # 10 s in at most 60 columns
    assert sum(t["counts"]) == 7 and len(t["counts"]) == 51
    assert t["counts"][0] == 1 and t["counts"][50] == 1  # 12:00:00.250 and 12:00:10.250


def test_without_stats_the_duration_is_the_span_of_fetches(job: Path) -> None:
    run = job / "runs" / RUN_ID
    (run / "stats.json").unlink()
    s = summarize(run)
    assert s["duration_s"] == 10.0
    assert s["pages_per_s"] == 0.7
    assert s["changes"] is None and s["loop_lag_ms"] is None and not s["has_stats"]
    assert s["started_at"] == "2026-11-24T12:00:00.250Z"


def test_html_is_self_contained_with_the_summary_numbers(job: Path) -> None:
    s = summarize(job)
    path = write_html(job, s)
    assert path == job / "runs" / RUN_ID / "report.html"
    html = path.read_text(encoding="utf-8")

    labels = re.findall(r'<svg [^>]*aria-label="([^"]+)"', html)
    assert sorted(labels) == sorted([
        "pages over time", "status codes", "elapsed_ms histogram", "pages per depth",
        "errors by kind", "top hosts", "pools busy time", "loop lag",
    ])
    assert "<title>wall clock: 12.5</title>" in html
    assert "<title>process pool: 0.31</title>" in html and "<title>p99: 3.2</title>" in html
    for name, value in [
        ("pages", 7),
        ("errors", 3),
        ("bytes", s["bytes"]),
        ("duration (s)", 12.5),
        ("pages/s", 0.56),
    ]:
        assert f"<b>{value}</b><span>{escape(name)}</span>" in html
    for code, n in s["status_counts"].items():
        assert f"<title>{code}: {n}</title>" in html
    for depth, n in s["pages_per_depth"].items():
        assert f"<title>{depth}: {n}</title>" in html
    for host, n in s["top_hosts"]:
        assert f"<title>{host}: {n}</title>" in html
    assert "<title>timeout: 2</title>" in html
    assert "<title>max: 17.9</title>" in html  # loop lag
    assert '<td>gone</td><td class="n">0</td>' in html

    # data is escaped, and nothing but data refers to the network
    assert "<b>refused</b>" not in html and escape("<b>refused</b>") in html
    assert escape(ODD_URL) in html
    lowered = html.lower()
    assert "<script" not in lowered and "<link" not in lowered and "@import" not in lowered
    assert not re.search(r"\bsrc\s*=", lowered) and "url(" not in lowered
    remaining = html
    for record in PAGES + PAGES_W2 + ERRORS:
        remaining = remaining.replace(escape(record["url"]), "")
    assert "http://" not in remaining and "https://" not in remaining


def test_charts_escape_labels_and_show_values() -> None:
    svg = bar_chart([("<evil>", 3), ("ok", 0)], "x")
    assert "<evil>" not in svg and "&lt;evil&gt;" in svg and ">3</text>" in svg
    assert "<rect" in column_chart([("a", 1), ("b", 2)], "y")
    assert "<svg" not in bar_chart([], "nothing")


def _crawl_report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CRAWL_REPORT), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_console_script_prints_the_summary_and_writes_the_report(job: Path) -> None:
    done = _crawl_report(str(job))
    assert done.returncode == 0, done.stderr
    assert (job / "runs" / RUN_ID / "report.html").is_file()
    assert "report.html" in done.stdout
    assert "a.test" in done.stdout and "timeout" in done.stdout
    assert re.search(r"pages\s.*\b7\b", done.stdout)


def test_console_script_on_a_missing_folder_exits_2(tmp_path: Path) -> None:
    done = _crawl_report(str(tmp_path / "nope"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "nope" in done.stderr
    assert "Traceback" not in done.stderr


def test_console_script_on_a_run_without_records_exits_2(tmp_path: Path) -> None:
    run = tmp_path / "job" / "runs" / RUN_ID
    run.mkdir(parents=True)
    (run / "stats.json").write_text(json.dumps({"pages": 0}))
    done = _crawl_report(str(tmp_path / "job"))
    assert done.returncode == 2
    assert "no page or error records" in done.stderr and "Traceback" not in done.stderr
    assert not (run / "report.html").exists()


def test_console_script_on_a_corrupt_record_names_it_without_a_traceback(job: Path) -> None:
    run = job / "runs" / RUN_ID
    with (run / "errors.jsonl").open("a") as f:
        f.write("{oops\n")
    done = _crawl_report(str(job))
    assert done.returncode == 1
    assert "errors.jsonl: line 4" in done.stderr and "Traceback" not in done.stderr
