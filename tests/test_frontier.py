"""The SQLite frontier and the job lock: queue order, dedup, budgets, crash safety, runs."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from crawler.errors import LockedError
from crawler.frontier import Candidate, Journal, Outcome
from crawler.frontier.sqlite import DONE, LEASED, QUEUED, JobLock, SqliteFrontier
from crawler.models import Request
from crawler.pools import ThreadPool
from crawler.urls import host_of, normalize

ROOT = Path(__file__).resolve().parent.parent
RUN_ID_RE = re.compile(r"^\d{8}T\d{6}Z$")
A = "http://a.test/"
B = "http://b.test/"


@pytest.fixture
def threads() -> Iterator[ThreadPool]:
    pool = ThreadPool(2)
    yield pool
    pool.shutdown()


class Job:
    """Opens `SqliteFrontier`s on one job folder and closes whatever the test left open."""

    def __init__(self, job_dir: Path, threads: ThreadPool) -> None:
        self.dir = job_dir
        self.threads = threads
        self.open_frontiers: list[SqliteFrontier] = []

    async def open(self, seeds: Sequence[str] = (), *, fresh: bool = False,
                   recrawl_after_s: float = 0.0, **kwargs: int) -> SqliteFrontier:
        frontier = SqliteFrontier(self.dir, self.threads, **kwargs)
        self.info = await frontier.open(seeds, fresh=fresh, recrawl_after_s=recrawl_after_s)
        self.open_frontiers.append(frontier)
        return frontier

    async def close(self, frontier: SqliteFrontier) -> None:
        await frontier.close()
        self.open_frontiers.remove(frontier)

    def states(self) -> dict[str, int]:
        """url -> state, read through a connection of the test's own."""
        db = sqlite3.connect(self.dir / "state.sqlite")
        try:
            return dict(db.execute("SELECT url, state FROM urls"))
        finally:
            db.close()


@pytest.fixture
async def job(tmp_path: Path, threads: ThreadPool) -> AsyncIterator[Job]:
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    j = Job(job_dir, threads)
    yield j
    for frontier in list(j.open_frontiers):
        await frontier.close()


def done(request: Request, *links: str, simhash: str | None = None,
         fetched_at: float | None = None) -> Outcome:
    return Outcome(
        request=request, state="done", status=200,
        fetched_at=time.time() - 1 if fetched_at is None else fetched_at,
        sha256="0" * 64, simhash=simhash, title="t",
        candidates=[Candidate(url, request.depth + 1, request.url) for url in links])


async def fetch_all(frontier: SqliteFrontier) -> list[str]:
    """Lease and complete everything queued, as one run would."""
    urls = []
    while requests := await frontier.lease(10, ()):
        batch = await frontier.prepare([done(r) for r in requests])
        await frontier.commit(batch, Journal())
        urls += [r.url for r in requests]
    return urls


# --- opening and leasing ------------------------------------------------------------------


async def test_open_creates_state_file_and_a_run_id(job: Job) -> None:
    await job.open([A])
    assert (job.dir / "state.sqlite").is_file()
    assert RUN_ID_RE.match(job.info.run_id), job.info.run_id
    assert job.info.started_at.endswith("Z")
    assert job.info.resumed is False


async def test_seeds_are_admitted_once(job: Job) -> None:
    frontier = await job.open([A, B, A])
    assert await frontier.pending() == 2
    await job.close(frontier)
    frontier = await job.open([A, B])
    assert await frontier.pending() == 2
    assert sorted(job.states()) == [A, B]


async def test_lease_returns_oldest_first_and_marks_leased(job: Job) -> None:
    seeds = [f"http://a.test/{i}" for i in range(5)]
    frontier = await job.open(seeds)
    first = await frontier.lease(2, ())
    assert [r.url for r in first] == seeds[:2]
    assert all(isinstance(r, Request) and r.depth == 0 and r.referrer is None for r in first)
    assert [r.url for r in await frontier.lease(10, ())] == seeds[2:]
    assert await frontier.lease(10, ()) == []
    assert set(job.states().values()) == {LEASED}


async def test_lease_skips_hosts(job: Job) -> None:
    frontier = await job.open([A, "http://a.test/2", B, "http://c.test/"])
    got = await frontier.lease(10, {"a.test", "c.test"})
    assert [r.url for r in got] == [B]
    assert [r.url for r in await frontier.lease(10, ["b.test"])] == [
        A, "http://a.test/2", "http://c.test/"]


