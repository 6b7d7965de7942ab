"""The reader over synthetic job folders (part files, torn lines, `latest` and its absence)
and over a real crawl split into worker parts, through the public `crawler` API."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import crawler
from crawler.reader import read_errors, read_links, read_pages, read_stats, run_folder
from tests.conftest import (
    Site,
    assert_error_shape,
    assert_link_shape,
    assert_page_shape,
    fast,
    load_run,
    run_crawl,
    seeds_file,
)
from tests.synthetic import page


def _lines(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def _write_run(run: Path, tag: str = "") -> Path:
    """A two-part run: `pages.jsonl` and a worker's `pages-w2.jsonl` ending in a torn line."""
    run.mkdir(parents=True)
    (run / "pages.jsonl").write_text(
        _lines([page(f"http://a.test/{tag}1"), page(f"http://a.test/{tag}2")])
    )
    (run / "pages-w2.jsonl").write_text(
        _lines([page(f"http://a.test/{tag}w2-1"), page(f"http://a.test/{tag}w2-2")])
        + '{"url": "http://a.test/torn", "sta'
    )
    (run / "links.jsonl").write_text(
        _lines(
            [
                {
                    "from": "http://a.test/1",
                    "to": "http://a.test/2",
                    "text": "two",
                    "nofollow": False,
                    "followed": True,
                }
            ]
        )
    )
    (run / "errors.jsonl").write_text(
        _lines(
            [
                {
                    "url": "http://a.test/x",
                    "depth": 1,
                    "referrer": "http://a.test/1",
                    "kind": "timeout",
                    "message": "timed out",
                    "attempts": 3,
                    "at": "2026-11-24T12:00:01.000Z",
                }
            ]
        )
    )
    (run / "stats.json").write_text(json.dumps({"run_id": run.name, "pages": 4}))
    return run


@pytest.fixture
def job(tmp_path: Path) -> Path:
    """`OUT/demo/` with two runs; `latest` points at the older one, as after a failed rerun."""
    job = tmp_path / "out" / "demo"
    _write_run(job / "runs" / "20261124T120000Z", tag="old-")
    _write_run(job / "runs" / "20261125T120000Z", tag="new-")
    os.symlink(Path("runs") / "20261124T120000Z", job / "latest")
    return job


def _urls(records: Any) -> list[str]:
    return [r["url"] for r in records]


def test_parts_are_read_in_name_order_and_the_torn_last_line_is_skipped(job: Path) -> None:
    run = job / "runs" / "20261124T120000Z"
    assert _urls(read_pages(run)) == [
        # "pages-w2.jsonl" sorts before "pages.jsonl" ("-" < ".")
        "http://a.test/old-w2-1",
        "http://a.test/old-w2-2",
        "http://a.test/old-1",
        "http://a.test/old-2",
    ]


def test_a_job_folder_reads_its_latest_run(job: Path) -> None:
    assert run_folder(job) == (job / "runs" / "20261124T120000Z").resolve()
    assert _urls(read_pages(job))[0] == "http://a.test/old-w2-1"


def test_without_latest_the_newest_run_by_name_is_read(job: Path) -> None:
    (job / "latest").unlink()
    assert run_folder(job) == job / "runs" / "20261125T120000Z"
    assert _urls(read_pages(job))[-1] == "http://a.test/new-2"


def test_a_dangling_latest_falls_back_to_the_newest_run(job: Path) -> None:
    (job / "latest").unlink()
    os.symlink(Path("runs") / "gone", job / "latest")
    assert run_folder(job) == job / "runs" / "20261125T120000Z"


