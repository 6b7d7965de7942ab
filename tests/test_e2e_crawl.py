"""End to end: the real `crawl` against the local site; records, outputs, dedup and scope."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
import pytest

from tests.conftest import (
    HEX16_RE,
    RUN_ID_RE,
    STATS_KEYS,
    TIMESTAMP_RE,
    Result,
    Run,
    Site,
    assert_link_shape,
    assert_no_traceback,
    assert_page_shape,
    fast,
    load_run,
    reap,
    run_crawl,
    run_dirs,
    seeds_file,
    start_crawl,
    wait_until,
)
from tests.site import COUNTERS, LOG, SITE_PAGES, make_site, site_parent

SITE_PATHS = ["/site/", *(f"/site/page/{n}" for n in range(1, SITE_PAGES + 1)),
              "/site/private/secret"]


def site_url(site: Site, n: int) -> str:
    return site.url("/site/" if n == 0 else f"/site/page/{n}")


def depth_of(n: int) -> int:
    return 0 if n == 0 else 1 + depth_of(site_parent(n))


async def crawl_site(site: Site, tmp_path: Path, *extra: str,
                     seed: str = "/site/") -> tuple[Result, Run]:
    out = tmp_path / "out"
    result = await run_crawl(seeds_file(tmp_path, site.url(seed)), *fast(out), *extra)
    assert result.returncode == 0, str(result)
    return result, load_run(out, "seeds")


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- the basic crawl ------------------------------------------------------------------------


async def test_site_crawl_fetches_every_page_exactly_once(site: Site, tmp_path: Path) -> None:
    result, run = await crawl_site(site, tmp_path)

    counts = Counter(site.paths())
    assert counts["/robots.txt"] == 1
    for path in SITE_PATHS:
        assert counts[path] == 1, f"{path} requested {counts[path]} times: {site.paths()}"
    assert set(counts) == {"/robots.txt", *SITE_PATHS}, f"unexpected requests: {counts}"
    assert sorted(run.urls()) == sorted(site.url(p) for p in SITE_PATHS)
    assert run.errors == []
    assert_no_traceback(result)
    agents = {h.headers.get("user-agent", "") for h in site.log}
    assert len(agents) == 1 and "://" in agents.pop(), "the user agent names the project's URL"


async def test_site_crawl_writes_outputs_and_points_latest_at_the_run(
        site: Site, tmp_path: Path) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    _, run = await crawl_site(site, tmp_path)
    after = datetime.now(UTC)

    job = tmp_path / "out" / "seeds"
    assert RUN_ID_RE.match(run.dir.name), f"run folder {run.dir.name!r}"
    assert run.dir.parent == job / "runs"
    run_start = datetime.strptime(run.dir.name, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before - timedelta(seconds=1) <= run_start <= after, "RUN_ID is not the UTC start"
    assert list(run.dir.glob("pages*.jsonl")), "no pages*.jsonl"
    assert list(run.dir.glob("links*.jsonl")), "no links*.jsonl"
    assert list(run.dir.glob("errors*.jsonl")), "no errors*.jsonl (an empty one is expected)"
    latest = job / "latest"
    assert latest.is_symlink(), "no latest symlink after a finished run"
    assert latest.resolve() == run.dir.resolve()
    assert (job / "state.sqlite").is_file()


async def test_stats_json_has_every_contract_key_and_stop_reason_exhausted(
        site: Site, tmp_path: Path) -> None:
    _, run = await crawl_site(site, tmp_path)
    stats = run.stats

    assert set(stats) >= STATS_KEYS, f"stats.json lacks {sorted(STATS_KEYS - set(stats))}"
    assert stats["job"] == "seeds"
    assert stats["run_id"] == run.dir.name
    assert stats["stop_reason"] == "exhausted"
    for key in ("started_at", "finished_at"):
        assert TIMESTAMP_RE.match(stats[key]), f"{key}={stats[key]!r}"
    assert parse_ts(stats["started_at"]) <= parse_ts(stats["finished_at"])
    run_start = datetime.strptime(stats["run_id"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs(parse_ts(stats["started_at"]) - run_start) < timedelta(seconds=2)
    assert isinstance(stats["duration_s"], int | float) and stats["duration_s"] >= 0
    assert isinstance(stats["pages_per_s"], int | float)
    assert stats["pages"] == len(run.pages) == len(SITE_PATHS)
    assert stats["errors"] == len(run.errors) == 0
    assert stats["status_counts"] == {"200": len(SITE_PATHS)}
    assert stats["frontier_left"] == 0
    assert stats["out_of_scope"] >= 1, "the localhost links were out of scope"
    assert stats["robots_blocked"] == 0 and stats["retries"] == 0
    assert stats["new"] == len(SITE_PATHS)
    assert (stats["changed"], stats["unchanged"], stats["gone"]) == (0, 0, 0)
    assert isinstance(stats["bytes"], int) and stats["bytes"] >= sum(p["bytes"] for p in run.pages)
    assert isinstance(stats["duplicates"], int)
    assert set(stats["loop_lag_ms"]) >= {"p50", "p99", "max"}
    for pool in ("process_pool", "thread_pool"):
        assert set(stats[pool]) >= {"tasks", "busy_s", "restarts"}, f"{pool}: {stats[pool]}"
    assert stats["process_pool"]["tasks"] >= len(SITE_PATHS), "pages are parsed in processes"
    assert stats["process_pool"]["restarts"] == 0
    # how full the pool was: a mean over time of batches at the parse processes, within the
    # pool's places, and of pages waiting for a place
    pool = stats["process_pool"]
    assert 0 < pool["batches_mean"] <= pool["batches_max"] == 2 * (os.cpu_count() or 1), pool
    assert pool["pages_waiting_mean"] >= 0, pool


async def test_page_records_have_contract_keys_types_and_values(
        site: Site, tmp_path: Path) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    _, run = await crawl_site(site, tmp_path)
    finished = datetime.now(UTC) + timedelta(seconds=1)

    for record in run.pages:
        assert_page_shape(record)
        assert record["status"] == 200 and record["attempts"] == 1
        assert record["final_url"] == record["url"]
        assert record["content_type"] == "text/html"
        assert HEX16_RE.match(record["simhash"] or ""), record
        assert record["changed"] is None, "a first fetch has changed null"
        assert record["not_modified"] in (False, None)
        assert record["location"] is None and record["extra"] == {}
        assert started <= parse_ts(record["fetched_at"]) <= finished, record["fetched_at"]

    index = run.page(site.url("/site/"))
    assert index["title"] == "Site index"
    assert index["description"] == "The index of a small generated site."
    assert index["lang"] == "en"
    assert index["canonical"] == site.url("/site/")
    assert index["words"] >= 40
    page = run.page(site.url("/site/page/3"))
    assert (page["title"], page["description"]) == ("Page 3", "Description of page 3")
    assert page["canonical"] is None

    async with aiohttp.ClientSession() as session, session.get(site.url("/site/page/3")) as resp:
        body = await resp.read()
    assert page["bytes"] == len(body)
    assert page["sha256"] == hashlib.sha256(body).hexdigest()


async def test_depth_and_referrer_come_from_the_first_admitting_link(
        site: Site, tmp_path: Path) -> None:
    _, run = await crawl_site(site, tmp_path)

    seed = run.page(site_url(site, 0))
    assert (seed["depth"], seed["referrer"]) == (0, None)
    for n in range(1, SITE_PAGES + 1):
        record = run.page(site_url(site, n))
        assert record["depth"] == depth_of(n), f"page {n}"
        assert record["referrer"] == site_url(site, site_parent(n)), f"page {n}"
    secret = run.page(site.url("/site/private/secret"))
    assert (secret["depth"], secret["referrer"]) == (1, site.url("/site/"))


async def test_max_depth_keeps_records_within_that_depth(site: Site, tmp_path: Path) -> None:
    _, run = await crawl_site(site, tmp_path, "--max-depth", "1")

    assert sorted(run.urls()) == sorted(
        site.url(p) for p in ["/site/", "/site/page/1", "/site/page/2", "/site/private/secret"])
    assert all(record["depth"] <= 1 for record in run.pages)
    for n in range(3, SITE_PAGES + 1):
        assert site.count(f"/site/page/{n}") == 0, f"page {n} is at depth {depth_of(n)}"


async def test_max_pages_writes_exactly_n_records_and_pauses(site: Site, tmp_path: Path) -> None:
    _, run = await crawl_site(site, tmp_path, "--max-pages", "3")

    assert len(run.pages) == 3, run.urls()
    assert run.stats["stop_reason"] == "max_pages"
    assert run.stats["frontier_left"] > 0
    assert not (tmp_path / "out" / "seeds" / "latest").exists(), \
        "latest names the last *finished* run; this one is only paused"


async def test_max_pages_run_resumes_in_the_same_run_folder(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "out"
    seeds = seeds_file(tmp_path, site.url("/site/"))
    first = await run_crawl(seeds, *fast(out), "--max-pages", "3")
    assert first.returncode == 0, str(first)
    paused = load_run(out, "seeds")
    recorded = set(paused.urls())
    assert len(recorded) == 3
    mark = len(site.log)

    second = await run_crawl(seeds, *fast(out))
    assert second.returncode == 0, str(second)
    run = load_run(out, "seeds")  # asserts there is still one run folder
    assert run.dir == paused.dir
    assert sorted(run.urls()) == sorted(site.url(p) for p in SITE_PATHS), "one record per URL"
    again = [h.path_qs for h in site.log[mark:] if site.url(h.path_qs) in recorded]
    assert again == [], f"pages that had a record were fetched again: {again}"
    assert run.stats["stop_reason"] == "exhausted"
    assert (out / "seeds" / "latest").resolve() == run.dir.resolve()


# --- links, dedup and scope -----------------------------------------------------------------


async def test_link_records_are_normalized_and_mark_what_was_followed(
        site: Site, tmp_path: Path) -> None:
    _, run = await crawl_site(site, tmp_path)

    assert run.links, "no link records"
    for link in run.links:
        assert_link_shape(link)
        target = link["to"]
        if target.lower().startswith(("http:", "https:")):
            parts = urlsplit(target)
            assert parts.scheme in ("http", "https") and "#" not in target, target
            assert "/./" not in parts.path and "/../" not in parts.path, target
    followed = Counter(link["to"] for link in run.links if link["followed"])
    assert max(followed.values()) == 1, f"URLs admitted twice: {followed}"
    assert set(followed) == {site.url(p) for p in SITE_PATHS[1:]}, \
        "followed links are exactly the pages admitted from links"
    for record in run.pages:
        out_links = [link for link in run.links if link["from"] == record["url"]]
        assert record["links"] == len(out_links), f"links count of {record['url']}"

    index = site.url("/site/")
    from_index = [link for link in run.links if link["from"] == index]
    texts = {link["text"] for link in from_index}
    assert "Page one" in texts, f"anchor text is trimmed: {sorted(texts)}"
    long_text = [t for t in texts if t.startswith("long anchor text")]
    assert long_text and all(len(t) <= 200 for t in long_text)
    marked = [link["text"] for link in from_index if link["nofollow"]]
    assert marked == ["page one, nofollow"], marked
    assert not [link for link in from_index if link["to"] == index], "a link to itself"


async def test_out_of_scope_and_non_http_links_are_never_requested(
        site: Site, tmp_path: Path) -> None:
    _, run = await crawl_site(site, tmp_path)

    assert site.hosts() == {f"127.0.0.1:{site.port}"}, f"hosts asked: {site.hosts()}"
    assert not [p for p in site.paths() if "file.txt" in p or "mailto" in p]
    assert all(urlsplit(u).hostname == "127.0.0.1" for u in run.urls())
    elsewhere = f"http://localhost:{site.port}/site/page/1"
    records = [link for link in run.links if link["to"] == elsewhere]
    assert records, f"no link record for {elsewhere}"
    assert not any(link["followed"] for link in records)
    for link in run.links:
        if not link["to"].startswith(f"http://127.0.0.1:{site.port}/"):
            assert link["followed"] is False, link


async def test_session_ids_and_percent_escapes_are_normalized_before_dedup(
        site: Site, tmp_path: Path) -> None:
    _, run = await crawl_site(site, tmp_path, seed="/norm/")

    paths = [p for p in site.paths() if p != "/robots.txt"]
    assert not [p for p in paths if re.search(r"(?i)sessid|sessionid|sid=", p)], paths
    assert Counter(paths)["/norm/target?a=1&b=2"] == 1, paths
    assert Counter(paths)["/norm/target?b=2&a=1"] == 1, "the query keeps its order"
    tilde = [p for p in paths if unquote(p) == "/norm/~user"]
    assert len(tilde) == 1, f"%7E, %7e and ~ are one URL: {paths}"
    assert not [p for p in paths if "long-" in p], "URLs over 2048 characters are skipped"
    assert len(paths) == 4, paths
    assert len(run.pages) == 4


async def test_near_duplicate_points_at_the_earlier_twin(site: Site, tmp_path: Path) -> None:
    _, run = await crawl_site(site, tmp_path, seed="/dup/")

    a, b = run.page(site.url("/dup/a")), run.page(site.url("/dup/b"))
    assert run.page(site.url("/dup/"))["near_duplicate_of"] is None
    pointers = [(r["url"], r["near_duplicate_of"]) for r in (a, b)]
    assert pointers in ([(a["url"], None), (b["url"], a["url"])],
                        [(a["url"], b["url"]), (b["url"], None)]), \
        f"exactly one twin points at the other: {pointers}"


async def test_scope_any_follows_links_to_other_hosts(site: Site, tmp_path: Path) -> None:
    _, run = await crawl_site(site, tmp_path, "--scope", "any", "--max-depth", "1",
                              seed="/site/page/8")

    elsewhere = f"http://localhost:{site.port}/site/page/8"
    assert elsewhere in run.urls(), run.urls()
    assert f"localhost:{site.port}" in site.hosts()


async def test_another_port_of_the_same_host_is_in_scope(site: Site, tmp_path: Path,
                                                        aiohttp_server: Any) -> None:
    other = make_site()
    server = await aiohttp_server(other, host="127.0.0.1", shutdown_timeout=0.5)
    _, run = await crawl_site(site, tmp_path, "--max-depth", "1", seed=f"/to-port/{server.port}")

    assert f"http://127.0.0.1:{server.port}/site/page/8" in run.urls(), \
        "host is the host name without the port"
    assert [h.path_qs for h in other[LOG] if h.path_qs != "/robots.txt"] == ["/site/page/8"]


@pytest.mark.parametrize(("flags", "expected"), [
    (["--deny", r"/page/[3-8]$"], ["/site/", "/site/page/1", "/site/page/2",
                                   "/site/private/secret"]),
    (["--allow", r"/site/(page/[12])?$"], ["/site/", "/site/page/1", "/site/page/2"]),
], ids=["deny", "allow"])
async def test_allow_and_deny_patterns_filter_urls(site: Site, tmp_path: Path,
                                                   flags: list[str], expected: list[str]) -> None:
    _, run = await crawl_site(site, tmp_path, *flags)

    assert sorted(run.urls()) == sorted(site.url(p) for p in expected)
    assert sorted(p for p in site.paths() if p != "/robots.txt") == sorted(expected)


async def test_max_pages_per_host_caps_one_host(site: Site, tmp_path: Path) -> None:
    _, run = await crawl_site(site, tmp_path, "--max-pages-per-host", "4")

    assert len(run.pages) == 4, run.urls()
    assert len([p for p in site.paths() if p != "/robots.txt"]) == 4


async def test_http_error_statuses_are_page_records(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "out"
    seeds = seeds_file(tmp_path, *(site.url(f"/status/{c}") for c in (404, 410, 500)))
    result = await run_crawl(seeds, *fast(out, retries=1))
    assert result.returncode == 0, str(result)
    run = load_run(out, "seeds")

    assert run.errors == []
    for code in (404, 410, 500):
        record = run.page(site.url(f"/status/{code}"))
        assert_page_shape(record)
        assert record["status"] == code
    assert run.page(site.url("/status/404"))["attempts"] == 1, "a 404 is not retried"
    assert run.page(site.url("/status/500"))["attempts"] == 2, "a 500 is retried"
    assert (site.count("/status/404"), site.count("/status/500")) == (1, 2)
    assert run.stats["status_counts"] == {"404": 1, "410": 1, "500": 1}


async def test_warc_file_holds_every_response(site: Site, tmp_path: Path) -> None:
    from warcio.archiveiterator import ArchiveIterator

    _, run = await crawl_site(site, tmp_path, "--warc", "--max-depth", "1")

    warcs = list(run.dir.glob("*.warc.gz"))
    assert warcs, f"no .warc.gz in {sorted(p.name for p in run.dir.iterdir())}"
    responses: dict[str, int] = {}
    for path in warcs:
        with path.open("rb") as stream:
            for record in ArchiveIterator(stream):
                if record.rec_type == "response":
                    uri = record.rec_headers.get_header("WARC-Target-URI")
                    responses[uri] = int(record.http_headers.get_statuscode())
    for page in run.pages:
        assert responses.get(page["url"]) == 200, f"{page['url']} not in the WARC: {responses}"


# --- runs over time -------------------------------------------------------------------------


async def _next_second() -> None:
    """Sleep into the next UTC second, so a new run cannot share a RUN_ID with the last."""
    now = datetime.now(UTC)
    await asyncio.sleep(1.05 - now.microsecond / 1e6)


@pytest.mark.slow
async def test_finished_job_run_again_recrawls_with_conditional_requests(
        site: Site, tmp_path: Path) -> None:
    out = tmp_path / "out"
    paths = ["/cond/etag", "/cond/last-modified", "/cond/changing", "/cond/vanishing",
             "/site/private/static"]
    seeds = seeds_file(tmp_path, *(site.url(p) for p in paths))
    first = await run_crawl(seeds, *fast(out))
    assert first.returncode == 0, str(first)
    run1 = load_run(out, "seeds")
    assert all(p["changed"] is None for p in run1.pages)
    await _next_second()
    mark = len(site.log)

    second = await run_crawl(seeds, *fast(out))
    assert second.returncode == 0, str(second)
    dirs = run_dirs(out, "seeds")
    assert len(dirs) == 2, f"a finished job run again starts a new run: {dirs}"
    latest = (out / "seeds" / "latest").resolve()
    assert latest == dirs[-1].resolve() and latest != run1.dir.resolve()
    run2 = load_run(out, "seeds", latest)
    asked = {h.path_qs: h.headers for h in site.log[mark:]}
    assert asked["/cond/etag"].get("if-none-match") == '"v1"', asked["/cond/etag"]
    assert asked["/cond/last-modified"].get("if-modified-since") == \
        "Tue, 01 Sep 2026 10:00:00 GMT"

    for path in ("/cond/etag", "/cond/last-modified"):
        old, new = run1.page(site.url(path)), run2.page(site.url(path))
        assert_page_shape(new)
        assert (new["status"], new["not_modified"], new["changed"]) == (304, True, False)
        for key in ("sha256", "simhash", "title"):
            assert new[key] == old[key], f"{path}: {key} of the last full fetch"
    changing = run2.page(site.url("/cond/changing"))
    assert (changing["status"], changing["changed"]) == (200, True)
    assert run2.page(site.url("/cond/vanishing"))["status"] == 404
    static = run2.page(site.url("/site/private/static"))
    assert (static["status"], static["changed"], static["not_modified"]) == (200, False, False)
    stats = run2.stats
    assert (stats["new"], stats["unchanged"], stats["gone"]) == (0, 3, 1), stats
    # the vanished page's sha256 changed too, but it is counted once, as gone (contract 4b)
    assert stats["changed"] == sum(p["changed"] is True and p["status"] == 200
                                   for p in run2.pages) >= 1, stats
    assert sum(stats[k] for k in ("new", "changed", "unchanged", "gone")) == stats["pages"]

    await _next_second()
    mark = len(site.log)
    third = await run_crawl(seeds, *fast(out), "--fresh")
    assert third.returncode == 0, str(third)
    fresh = {h.path_qs: h.headers for h in site.log[mark:]}
    assert "if-none-match" not in fresh["/cond/etag"], "--fresh forgets the validators"
    run3 = load_run(out, "seeds", (out / "seeds" / "latest").resolve())
    assert run3.page(site.url("/cond/etag"))["status"] == 200
    assert all(p["changed"] is None for p in run3.pages)


@pytest.mark.slow
async def test_recrawl_after_skips_recent_pages_but_crawls_new_seeds(
        site: Site, tmp_path: Path) -> None:
    out = tmp_path / "out"
    old, new = site.url("/site/page/7"), site.url("/site/page/8")
    first = await run_crawl(seeds_file(tmp_path, old), *fast(out), "--max-depth", "0")
    assert first.returncode == 0, str(first)
    await _next_second()
    mark = len(site.log)

    second = await run_crawl(seeds_file(tmp_path, old, new), *fast(out), "--max-depth", "0",
                             "--recrawl-after", "1h")
    assert second.returncode == 0, str(second)
    asked = [h.path_qs for h in site.log[mark:] if h.path_qs != "/robots.txt"]
    assert asked == ["/site/page/8"], "only the new seed is due"
    latest = load_run(out, "seeds", (out / "seeds" / "latest").resolve())
    assert latest.urls() == [new]
    assert latest.stats["new"] == 1


async def _interrupt_and_resume(site: Site, tmp_path: Path, signum: int,
                                group: bool = False) -> None:
    """Stop a crawl of ten slow pages after its first pages, then run the same command (the
    seven left take 1.75 s: the signal comes before the crawl ends even if the test waits)."""
    out = tmp_path / "out"
    paths = [f"/slow/0.25?i={i}" for i in range(10)]
    seeds = seeds_file(tmp_path, *(site.url(p) for p in paths))
    args: list[str | Path] = [seeds, *fast(out), "--concurrency", "1", "--per-host", "1"]
    crawl = await start_crawl(*args, new_session=group)
    # the crawl's start (the interpreter, its imports, the parse pool) took over the 15 s
    # default on a loaded machine: a deadline only, the signal goes as soon as it is asked
    await wait_until(lambda: sum(p.startswith("/slow/") for p in site.paths()) >= 3,
                     timeout=90, what="the third slow page to be asked for")
    orphans = crawl.descendants()
    if group:  # a terminal's Ctrl-C: the whole foreground group, parse processes too
        os.killpg(os.getpgid(crawl.pid), signum)
    else:
        crawl.signal(signum)
    try:
        stopped = await crawl.wait(30)
        await _check_resume(site, out, paths, args, signum, stopped)
    finally:
        reap(orphans)


async def _check_resume(site: Site, out: Path, paths: list[str], args: list[str | Path],
                        signum: int, stopped: Result) -> None:
    if signum == signal.SIGKILL:
        assert stopped.returncode == -signal.SIGKILL
        recorded = {p["url"] for p in _pages_so_far(out)}
    else:
        assert stopped.returncode == 130, str(stopped)
        assert_no_traceback(stopped)
        assert "KeyboardInterrupt" not in stopped.stderr, str(stopped)
        paused = load_run(out, "seeds")
        assert paused.stats["stop_reason"] == "interrupted"
        recorded = set(paused.urls())
    assert not (out / "seeds" / "latest").exists(), "an interrupted run is not finished"
    mark = len(site.log)

    resumed = await run_crawl(*args)
    assert resumed.returncode == 0, str(resumed)
    run = load_run(out, "seeds")  # one run folder: the same run went on
    assert sorted(run.urls()) == sorted(site.url(p) for p in paths), "one record per URL"
    again = [h.path_qs for h in site.log[mark:] if site.url(h.path_qs) in recorded]
    assert again == [], f"pages that had a record were fetched again: {again}"
    assert run.stats["stop_reason"] == "exhausted"
    assert site.app[COUNTERS]["slow_max_in_flight"] == 1, "--concurrency 1"


def _pages_so_far(out: Path) -> list[dict[str, Any]]:
    """Page records of a killed run, ignoring a torn last line (the resuming run drops it)."""
    records = []
    for path in (out / "seeds" / "runs").glob("*/pages*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
    return records


@pytest.mark.slow
async def test_sigint_saves_state_and_the_same_command_resumes(
        site: Site, tmp_path: Path) -> None:
    await _interrupt_and_resume(site, tmp_path, signal.SIGINT)


@pytest.mark.slow
async def test_ctrl_c_to_the_whole_process_group_stops_cleanly_and_resumes(
        site: Site, tmp_path: Path) -> None:
    """SIGINT to the crawl's process group, as Ctrl-C in a terminal sends it: the parse
    processes get it too (they died of KeyboardInterrupt mid-page, tracebacks on the
    terminal and the pool rebuilt as broken while the crawl stopped), yet the stop is the
    clean one: 130, no traceback, every line of pages.jsonl whole, and the same command
    finishes the run without fetching again what has a record."""
    await _interrupt_and_resume(site, tmp_path, signal.SIGINT, group=True)


@pytest.mark.slow
async def test_kill_9_then_the_same_command_continues_the_same_run(
        site: Site, tmp_path: Path) -> None:
    await _interrupt_and_resume(site, tmp_path, signal.SIGKILL)


@pytest.mark.slow
async def test_max_runtime_stops_gracefully(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "out"
    seeds = seeds_file(tmp_path, *(site.url(f"/slow/1?i={i}") for i in range(20)))
    # 20 sequential one-second pages take 20 s: a 6 s limit leaves room for a slow start
    # (the parse processes importing lxml, numpy and ada on a busy machine) on both sides
    result = await run_crawl(seeds, *fast(out), "--per-host", "1", "--max-runtime", "6s")
    assert result.returncode == 0, str(result)
    run = load_run(out, "seeds")
    assert run.stats["stop_reason"] == "max_runtime"
    assert 1 <= len(run.pages) < 20


def test_environment_has_the_crawl_script() -> None:
    from tests.conftest import CRAWL

    assert os.access(CRAWL, os.X_OK), f"{CRAWL} is missing; run `pip install -e '.[dev]'`"