async def test_lease_finds_a_host_behind_the_queue_of_a_skipped_one(
        job: Job, monkeypatch: pytest.MonkeyPatch) -> None:
    # the queue's head is read only so far (LEASE_WINDOW); past it, each host's own queue
    monkeypatch.setattr("crawler.frontier.sqlite.LEASE_WINDOW", 3)
    many = [f"http://a.test/{i}" for i in range(10)]
    frontier = await job.open([*many, B, "http://c.test/", "http://b.test/2"])
    got = await frontier.lease(2, {"a.test"})
    assert [r.url for r in got] == [B, "http://b.test/2"]
    assert [r.url for r in await frontier.lease(5, {"a.test"})] == ["http://c.test/"]
    assert await frontier.lease(5, {"a.test"}) == []  # only a.test's are queued
    assert [r.url for r in await frontier.lease(3, ())] == many[:3]


async def test_lease_skipping_every_queued_host_then_one_admitted(job: Job) -> None:
    frontier = await job.open([A, "http://a.test/2"])
    (first,) = await frontier.lease(1, ())
    assert await frontier.lease(5, {"a.test"}) == []
    batch = await frontier.prepare([done(first, B, "http://a.test/3")])
    await frontier.commit(batch, Journal())
    assert [r.url for r in await frontier.lease(5, {"a.test"})] == [B]
    await frontier.release([B])
    await frontier.release([B])  # twice: queued once
    assert [r.url for r in await frontier.lease(5, {"a.test"})] == [B]
    assert await frontier.lease(5, {"a.test", "b.test"}) == []
    await job.close(frontier)
    frontier = await job.open()  # resumed: B's lease is given back, the counts read again
    assert [r.url for r in await frontier.lease(5, {"a.test"})] == [B]
    assert [r.url for r in await frontier.lease(5, ())] == ["http://a.test/2",
                                                          "http://a.test/3"]


def _urlsplit_host(url: str) -> str:
    return urlsplit(url).hostname or ""


def test_host_of_is_urlsplits_hostname_on_every_wpt_url() -> None:
    """host_of's memo of hosts by `scheme://netloc` gives urlsplit's answer, on the
    web-platform-tests URLs as written, as resolved, and as the crawler normalizes them."""
    cases = json.loads((ROOT / "tests" / "data" / "wpt" / "urltestdata.json").read_text(
        encoding="utf-8"))
    urls = {"http://a.test", "http://u:p@[::1]:8080?q#f", "https://x.test#/y", "a:b://c/d"}
    for case in cases:
        if isinstance(case, dict):
            urls.update(str(case[key]) for key in ("input", "href") if case.get(key))
            if case.get("href") and (key := normalize(str(case["href"]))) is not None:
                urls.add(key)
    for url in urls:
        assert _answer(host_of, url) == _answer(_urlsplit_host, url), url


def _answer(fn: Callable[[str], str], url: str) -> str:
    try:
        return fn(url)
    except ValueError as exc:  # urlsplit's, on a bracketed host that is no IPv6 address
        return f"ValueError: {exc}"


async def test_release_puts_urls_back_in_their_place(job: Job) -> None:
    frontier = await job.open([A, B])
    leased = await frontier.lease(1, ())
    await frontier.release([r.url for r in leased])
    assert job.states()[A] == QUEUED
    assert [r.url for r in await frontier.lease(2, ())] == [A, B]


async def test_pending_counts_queued_and_leased(job: Job) -> None:
    frontier = await job.open([A, B, "http://c.test/"])
    assert await frontier.pending() == 3
    requests = await frontier.lease(2, ())
    assert await frontier.pending() == 3
    batch = await frontier.prepare([done(requests[0])])
    await frontier.commit(batch, Journal())
    assert await frontier.pending() == 2


# --- outcomes -----------------------------------------------------------------------------


async def test_prepare_and_commit_mark_done_and_admit_links(job: Job) -> None:
    frontier = await job.open([A, B])
    (request,) = await frontier.lease(1, ())
    outcome = done(request, "http://a.test/new", B, A, "http://a.test/new", "http://a.test/2")
    batch = await frontier.prepare([outcome])
    assert batch.of(outcome).admitted == [True, False, False, False, True]
    await frontier.commit(batch, Journal())
    states = job.states()
    assert states[A] == DONE
    assert states["http://a.test/new"] == QUEUED
    queued = await frontier.lease(10, ())
    assert [r.url for r in queued] == [B, "http://a.test/new", "http://a.test/2"]
    new = queued[1]
    assert (new.depth, new.referrer) == (1, A)


async def test_failed_and_skipped_outcomes_leave_the_queue(job: Job) -> None:
    frontier = await job.open([A, B])
    a, b = await frontier.lease(2, ())
    batch = await frontier.prepare([Outcome(request=a, state="failed"),
                                    Outcome(request=b, state="skipped")])
    await frontier.commit(batch, Journal())
    assert await frontier.pending() == 0
    assert LEASED not in job.states().values()


