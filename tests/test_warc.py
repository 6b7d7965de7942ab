"""The WARC file of real crawls, read back with warcio: a response (or revisit) record per page
record and the request record that asked for it, digests right, valid for `warcio index`."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from warcio.archiveiterator import ArchiveIterator

from crawler.models import Response
from crawler.warc import NOT_MODIFIED_PROFILE, WarcFile, cut_back
from tests.conftest import Site, fast, load_run, run_crawl, run_dirs, seeds_file

WARCIO = Path(sys.executable).parent / "warcio"
USER_AGENT = "warc-test-bot/1.0 (+http://127.0.0.1/)"
SEEDS = ("/site/", "/status/404", "/redirect/2", "/gzip", "/binary", "/cond/etag",
         "/charset/cp1251", "/headers/set-cookie")


@dataclass
class Rec:
    """One record as read back, its block and payload digests checked by warcio."""

    type: str
    headers: dict[str, str]
    http: Any
    payload: bytes
    digests_passed: bool | None


def read_warc(path: Path) -> list[Rec]:
    records = []
    with path.open("rb") as stream:
        for record in ArchiveIterator(stream, check_digests=True):
            payload = record.content_stream().read()
            records.append(Rec(record.rec_type, dict(record.rec_headers.headers),
                               record.http_headers, payload, record.digest_checker.passed))
    return records


def sha1_b32(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()


def warcio_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(WARCIO), *map(str, args)], capture_output=True, text=True,
                          timeout=60, check=False)


async def crawl(site: Site, tmp_path: Path, *args: str) -> None:
    seeds = seeds_file(tmp_path, *(site.url(p) for p in SEEDS))
    result = await run_crawl(seeds, *fast(tmp_path / "out"), "--warc",
                             "--user-agent", USER_AGENT, *args)
    assert result.returncode == 0, str(result)


async def test_every_page_has_its_response_and_request_with_right_digests(
        site: Site, tmp_path: Path) -> None:
    await crawl(site, tmp_path)
    run = load_run(tmp_path / "out", "seeds")
    warcs = sorted(run.dir.glob("*.warc.gz"))
    assert [w.name for w in warcs] == [f"crawl-{run.dir.name}.warc.gz"]
    records = read_warc(warcs[0])

    assert records[0].type == "warcinfo"
    assert all(r.headers["WARC-Type"] == r.type for r in records)
    assert {r.headers.get("WARC-Type") for r in records} == {"warcinfo", "response", "request"}
    assert len({r.headers["WARC-Record-ID"] for r in records}) == len(records)
    for record in records:
        assert record.digests_passed is True, record.headers  # block (and payload) digests

    responses = {r.headers["WARC-Target-URI"]: r for r in records if r.type == "response"}
    assert len(responses) == len(run.pages) == sum(r.type == "response" for r in records)
    for page in run.pages:
        record = responses[page["final_url"]]
        assert int(record.http.get_statuscode()) == page["status"]
        assert record.headers["WARC-Date"] == page["fetched_at"]
        assert len(record.payload) == page["bytes"]
        assert hashlib.sha256(record.payload).hexdigest() == page["sha256"]
        assert record.headers["WARC-Payload-Digest"] == sha1_b32(record.payload)
        # the payload is the decoded body, so no header may claim another encoding or length
        assert record.http.get_header("content-encoding") is None
        assert record.http.get_header("content-length") == str(page["bytes"])

    requests = [r for r in records if r.type == "request"]
    by_id = {r.headers["WARC-Record-ID"]: r for r in records if r.type == "response"}
    assert len(requests) == len(responses)
    paired: Counter[str] = Counter()
    for request in requests:
        answer = by_id[request.headers["WARC-Concurrent-To"]]
        assert request.headers["WARC-Target-URI"] == answer.headers["WARC-Target-URI"]
        paired[request.headers["WARC-Concurrent-To"]] += 1
        assert request.http.protocol == "GET"
        assert request.http.statusline.endswith(" HTTP/1.1")
        assert request.http.get_header("User-Agent") == USER_AGENT
        assert request.http.get_header("Host") == f"127.0.0.1:{site.port}"
    assert set(paired.values()) == {1} and set(paired) == set(by_id)

    # what the site saw is what the request records say was sent
    sent = {h.path_qs: h.headers for h in site.log}
    cp1251 = next(r for r in requests if r.headers["WARC-Target-URI"].endswith("/cp1251"))
    for name, value in cp1251.http.headers:
        assert sent["/charset/cp1251"][name.lower()] == value


async def test_headers_are_archived_as_received(site: Site, tmp_path: Path) -> None:
    await crawl(site, tmp_path, "--max-depth", "0")
    run = load_run(tmp_path / "out", "seeds")
    url = site.url("/headers/set-cookie")
    record = next(r for r in read_warc(run.dir / f"crawl-{run.dir.name}.warc.gz")
                  if r.type == "response" and r.headers["WARC-Target-URI"] == url)
    names = [name for name, _ in record.http.headers]
    assert [v for n, v in record.http.headers if n == "Set-Cookie"] == [
        "a=1; Expires=Wed, 09 Jun 2027 10:18:14 GMT", "b=2; Path=/"]
    assert "X-Mixed-Case" in names and "Content-Type" in names, names
    assert record.http.get_header("Content-Length") == str(len(record.payload))


async def test_warcio_cli_indexes_and_checks_the_file(site: Site, tmp_path: Path) -> None:
    await crawl(site, tmp_path, "--max-depth", "1")
    run = load_run(tmp_path / "out", "seeds")
    path = run.dir / f"crawl-{run.dir.name}.warc.gz"

    index = await asyncio.to_thread(warcio_cli, "index", "-f",
                                    "warc-type,warc-target-uri,offset,length", path)
    assert index.returncode == 0, index.stderr
    lines = index.stdout.splitlines()
    assert len(lines) == 1 + 2 * len(run.pages)
    assert sum('"warc-type": "response"' in ln for ln in lines) == len(run.pages)
    check = await asyncio.to_thread(warcio_cli, "check", "-v", path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count("digest pass") == 1 + 2 * len(run.pages)  # warcinfo too


async def _next_second() -> None:
    """Sleep into the next UTC second, so a new run cannot share a RUN_ID with the last."""
    await asyncio.sleep(1.05 - datetime.now(UTC).microsecond / 1e6)


@pytest.mark.slow
async def test_a_304_on_a_recrawl_is_a_revisit_of_the_earlier_response(
        site: Site, tmp_path: Path) -> None:
    await crawl(site, tmp_path, "--max-depth", "0")
    await _next_second()
    await crawl(site, tmp_path, "--max-depth", "0")
    first, second = run_dirs(tmp_path / "out", "seeds")
    url = site.url("/cond/etag")
    earlier = next(r for r in read_warc(first / f"crawl-{first.name}.warc.gz")
                   if r.type == "response" and r.headers["WARC-Target-URI"] == url)
    records = read_warc(second / f"crawl-{second.name}.warc.gz")
    page = load_run(tmp_path / "out", "seeds", second).page(url)
    assert page["status"] == 304

    revisits = [r for r in records if r.type == "revisit"]
    assert [r.headers["WARC-Target-URI"] for r in revisits] == [url]
    revisit = revisits[0]
    assert revisit.headers["WARC-Profile"] == NOT_MODIFIED_PROFILE
    assert revisit.headers["WARC-Refers-To"] == earlier.headers["WARC-Record-ID"]
    assert revisit.headers["WARC-Refers-To-Target-URI"] == url
    assert revisit.headers["WARC-Refers-To-Date"] == earlier.headers["WARC-Date"]
    assert revisit.headers["WARC-Payload-Digest"] == earlier.headers["WARC-Payload-Digest"]
    # the block is what a cache serves after revalidating: the stored 200, freshened by the
    # 304's headers, so that replay shows the page (tests/test_warc_replay.py)
    assert int(revisit.http.get_statuscode()) == 200 and revisit.payload == b""
    assert revisit.http.get_header("ETag") == '"v1"'
    assert revisit.http.get_header("Content-Length") == str(len(earlier.payload))
    request = next(r for r in records if r.type == "request"
                   and r.headers["WARC-Concurrent-To"] == revisit.headers["WARC-Record-ID"])
    assert request.http.get_header("If-None-Match") == '"v1"'
    check = await asyncio.to_thread(warcio_cli, "check", second / f"crawl-{second.name}.warc.gz")
    assert check.returncode == 0, check.stdout


def _response(n: int) -> Response:
    url = f"http://127.0.0.1:9/page/{n}"
    return Response(url=url, final_url=url, status=200, headers={"content-type": "text/plain"},
                    body=f"page {n}\n".encode() * 50, elapsed_ms=1, attempts=1,
                    fetched_at=f"2026-11-24T12:00:0{n}.000Z",
                    request_headers=(("Host", "127.0.0.1:9"), ("User-Agent", "t")))


def test_records_past_the_committed_size_are_cut_off_when_the_run_resumes(
        tmp_path: Path) -> None:
    path = tmp_path / "crawl.warc.gz"
    warc = WarcFile(path, "t")
    warc.open()
    committed = warc.write([_response(1), _response(2)])
    whole = warc.write([_response(3)])  # a batch whose commit never happened
    warc.close()
    with path.open("r+b") as stream:  # killed 10 bytes before the end of its last record
        stream.truncate(whole - 10)

    cut_back(path, committed)
    resumed = WarcFile(path, "t")
    resumed.open()
    resumed.write([_response(4)])
    resumed.close()
    records = read_warc(path)
    assert [(r.type, r.headers.get("WARC-Target-URI", "")[-1:]) for r in records] == [
        ("warcinfo", ""), ("response", "1"), ("request", "1"), ("response", "2"),
        ("request", "2"), ("response", "4"), ("request", "4")]
    assert all(r.digests_passed for r in records)
    assert warcio_cli("check", path).returncode == 0
