"""The near-duplicate index (block tables with a cap per bucket), the same in both stores:
a real SQLite file and the real redis-server of the session."""

from __future__ import annotations

import itertools
import random
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from crawler.frontier import Journal, Outcome, neardup
from crawler.frontier.redis import RedisFrontier
from crawler.frontier.sqlite import SqliteFrontier
from crawler.models import Request
from crawler.pools import ThreadPool
from crawler.settings import load
from tests.conftest import RedisServer

_jobs = itertools.count(1)
LUA = Path(neardup.__file__).with_name("lua") / "common.lua"


class Store:
    """One frontier of either kind, driven as the recorder drives it."""

    def __init__(self, frontier: SqliteFrontier | RedisFrontier, kind: str) -> None:
        self.frontier = frontier
        self.kind = kind

    async def pages(self, hashes: list[int], batch: int = 100) -> list[str | None]:
        """Fetch one page per fingerprint, in order; each page's near_duplicate_of."""
        # Redis keeps the index per shard (README, "On a Redis Cluster"): its pages are of one
        # host, so that they share one; SQLite's is the job's, across 50 hosts
        hosts = 50 if self.kind == "sqlite" else 1
        urls = [f"http://h{i % hosts}.test/{i}" for i in range(len(hashes))]
        await self.frontier.open(urls, fresh=False, recrawl_after_s=0)
        leased: dict[str, Request] = {}
        while len(leased) < len(urls):
            got = await self.frontier.lease(1000, ())
            assert got, f"{len(leased)} of {len(urls)} leased"
            leased.update((r.url, r) for r in got)
        found: list[str | None] = []
        for start in range(0, len(urls), batch):
            outcomes = [Outcome(leased[u], "done", status=200, fetched_at=1.0, sha256="0" * 64,
                                simhash=f"{h:016x}", title="t")
                        for u, h in zip(urls[start:start + batch],
                                        hashes[start:start + batch], strict=True)]
            prepared = await self.frontier.prepare(outcomes)
            await self.frontier.commit(prepared, Journal({"pages": (0, b"")}))
            found += [a.near_duplicate_of for a in prepared.admissions]
        return found

    async def bucket_sizes(self) -> list[int]:
        """Fingerprints per stored bucket (Redis), or the fingerprints filed (SQLite, whose
        buckets are built in memory from them)."""
        if isinstance(self.frontier, SqliteFrontier):
            db = sqlite3.connect(self.frontier.path)
            try:
                return [n for (n,) in db.execute("SELECT count(*) FROM fingerprints")]
            finally:
                db.close()
        client = self.frontier._client
        keys = [k async for k in client.scan_iter(
            match=f"crawl:{{{self.frontier.job}:#*}}:nb:*")]
        return [await client.strlen(k) // 8 for k in keys]


@pytest.fixture
def threads() -> Iterator[ThreadPool]:
    pool = ThreadPool(2)
    yield pool
    pool.shutdown()


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path,
                threads: ThreadPool) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        frontier: SqliteFrontier | RedisFrontier = SqliteFrontier(tmp_path, threads)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        frontier = RedisFrontier(load(None, {"frontier": server.url}), f"nd{next(_jobs)}")
    yield Store(frontier, request.param)
    if isinstance(frontier, RedisFrontier):
        await frontier.reset()
    await frontier.close()


def flip(value: int, rng: random.Random, bits: int) -> int:
    for bit in rng.sample(range(64), bits):
        value ^= 1 << bit
    return value


def brute_force(hashes: list[int], distance: int = 3) -> list[set[int]]:
    """For each page, the indexes of the earlier pages within the distance."""
    return [{j for j in range(i) if (hashes[i] ^ hashes[j]).bit_count() <= distance}
            for i in range(len(hashes))]