async def test_links_only_outcome_admits_without_a_request(job: Job) -> None:
    frontier = await job.open([A])
    batch = await frontier.prepare(
        [], [Candidate("http://a.test/from-sitemap", 1, A + "sitemap.xml")])
    await frontier.commit(batch, Journal())
    assert batch.admitted == [True]
    assert await frontier.pending() == 2


async def test_per_host_budget_refuses_past_the_limit(job: Job) -> None:
    frontier = await job.open([A, B], max_pages_per_host=3)
    (request,) = await frontier.lease(1, ())
    links = [f"http://a.test/{i}" for i in range(5)] + ["http://b.test/1", "http://b.test/2"]
    outcome = done(request, *links)
    batch = await frontier.prepare([outcome])
    await frontier.commit(batch, Journal())
    # a.test holds A plus two more; b.test holds B plus two more
    assert batch.of(outcome).admitted == [True, True, False, False, False, True, True]
    assert await frontier.pending() == 2 + 3  # A is done


async def test_budget_counts_from_the_run_after_a_reopen(job: Job) -> None:
    frontier = await job.open([A], max_pages_per_host=2)
    await job.close(frontier)
    frontier = await job.open([A, "http://a.test/2", "http://a.test/3"], max_pages_per_host=2)
    assert await frontier.pending() == 2


# --- near duplicates ----------------------------------------------------------------------

BASE_HASH = 0x0123456789ABCDEF


def _hash(flip_bits: Sequence[int]) -> str:
    value = BASE_HASH
    for bit in flip_bits:
        value ^= 1 << bit
    return f"{value:016x}"


async def test_near_duplicate_within_hamming_3_names_the_earlier_page(job: Job) -> None:
    seeds = [f"http://a.test/{i}" for i in range(4)]
    frontier = await job.open(seeds)
    first, close, far, spread = await frontier.lease(4, ())
    outcomes = [
        done(first, simhash=_hash([])),
        done(close, simhash=_hash([0, 17, 63])),  # distance 3, bits in three blocks
        done(far, simhash=_hash([1, 2, 20, 40, 60])),  # distance 5 from the first
        done(spread, simhash=_hash([5, 21, 37])),  # distance 3, no block shared with `close`
    ]
    batch = await frontier.prepare(outcomes)
    await frontier.commit(batch, Journal())
    assert batch.admissions[0].near_duplicate_of is None
    assert batch.admissions[1].near_duplicate_of == first.url
    assert batch.admissions[2].near_duplicate_of is None
    assert batch.admissions[3].near_duplicate_of == first.url


async def test_near_duplicate_found_across_batches(job: Job) -> None:
    frontier = await job.open([A, B])
    a, b = await frontier.lease(2, ())
    batch = await frontier.prepare([done(a, simhash=_hash([]))])
    await frontier.commit(batch, Journal())
    later = done(b, simhash=_hash([30]))
    batch = await frontier.prepare([later])
    await frontier.commit(batch, Journal())
    assert batch.of(later).near_duplicate_of == A


async def test_a_page_is_never_its_own_duplicate(job: Job) -> None:
    frontier = await job.open([A])
    await fetch_all(frontier)
    await frontier.finish("exhausted", "2026-01-01T00:00:00.000Z")
    await job.close(frontier)
    frontier = await job.open([A], recrawl_after_s=0)
    (again,) = await frontier.lease(1, ())
    first = done(again, simhash=_hash([]))
    batch = await frontier.prepare([first])
    await frontier.commit(batch, Journal())
    assert batch.of(first).near_duplicate_of is None


# --- crashes, resumes and runs ------------------------------------------------------------


async def test_prepare_without_commit_leaves_nothing_done_after_a_crash(job: Job) -> None:
    frontier = await job.open([A])
    (request,) = await frontier.lease(1, ())
    await frontier.prepare([done(request, "http://a.test/child")])
    await job.close(frontier)  # the process dies between prepare and commit
    frontier = await job.open([A])
    assert job.info.resumed is True
    assert job.states() == {A: QUEUED}
    assert [r.url for r in await frontier.lease(10, ())] == [A]


async def test_reopening_an_unfinished_run_resumes_it_and_requeues_leases(job: Job) -> None:
    frontier = await job.open([A, B])
    run_id = job.info.run_id
    await frontier.lease(1, ())
    await frontier.finish("max_pages", None)  # paused, not finished
    await job.close(frontier)
    assert job.states()[A] == LEASED
    frontier = await job.open([A, B])
    assert job.info.run_id == run_id
    assert job.info.resumed is True
    assert job.states() == {A: QUEUED, B: QUEUED}
    assert [r.url for r in await frontier.lease(10, ())] == [A, B]