def test_none_means_the_current_directory(job: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(job)
    assert len(list(read_pages())) == 4
    monkeypatch.chdir(job / "runs" / "20261125T120000Z")
    assert _urls(read_pages())[-1] == "http://a.test/new-2"


def test_an_empty_run_folder_under_runs_yields_nothing(tmp_path: Path) -> None:
    run = tmp_path / "job" / "runs" / "20261124T120000Z"
    run.mkdir(parents=True)
    assert run_folder(run) == run
    assert list(read_pages(run)) == []
    assert list(read_errors(tmp_path / "job")) == []


def test_links_errors_and_stats(job: Path) -> None:
    assert [link["to"] for link in read_links(job)] == ["http://a.test/2"]
    assert [error["kind"] for error in read_errors(job)] == ["timeout"]
    assert read_stats(job) == {"run_id": "20261124T120000Z", "pages": 4}


def test_a_bad_line_in_the_middle_names_file_and_line(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    part = run / "pages.jsonl"
    part.write_text(_lines([page("http://a.test/1")]) + "{not json\n" + _lines([page("x")]))
    records = read_pages(run)
    assert next(records)["url"] == "http://a.test/1"
    with pytest.raises(ValueError, match=r"pages\.jsonl: line 2"):
        next(records)


def test_a_bad_last_line_with_its_newline_is_not_torn(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "pages.jsonl").write_text(_lines([page("http://a.test/1")]) + "{oops\n")
    with pytest.raises(ValueError, match="line 2"):
        list(read_pages(run))


def test_a_complete_last_line_without_newline_is_read(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "pages.jsonl").write_text(json.dumps(page("http://a.test/1")))
    assert _urls(read_pages(run)) == ["http://a.test/1"]


def test_a_line_that_is_not_an_object_is_an_error(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "pages.jsonl").write_text("[1, 2]\n")
    with pytest.raises(ValueError, match="not a JSON object"):
        list(read_pages(run))


def test_records_are_read_lazily(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "pages.jsonl").write_text(_lines([page("http://a.test/1")]) + "{bad\n")
    records = read_pages(run)  # nothing read yet: no error
    assert next(records)["url"] == "http://a.test/1"


def test_a_missing_folder_raises_at_call_time(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such folder"):
        read_pages(tmp_path / "nope")


def test_a_folder_that_is_neither_job_nor_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="neither a job folder"):
        run_folder(tmp_path)


def test_a_job_with_no_runs_is_refused(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    with pytest.raises(FileNotFoundError, match="no runs yet"):
        run_folder(tmp_path)


async def test_the_public_api_reads_a_real_crawl_split_into_worker_parts(
        site: Site, tmp_path: Path) -> None:
    out = tmp_path / "out"
    seeds = seeds_file(tmp_path, site.url("/site/"), site.url("/status/404"), site.url("/reset"))
    result = await run_crawl(seeds, *fast(out))
    assert result.returncode == 0, str(result)
    job = out / "seeds"
    run = load_run(out, "seeds")
    # as a distributed run leaves it: one part per worker, records dealt out in turn
    for stem, records in (("pages", run.pages), ("links", run.links), ("errors", run.errors)):
        (run.dir / f"{stem}.jsonl").unlink()
        for n, worker in enumerate(("a", "b", "c")):
            (run.dir / f"{stem}-{worker}.jsonl").write_text(_lines(records[n::3]))

    pages, links = crawler.read_pages(job), crawler.read_links(job)
    errors = crawler.read_errors(job)
    first = next(pages)
    # parts are opened one at a time: a line added to a later part before it is reached shows
    late = page(site.url("/late"))
    with (run.dir / "pages-c.jsonl").open("a") as f:
        f.write(_lines([late]))
    read = [first, *pages]
    assert sorted(_urls(read)) == sorted([*_urls(run.pages), late["url"]])
    for record in read:
        assert_page_shape(record)
    read_links_ = list(links)
    assert len(read_links_) == len(run.links) > 0
    for link in read_links_:
        assert_link_shape(link)
    read_errors_ = list(errors)
    assert [e["url"] for e in read_errors_] == [site.url("/reset")]
    assert_error_shape(read_errors_[0])
    # a run folder, the `latest` link and the job folder are the same run
    assert _urls(crawler.read_pages(run.dir)) == _urls(crawler.read_pages(job / "latest"))
