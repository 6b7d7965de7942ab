"""A synthetic finished run (records of the contract's shape) for the summary and report tests."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

RUN_ID = "20261124T120000Z"
ODD_URL = 'http://a.test/q?x=1&y="<2>"'


def page(url: str, status: int = 200, depth: int = 0, second: int = 0, elapsed_ms: int = 12,
         **overrides: Any) -> dict[str, Any]:
    """A page record with every key of the contract; `overrides` replace any of them."""
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
        **overrides,
    }


PAGES = [
    page("http://a.test/", 200, 0, 0, 12),
    page("http://a.test/one", 200, 1, 1, 30),
    page("http://a.test/two", 200, 1, 2, 45),
    page("http://b.test:8080/", 200, 0, 2, 250),
    page("http://b.test:8080/x", 301, 1, 5, 7),
    page(ODD_URL, 404, 2, 9, 80),
]
PAGES_W2 = [page("http://a.test/three", 200, 2, 10, 1200)]
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


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def make_job(tmp_path: Path) -> Path:
    """`OUT/demo/` with one finished run: two page parts (one torn), errors, links, stats."""
    job = tmp_path / "out" / "demo"
    run = job / "runs" / RUN_ID
    run.mkdir(parents=True)
    write_jsonl(run / "pages.jsonl", PAGES)
    write_jsonl(run / "pages-w2.jsonl", PAGES_W2)
    with (run / "pages-w2.jsonl").open("a") as f:
        f.write('{"url": "http://a.test/torn", "status": 2')
    write_jsonl(run / "errors.jsonl", ERRORS)
    write_jsonl(run / "links.jsonl", LINKS)
    (run / "stats.json").write_text(json.dumps(STATS))
    os.symlink(Path("runs") / RUN_ID, job / "latest")
    return job
