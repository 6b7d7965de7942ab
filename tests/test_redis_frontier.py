"""The Redis frontier's Lua transitions, each against the real redis-server of the session."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from crawler.frontier import Candidate, Journal, Outcome, Prepared
from crawler.frontier.redis import FrontierUnavailable, RedisFrontier
from crawler.politeness import Politeness
from crawler.settings import load
from crawler.urls import host_of
from tests.conftest import RedisServer

ORIGIN = "http://127.0.0.1:9"
_jobs = itertools.count(1)

Make = Callable[..., RedisFrontier]


@pytest.fixture
async def make(redis_server: RedisServer) -> AsyncIterator[Make]:
    """Workers of one fresh job: `make(worker="a", lease_timeout=1.0, ...)`."""
    job = f"unit{next(_jobs)}"
    made: list[RedisFrontier] = []

    def factory(**overrides: Any) -> RedisFrontier:
        frontier = RedisFrontier(load(None, {"frontier": redis_server.url, **overrides}), job)
        made.append(frontier)
        return frontier

    yield factory
    if made:
        await made[0].reset()
    for frontier in made:
        await frontier.close()


async def _open(frontier: RedisFrontier, *seeds: str) -> None:
    await frontier.open(list(seeds), fresh=False, recrawl_after_s=0)


def _done(request: Any, *links: str, simhash: str | None = None) -> Outcome:
    return Outcome(request, "done", status=200, fetched_at=1.0, etag='"e"', sha256="0" * 64,
                   simhash=simhash, title="t",
                   candidates=[Candidate(u, request.depth + 1, request.url) for u in links])


async def _ack(frontier: RedisFrontier, outcomes: list[Outcome]) -> Prepared:
    batch = await frontier.prepare(outcomes)
    await frontier.commit(batch, Journal({"pages": (0, b"x\n")}, {"counters": {"pages": 1}}))
    return batch


async def test_enqueue_admits_each_url_once_and_pending_counts_queued_and_leased(
        make: Make) -> None:
    a = make(worker="a")
    await _open(a, f"{ORIGIN}/1", f"{ORIGIN}/2", f"{ORIGIN}/1")
    assert await a.pending() == 2
    leased = await a.lease(10, ())
    assert [r.url for r in leased] == [f"{ORIGIN}/1", f"{ORIGIN}/2"]
    assert await a.pending() == 2, "leased URLs are still pending"
    outcome = _done(leased[0], f"{ORIGIN}/2", f"{ORIGIN}/3", f"{ORIGIN}/3")
    batch = await _ack(a, [outcome])
    assert batch.of(outcome).admitted == [False, True, False], "seen, new, repeated in the batch"
    assert await a.pending() == 2  # /1 done, /3 queued, /2 leased
    await _ack(a, [Outcome(leased[1], "failed", fetched_at=1.0)])
    third = await a.lease(10, ())
    assert [r.url for r in third] == [f"{ORIGIN}/3"] and third[0].depth == 1
    await _ack(a, [Outcome(third[0], "skipped")])
    assert await a.pending() == 0, "zero exactly when nothing is queued or leased"


async def test_a_lease_is_one_workers_until_it_expires_then_anothers(make: Make) -> None:
    a, b = make(worker="a", lease_timeout=1.0), make(worker="b", lease_timeout=1.0)
    await _open(a, f"{ORIGIN}/1")
    await _open(b)
    first = await a.lease(5, ())
    assert len(first) == 1 and await b.lease(5, ()) == []
    a._tokens.clear()  # a dies: no renewal from here on
    if a._renewer is not None:
        a._renewer.cancel()
    for _ in range(60):
        again = await b.lease(5, ())
        if again:
            break
        await asyncio.sleep(0.05)
    assert [r.url for r in again] == [f"{ORIGIN}/1"], "the expired lease was reaped"
    a._tokens[first[0].url] = "a:1"  # a comes back from the dead with its old token
    with pytest.raises(FrontierUnavailable, match="expired"):
        await a.prepare([_done(first[0], f"{ORIGIN}/9")])
    assert await b.pending() == 1, "nothing of the stale batch was written"
    await _ack(b, [_done(again[0])])
    assert await b.pending() == 0


async def test_release_puts_a_lease_back_at_the_front(make: Make) -> None:
    a = make(worker="a")
    await _open(a, f"{ORIGIN}/1", f"{ORIGIN}/2")
    leased = await a.lease(1, ())
    await a.release([leased[0].url])
    assert [r.url for r in await a.lease(1, ())] == [f"{ORIGIN}/1"]


async def test_ack_applied_once_when_retried_after_a_lost_reply(make: Make) -> None:
    a = make(worker="a")
    await _open(a, f"{ORIGIN}/1")
    [request] = await a.lease(1, ())
    outcome = _done(request, f"{ORIGIN}/2")
    await a.prepare([outcome])
    # the same prepare again, as `_patiently` sends it when the reply was lost
    a._batches -= 1
    a._known.clear()
    batch = await a.prepare([outcome])
    assert batch.of(outcome).admitted == [True], "the staged answer, not a second admission"
    journal = Journal({"pages": (0, b"x\n")}, {})
    sent = a._open_batch
    await a.commit(batch, journal)
    # the same scripts again, as `_patiently` sends them when a reply was lost
    a._open_batch, a._seq, a._last_batch = sent, a._seq - 1, ""
    await a.commit(batch, journal)
    assert await a.pending() == 1, "/2 queued once, /1 acked once"


async def test_journal_is_per_worker_and_a_restart_with_the_name_gets_it_back(
        make: Make) -> None:
    a = make(worker="a")
    await _open(a, f"{ORIGIN}/1")
    [request] = await a.lease(1, ())
    batch = await a.prepare([_done(request)])
    await a.commit(batch, Journal({"pages": (5, b"line\n")}, {"counters": {"pages": 3}}))
    await a.close()
    again = make(worker="a")
    info = await again.open([], fresh=False, recrawl_after_s=0)
    assert info.resumed and info.worker == "a"
    assert info.journal.files == {"pages": (5, b"line\n")}
    assert info.journal.totals == {"counters": {"pages": 3}}
    other = make(worker="b")
    assert (await other.open([], fresh=False, recrawl_after_s=0)).journal.files == {}
    assert await other.others() == [{"counters": {"pages": 3}}]


async def test_a_live_workers_name_cannot_be_taken(make: Make) -> None:
    from crawler.errors import LockedError

    await _open(make(worker="a"), f"{ORIGIN}/1")
    with pytest.raises(LockedError, match="worker 'a'"):
        await _open(make(worker="a"))


async def test_automatic_names_take_the_lowest_free_slot(make: Make) -> None:
    first, second = make(), make()
    await _open(first)
    await _open(second)
    assert first.worker.endswith("-1") and second.worker.endswith("-2")
    await first.close()
    third = make()
    await _open(third)
    assert third.worker == first.worker, "a restarted worker takes back the freed name"


async def test_near_duplicates_are_found_across_workers(make: Make) -> None:
    a, b = make(worker="a"), make(worker="b")
    await _open(a, f"{ORIGIN}/1", f"{ORIGIN}/2", f"{ORIGIN}/3")
    await _open(b)
    one, two, three = await a.lease(3, ())
    await _ack(a, [_done(one, simhash="00ff00ff00ff00ff")])
    b._tokens[two.url] = a._tokens.pop(two.url)  # hand the leases over as if b held them
    b._tokens[three.url] = a._tokens.pop(three.url)
    near = _done(two, simhash="00ff00ff00ff00f8")  # 3 bits apart
    far = _done(three, simhash="ff00ff00ff00ff00")
    batch = await _ack(b, [near, far])
    assert batch.of(near).near_duplicate_of == one.url and batch.of(far).near_duplicate_of is None


async def test_near_duplicates_are_found_across_hosts_of_other_shards(make: Make) -> None:
    """The index is the job's, not a shard's: a mirror on another host (another shard) is a
    near duplicate of the original, and a page of the same batch of one before it."""
    a = make(worker="a")
    hosts = ["http://127.0.0.1:1", "http://127.0.0.2:1", "http://127.0.0.3:1"]
    assert len({a.shard_of(host_of(h + "/")) for h in hosts}) == 3
    await _open(a, *(f"{h}/page" for h in hosts))
    leased: list[Any] = []
    for _ in range(50):  # a lease script takes one shard's URLs
        leased += await a.lease(3, ())
        if len(leased) == 3:
            break
        await asyncio.sleep(0.3)
    first, second, third = sorted(leased, key=lambda r: r.url)
    original = _done(first, simhash="00ff00ff00ff00ff")
    batch = await _ack(a, [original])
    assert batch.of(original).near_duplicate_of is None
    mirror = _done(second, simhash="00ff00ff00ff00f8")  # 3 bits from the first
    mate = _done(third, simhash="80ff00ff00ff00f8")  # 1 bit from the mirror, 4 from the first
    batch = await _ack(a, [mirror, mate])
    assert batch.of(mirror).near_duplicate_of == first.url
    assert batch.of(mate).near_duplicate_of == second.url


async def test_recrawl_on_a_new_run_queues_due_urls_with_their_validators(make: Make) -> None:
    a = make(worker="a")
    await _open(a, f"{ORIGIN}/1")
    [request] = await a.lease(1, ())
    await _ack(a, [_done(request)])
    await a.finish("exhausted", "2026-01-01T00:00:00.000Z")
    await a.close()
    again = make(worker="a")
    info = await again.open([f"{ORIGIN}/1"], fresh=False, recrawl_after_s=0)
    assert not info.resumed and info.journal.files == {}, "a new run starts with no journal"
    [refetch] = await again.lease(1, ())
    assert (refetch.url, refetch.etag, refetch.last_status) == (f"{ORIGIN}/1", '"e"', 200)
    assert await again.pending() == 1, "queued once, though also given as a seed"


async def test_fleet_window_is_held_by_one_worker_and_passes_the_next_start_on(
        make: Make) -> None:
    a, b = make(worker="a"), make(worker="b")
    await _open(a)
    await _open(b)
    assert await a.take("h", 5.0, 0.0) == 0, "a holds the window"
    assert await a.take("h", 5.0, 0.0) == 0, "and may take it again"
    assert await b.take("h", 5.0, 0.0) > 0, "b waits while a holds it"
    assert await a.take("h", 5.0, 0.0) > 0, "a yields to the waiting b"
    assert await b.take("h", 5.0, 0.0) == 0
    await b.give("h", 0.5)
    wait = await a.take("h", 5.0, 0.0)
    assert 0 < wait <= 0.5, "the next holder starts a delay after b's last start"
    await asyncio.sleep(wait)
    assert await a.take("h", 5.0, 0.0) == 0
    await a.give("h", 0.0)
    await b.defer("h", 5)
    assert await a.take("h", 5.0, 0.0) > 1, "Retry-After holds for every worker"
    assert await a.take("other", 5.0, 0.0) == 0, "other hosts keep their pace"


@pytest.mark.slow
async def test_dedup_is_exact_over_many_urls_and_its_memory_is_measured(make: Make) -> None:
    """Every URL admitted once; the README's bytes per URL come from `memory()` at scale."""
    a = make(worker="a")
    await _open(a)
    n = 20_000
    urls = [(f"http://example{i % 50}.test/page/{i}", 1, "") for i in range(n)]
    assert await a._enqueue(urls) == n == await a.pending()
    assert await a._enqueue(urls) == 0
    sizes = await a.memory()
    assert sizes["urls"] == n and 0 < sizes["seen"] < sizes["all"]


