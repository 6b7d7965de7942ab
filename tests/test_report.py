"""The report over a synthetic run: its self-contained HTML and the console script."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html import escape
from pathlib import Path

import pytest

from crawler.charts import bar_chart, column_chart
from crawler.report import summarize, write_html
from tests.synthetic import ERRORS, ODD_URL, PAGES, PAGES_W2, RUN_ID, make_job

CRAWL_REPORT = Path(sys.executable).parent / "crawl-report"

@pytest.fixture
def job(tmp_path: Path) -> Path:
    return make_job(tmp_path)


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
