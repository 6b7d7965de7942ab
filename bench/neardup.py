"""`python -m bench.neardup`: time per near-duplicate lookup against N stored fingerprints.

For each store (SQLite, and Redis when `redis-server` is on PATH) and each N (default 10 000
and 1 000 000): the index is filled with N random fingerprints through the store's own layout
(see crawler/frontier/neardup.py), in bulk, then pages
with fresh random fingerprints go through the store as the recorder sends them:

- SQLite: the frontier is opened on the filled file (the time it takes to read the index
  into memory is `open_s`), then `SqliteFrontier._near_duplicate` (lookup and filing) runs
  for each page, a transaction per batch of 250, as `prepare` calls it and `commit` ends it;
- Redis: `RedisFrontier.prepare` on batches of leased pages of one host, whose shard holds
  the index (lookup in `prepare.lua`; each batch is then committed, untimed, so its
  `settle.lua` files the batch's fingerprints beside the N: at most LOOKUPS more).

The figure is the median over the batches of the wall time per page (the machine is shared:
a median resists the bursts of others' load); a benchmark, never a test. Results are printed
as JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from crawler.frontier import Journal, Outcome, neardup
from crawler.frontier.redis import RedisFrontier
from crawler.frontier.sqlite import SqliteFrontier
from crawler.models import Request
from crawler.pools import ThreadPool
from crawler.settings import load

LOOKUPS = 5000  # pages timed per store and size, in batches of BATCH
PROBE_HOST = "probe.test"  # the pages' host: one shard of the Redis job
BATCH = 250


def _fill_buckets(hashes: list[int]) -> dict[int, list[int]]:
    buckets: dict[int, list[int]] = defaultdict(list)
    for value in hashes:
        for key in neardup.buckets(value):
            if len(buckets[key]) < neardup.BUCKET_CAP:
                buckets[key].append(value)
    return buckets


async def sqlite_lookup(folder: Path, stored: int, rng: random.Random) -> dict[str, float]:
    threads = ThreadPool(1)
    frontier = SqliteFrontier(folder, threads)
    await frontier.open([], fresh=True, recrawl_after_s=0)
    db = frontier.db
    db.execute("BEGIN")
    db.executemany("INSERT INTO fingerprints VALUES (?, ?, ?)",
                   ((i + 1, neardup.signed(rng.getrandbits(64)), f"http://stored.test/{i}")
                    for i in range(stored)))
    db.execute("COMMIT")
    await frontier.close()
    frontier = SqliteFrontier(folder, threads)
    start = time.perf_counter()
    await frontier.open([], fresh=False, recrawl_after_s=0)  # reads the index into memory
    opened = time.perf_counter() - start
    db = frontier.db
    probes = [f"{rng.getrandbits(64):016x}" for _ in range(LOOKUPS)]
    rounds: list[float] = []
    cpu: list[float] = []
    for at in range(0, LOOKUPS, BATCH):  # one transaction per batch, as the recorder commits
        began, began_cpu = time.perf_counter(), time.process_time()
        db.execute("BEGIN")
        for i in range(at, at + BATCH):
            frontier._near_duplicate(f"http://probe.test/{i}", probes[i])
        db.execute("COMMIT")
        rounds.append((time.perf_counter() - began) / BATCH)
        cpu.append((time.process_time() - began_cpu) / BATCH)
    await frontier.close()
    threads.shutdown()
    return {"us_per_lookup": round(statistics.median(rounds) * 1e6, 1),
            "cpu_us_per_lookup": round(statistics.median(cpu) * 1e6, 1),
            "open_s": round(opened, 2)}


async def redis_lookup(url: str, stored: int, rng: random.Random) -> dict[str, float]:
    frontier = RedisFrontier(load(None, {"frontier": url}), f"bench{stored}")
    await frontier.reset()
    client = frontier._client
    hashes = [rng.getrandbits(64) for _ in range(stored)]
    p = frontier.near_prefix()  # the job's index, a slot of its own
    for start in range(0, stored, 20_000):
        async with client.pipeline(transaction=False) as pipe:
            for i, h in enumerate(hashes[start:start + 20_000], start):
                pipe.hset(p + "np", f"{h:016x}", f"http://stored.test/{i}")
            await pipe.execute()
    buckets = list(_fill_buckets(hashes).items())
    for start in range(0, len(buckets), 20_000):
        async with client.pipeline(transaction=False) as pipe:
            for key, values in buckets[start:start + 20_000]:
                i, block = key >> neardup.BLOCK_BITS, key & 0xFFFF
                pipe.set(f"{p}nb:{i}:{block:04x}", b"".join(v.to_bytes(8, "big") for v in values))
            await pipe.execute()
    seeds = [f"http://{PROBE_HOST}/{i}" for i in range(LOOKUPS)]
    await frontier.open(seeds, fresh=False, recrawl_after_s=0)
    rounds: list[float] = []
    for _ in range(LOOKUPS // BATCH):
        leased: list[Request] = []
        while len(leased) < BATCH:
            leased += await frontier.lease(BATCH - len(leased), ())
        batch = [Outcome(r, "done", status=200, simhash=f"{rng.getrandbits(64):016x}")
                 for r in leased]
        began = time.perf_counter()
        prepared = await frontier.prepare(batch)
        rounds.append((time.perf_counter() - began) / BATCH)
        await frontier.commit(prepared, Journal())  # a staged batch cannot be prepared again
    await frontier.reset()
    await frontier.close()
    return {"us_per_lookup": round(statistics.median(rounds) * 1e6, 1)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.neardup", description=__doc__)
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--stores", default="sqlite,redis")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    stores = args.stores.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="crawl-neardup-"))
    server = None
    try:
        if "redis" in stores and shutil.which("redis-server"):
            port = _free_port()
            server = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(tmp)], stdout=subprocess.DEVNULL)
            time.sleep(0.5)
        for size in sizes:
            for store in stores:
                rng = random.Random(size)
                if store == "sqlite":
                    folder = tmp / f"sqlite-{size}"
                    folder.mkdir()
                    per = asyncio.run(sqlite_lookup(folder, size, rng))
                elif server is not None:
                    per = asyncio.run(redis_lookup(f"redis://127.0.0.1:{port}/0", size, rng))
                else:
                    continue
                print(json.dumps({"store": store, "stored": size, **per}), flush=True)
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