async def test_the_fleet_shares_a_hosts_pace_and_its_doubling(
        make: Make, redis_server: RedisServer) -> None:
    """A pace one worker learns (429 and 503 doubling it) is the pace of every worker of the
    fleet, read from the fleet's state at the next start, and holds the fleet's next start."""
    overrides = {"frontier": redis_server.url, "backoff": 1.0, "max_retry_after": 8.0}
    a, b = make(worker="a", **overrides), make(worker="b", **overrides)
    await _open(a)
    settings = load(None, overrides)
    mine, theirs = Politeness(settings, a), Politeness(settings, b)
    slot = mine.slot("h")
    for i, status in enumerate((429, 503, 429)):
        slot.answered(f"http://h/{i}", status, 0.01)
    assert slot.spacing() == 4.0
    await mine.aclose()  # every pace and deferral has reached Redis
    await _open(b)
    assert await b.take("h", 1.0, 0.0) > 3, "the doubling holds fleet-wide"
    await a._command("HDEL", a.host_prefix("h") + "gate", "n")  # only the pace is under test
    other = theirs.slot("h")
    assert other.spacing() == 0.0, "nothing learnt yet"
    async with other:
        pass
    assert other.spacing() == 4.0, "the fleet's pace, read back"
    await theirs.aclose()  # b gives its window back, its next start at the pace from now
    third = make(worker="c", **overrides)
    await _open(third)
    assert await third.take("h", 1.0, 0.0) > 3, "and the start b made is spaced by it"