async def test_finished_run_then_reopen_starts_a_new_run(job: Job) -> None:
    frontier = await job.open([A])
    first_run = job.info.run_id
    await fetch_all(frontier)
    await frontier.finish("exhausted", "2026-01-01T00:00:00.000Z")
    await job.close(frontier)
    await job.open([A], recrawl_after_s=3600)
    assert job.info.resumed is False
    assert RUN_ID_RE.match(job.info.run_id)
    assert job.info.run_id > first_run


async def test_new_run_requeues_done_urls_with_recrawl_after_zero(job: Job) -> None:
    frontier = await job.open([A])
    assert await fetch_all(frontier) == [A]
    await frontier.finish("exhausted", "2026-01-01T00:00:00.000Z")
    await job.close(frontier)
    frontier = await job.open([A], recrawl_after_s=0)
    assert job.states() == {A: QUEUED}
    (request,) = await frontier.lease(1, ())
    assert request.sha256 == "0" * 64  # what the last fetch knew, for a conditional request
    assert request.last_status == 200


async def test_new_run_keeps_fresh_done_urls_with_large_recrawl_after(job: Job) -> None:
    frontier = await job.open([A])
    await fetch_all(frontier)
    await frontier.finish("exhausted", "2026-01-01T00:00:00.000Z")
    await job.close(frontier)
    frontier = await job.open([A, B], recrawl_after_s=86400)
    assert job.states() == {A: DONE, B: QUEUED}
    assert await frontier.pending() == 1


async def test_fresh_drops_the_state(job: Job) -> None:
    frontier = await job.open([A, B])
    await fetch_all(frontier)
    await job.close(frontier)
    frontier = await job.open(["http://c.test/"], fresh=True)
    assert job.info.resumed is False
    assert job.states() == {"http://c.test/": QUEUED}


# --- the job lock -------------------------------------------------------------------------


async def test_second_frontier_on_an_open_job_is_locked(job: Job, threads: ThreadPool) -> None:
    await job.open([A])
    with pytest.raises(LockedError, match=f"PID {os.getpid()}"):
        await SqliteFrontier(job.dir, threads).open([A], fresh=False, recrawl_after_s=0)


_HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from crawler.frontier.sqlite import JobLock
    JobLock(Path(sys.argv[1])).acquire()
    print("locked", flush=True)
    time.sleep(60)
""")


def _hold_lock(path: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "locked"
    return child


@pytest.mark.parametrize("how", ["sigkill", "exit"])
def test_lock_held_by_another_process_names_its_pid(tmp_path: Path, how: str) -> None:
    path = tmp_path / "lock"
    child = _hold_lock(path)
    try:
        with pytest.raises(LockedError) as info:
            JobLock(path).acquire()
        assert f"PID {child.pid}" in str(info.value)
        assert str(path) in str(info.value)
        assert info.value.exit_code == 3
    finally:
        child.send_signal(signal.SIGKILL if how == "sigkill" else signal.SIGTERM)
        child.wait(timeout=10)
        assert child.stdout is not None
        child.stdout.close()
    lock = JobLock(path)
    lock.acquire()  # the kernel dropped the dead holder's lock
    assert path.read_text().strip() == str(os.getpid())
    lock.release()


def test_released_lock_can_be_taken_again(tmp_path: Path) -> None:
    first = JobLock(tmp_path / "lock")
    first.acquire()
    first.release()
    second = JobLock(tmp_path / "lock")
    second.acquire()
    second.release()


async def test_pending_kept_in_memory_matches_the_table_through_every_move(job: Job) -> None:
    def unfinished() -> int:
        return sum(state in (QUEUED, LEASED) for state in job.states().values())

    frontier = await job.open([A, B])
    assert await frontier.pending() == unfinished() == 2
    a, b = await frontier.lease(2, ())
    batch = await frontier.prepare([done(a, "http://a.test/1", "http://a.test/2", A),
                                    Outcome(request=b, state="failed")])
    await frontier.commit(batch, Journal())
    assert await frontier.pending() == unfinished() == 2
    leased = await frontier.lease(1, ())
    await frontier.release([r.url for r in leased])
    batch = await frontier.prepare([], [Candidate("http://a.test/3", 1, A)])
    await frontier.commit(batch, Journal())
    assert await frontier.pending() == unfinished() == 3
    await frontier.close()
    again = await job.open(["http://c.test/"])
    assert await again.pending() == unfinished() == 4
