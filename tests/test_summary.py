"""The summary's numbers over a synthetic run: from the records, stats.json where needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crawler.summary import summarize
from tests.synthetic import PAGES, PAGES_W2, RUN_ID, make_job


@pytest.fixture
def job(tmp_path: Path) -> Path:
    return make_job(tmp_path)


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