async def test_every_pair_within_3_is_found_and_nothing_else(store: Store) -> None:
    rng = random.Random(12)
    hashes = [rng.getrandbits(64) for _ in range(500)]
    for _ in range(200):  # near copies (0 to 3 bits flipped) of earlier pages, interleaved
        at = rng.randrange(len(hashes))
        hashes.insert(rng.randrange(at, len(hashes)) + 1,
                      flip(hashes[rng.randrange(at + 1)], rng, rng.randrange(4)))
    found = await store.pages(hashes)
    truth = brute_force(hashes)
    index = {f"/{i}": i for i in range(len(hashes))}
    for i, (url, earlier) in enumerate(zip(found, truth, strict=True)):
        if earlier:
            assert url is not None, f"page {i} has earlier twins {earlier}, none found"
            assert index[re.sub(r"^http://[^/]+", "", url)] in earlier
        else:
            assert url is None, f"page {i} has no twin, {url} was named"
    assert sum(bool(t) for t in truth) >= 200


async def test_a_bucket_holds_at_most_the_cap_and_lookups_go_on(store: Store) -> None:
    rng = random.Random(13)
    # 150 fingerprints whose lowest block is 0: one bucket would hold them all
    crowd = [rng.getrandbits(48) << 16 for _ in range(150)]
    twin = crowd[-1] ^ (1 << 20)  # in block 1: blocks 0, 2 and 3 still agree
    found = await store.pages([*crowd, twin])
    if store.kind == "redis":
        assert max(await store.bucket_sizes()) == neardup.BUCKET_CAP
    assert found[-1] is not None and found[-1].endswith("/149"), found[-1]
    assert found[:-1] == [None] * 150


async def test_identical_fingerprints_are_filed_once_and_name_the_first(store: Store) -> None:
    found = await store.pages([0x0123456789ABCDEF] * 120)
    assert found[0] is None
    assert {u.rsplit("/", 1)[1] for u in found[1:] if u} == {"0"}
    assert sorted(await store.bucket_sizes()) == ([1] if store.kind == "sqlite" else [1] * 4)


def test_the_lua_scripts_use_the_same_cap() -> None:
    match = re.search(r"local NEAR_CAP = (\d+)", LUA.read_text())
    assert match is not None and int(match.group(1)) == neardup.BUCKET_CAP


def test_block_index_compares_at_most_the_cap_per_bucket() -> None:
    rng = random.Random(14)
    crowd = [rng.getrandbits(48) << 16 for _ in range(3 * 4096)]
    index = neardup.BlockIndex(crowd[:4096])  # filed at open, then one by one
    for value in crowd[4096:]:
        index.add(value)
    assert len(index) == len(crowd)
    # every one shares block 0; only the first BUCKET_CAP of that bucket are compared, the
    # others are found through their other blocks
    assert index.near(crowd[-1], 3) == [len(crowd) - 1]
    assert index.near(crowd[5] ^ 1 << 40, 3) == [5]
    assert index.near(crowd[1000] ^ 1, 0) == []
    assert [index.get(n) for n in (0, 4000, len(crowd) - 1)] == [crowd[0], crowd[4000],
                                                               crowd[-1]]


def test_buckets_are_the_four_16_bit_blocks() -> None:
    assert neardup.buckets(0x0123456789ABCDEF) == [0xCDEF, 1 << 16 | 0x89AB,
                                                  2 << 16 | 0x4567, 3 << 16 | 0x0123]


async def test_a_state_file_from_before_moves_its_fingerprints(tmp_path: Path,
                                                               threads: ThreadPool) -> None:
    frontier = SqliteFrontier(tmp_path, threads)
    await frontier.open(["http://a.test/"], fresh=False, recrawl_after_s=0)
    await frontier.close()
    db = sqlite3.connect(tmp_path / "state.sqlite")
    db.execute("CREATE TABLE simhashes (url TEXT PRIMARY KEY, simhash TEXT NOT NULL, "
               "b0 INTEGER, b1 INTEGER, b2 INTEGER, b3 INTEGER)")
    db.execute("INSERT INTO simhashes VALUES ('http://old.test/', '0123456789abcdef', 0,0,0,0)")
    db.commit()
    db.close()
    store = Store(SqliteFrontier(tmp_path, threads), "sqlite")
    found = await store.pages([0x0123456789ABCDEE])
    await store.frontier.close()
    assert found == ["http://old.test/"]
    db = sqlite3.connect(tmp_path / "state.sqlite")
    tables: Any = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    db.close()
    assert "simhashes" not in tables