async def test_a_stopping_worker_gives_its_windows_back(make: Make,
                                                        redis_server: RedisServer) -> None:
    a, b = make(worker="a"), make(worker="b")
    await _open(a)
    await _open(b)
    politeness = Politeness(load(None, {"frontier": redis_server.url}), a)
    async with politeness.slot("h"):
        assert await b.take("h", 1.0, 0.0) > 0, "a holds the window while it fetches"
    await politeness.aclose()
    assert await b.take("h", 1.0, 0.0) == 0, "given back at a's close, not at its expiry"


async def test_a_hosts_pace_lives_in_its_gate_and_comes_with_its_window(make: Make) -> None:
    a, b = make(worker="a"), make(worker="b")
    await _open(a)
    await _open(b)
    await a.pace("h", 2.5)
    assert await a._command("HGET", a.host_prefix("h") + "gate", "p") == b"2500", \
        "in the host's slot, beside its window"

    async def hgets() -> int:
        return int((await b._client.info("commandstats"))["cmdstat_hget"]["calls"])

    assert await b.take("h", 1.0, 0.0) == 0
    before = await hgets()
    assert await b.pace("h") == 2.5, "the pace the window came with"
    assert await hgets() == before, "read with the window, no HGET of its own"
    assert await b.pace("h") == 2.5, "read from Redis again later"
