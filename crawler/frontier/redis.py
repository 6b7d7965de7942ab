"""The shared frontier: one Redis (or a Redis Cluster) for any number of workers on any number
of machines.

Each transition of a URL is one Lua script in `lua/` (their key layout is drawn in
`lua/common.lua`), so no worker ever sees half of another's step. A job's keys have three
kinds of prefixes, each one hash tag: the job's own (run, worker names, journals), its
SHARDS shards' (the queues, dedup, leases, history and near-duplicate index of the hosts that
hash to the shard) and its hosts' (politeness window, robots.txt); a script touches one of
them, so on a cluster each runs on one master. URL steps run in their host's shard: `enqueue`
(dedup), `lease` (a token and a deadline; expired leases are reaped first), `release`, `renew`.
A batch commits in three steps: `prepare` stages its outcomes in their shards and queues its
new links in theirs, `commit` writes the worker's journal in the job's slot (the commit
point), `settle` applies each shard's staged outcomes; a staged lease found expired is settled
by its reaper as the job's slot says (`fence`: applied if committed, else fenced and queued
again). Records are JSON, never pickle. A worker that cannot reach Redis retries with
back-off for `lease_timeout` seconds (by then its leases are gone anyway), then stops with
exit 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import socket
import time
import traceback
import zlib
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ClusterError, RedisError, SlotNotCoveredError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .. import failpoints
from ..clock import iso
from ..errors import FrontierUnavailable, LockedError
from ..models import Request
from ..pools import pid_alive
from ..settings import Settings
from ..urls import host_of
from . import Admission, Candidate, Journal, Orphan, Outcome, Prepared, RunInfo
from .sqlite import run_id_for

log = logging.getLogger(__name__)

SCRIPTS = ("open", "sweep", "enqueue", "lease", "release", "renew", "prepare", "near",
           "commit", "settle", "fence", "gate", "defer", "claim", "finish")
CLUSTER_SCHEME = "redis-cluster://"
LEASE_BATCH = 32  # URLs a lease script takes at least; the ones not asked for wait as spares
SPARE_WAIT_S = 0.25  # with spares left, the least time between two lease scripts
KNOWN_MAX = 1_000_000  # link hashes a worker remembers as known to the job before forgetting
SWEEP_STEP = 500  # history entries per recrawl-sweep step: Redis is never blocked for long
MAX_SLOTS = 1000  # automatic worker names per machine
# A new job's shards: enough hash slots to spread a job over a cluster of a dozen masters, few
# enough that a batch's links touch a handful and the completion check reads them all at
# once. Kept in the job's run hash: a job keeps its number whatever this one becomes.
SHARDS = 16
# A key no script writes, declared by every script of the job's slot and of its shards beside
# the slot's own key: while the slot migrates (`redis-cli --cluster reshard`, key by key), a
# command naming a key present and one missing is answered TRYAGAIN on either side, so no
# script runs on half a slot's keys (it would fail halfway, Lua does not roll back); the
# script waits (`_patiently`) and runs once the slot sits on one master.
FENCE = "~"
COLLECTS = 50  # double collects of the shards' counts tried before trusting a nonzero sum


def machine_name() -> str:
    """This machine's name as it appears in worker names and part files."""
    return re.sub(r"[^\w.\-]", "_", socket.gethostname()) or "host"


def _by_referrer(candidates: Sequence[Candidate]) -> list[list[Candidate]]:
    """Runs of candidates with one referrer, in order: an ack entry names one referrer."""
    groups: list[list[Candidate]] = []
    for c in candidates:
        if groups and groups[-1][0].referrer == c.referrer:
            groups[-1].append(c)
        else:
            groups.append([c])
    return groups


def link_key(url: str) -> str:
    """The URL's dedup key in the job's seen set: 64 bits of its sha1, in hex (the Lua
    prelude's `seen_slot` splits them into a bucket and a field)."""
    return hashlib.sha1(url.encode()).hexdigest()[:16]


def connect(url: str) -> Any:
    """A client for `redis://` (one server) or `redis-cluster://HOST:PORT[,HOST:PORT...]`
    (any nodes of a Redis Cluster; redis-py finds the rest and follows MOVED and ASK)."""
    if url.startswith(CLUSTER_SCHEME):
        nodes = []
        for part in url.removeprefix(CLUSTER_SCHEME).split("/")[0].split(","):
            host, _, port = part.strip().rpartition(":")
            nodes.append(ClusterNode(host.strip("[]") or "127.0.0.1", int(port or 6379)))
        return RedisCluster(startup_nodes=nodes, socket_timeout=5, socket_connect_timeout=5,
                            retry=Retry(NoBackoff(), 1), health_check_interval=0)
    return aioredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5,
                                   retry=Retry(NoBackoff(), 0), health_check_interval=0)


def _listed(value: Any) -> list[Any]:
    """A list from Lua's cjson, which encodes an empty table as `{}`."""
    return value if isinstance(value, list) else []


def _torn_connection(exc: AttributeError) -> bool:
    """redis-py's asyncio cluster client, when a node goes away, closes connections another
    task is still writing to, which then fails inside redis-py on a `None` writer or reader:
    the node is unreachable, as a ConnectionError would say."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and f"{os.sep}redis{os.sep}" in frames[-1].filename \
        and "'NoneType' object" in str(exc)


async def _nothing() -> None:
    return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisFrontier:
    """`Frontier` on Redis, shared by every worker of the job; calls run on the event loop."""

    def __init__(self, settings: Settings, job: str) -> None:
        self.url = settings.frontier
        self.job = job
        self.prefix = f"crawl:{{{job}}}:"
        self._s = settings
        self._lease_ms = round(settings.lease_timeout * 1000)
        self._client = connect(settings.frontier)
        lua = resources.files(__package__).joinpath("lua")
        prelude = lua.joinpath("common.lua").read_text()
        self._scripts: dict[str, AsyncScript] = {
            name: self._client.register_script(prelude + lua.joinpath(f"{name}.lua").read_text())
            for name in SCRIPTS}
        self.machine = machine_name()
        self.worker = ""
        self._nonce = secrets.token_hex(4)
        self._holder = f"{self.machine} {os.getpid()} {self._nonce}"
        self._run_id = ""
        self._run_no = 0
        self._shards = SHARDS  # the job's, from `open`
        self._seq = 0
        self._batches = 0  # batches this process prepared: their ids are WORKER:NONCE:N
        self._open_batch: tuple[Prepared, str, list[int]] | None = None  # prepared, id, shards
        self._last_batch = ""  # this process's last settled batch (committed, applied)
        self._tokens: dict[str, str] = {}  # url -> lease token, from lease to commit or release
        self._known: set[str] = set()  # link keys the job has seen: never sent again
        self._spare: list[Request] = []  # leased by this worker, not yet handed out
        self._leased_at = 0.0  # monotonic time of the last lease script
        self._reaped_at = 0.0  # ... of the last reaping pass over every shard
        self._probed_at = 0.0  # ... of the last look at every shard's queued hosts
        self._live: set[int] = set()  # shards that may have queued hosts (a look finds them)
        self._dry: dict[int, float] = {}  # shard -> until when a lease there is not tried
        self._cursor = secrets.randbelow(SHARDS)  # the shard leases start from
        self._handed: dict[str, float | None] = {}  # host -> pace that came with its window
        self._down: FrontierUnavailable | None = None
        self._renewer: asyncio.Task[None] | None = None

    # -- plumbing ---------------------------------------------------------------------------

    async def _call(self, name: str, *args: Any) -> Any:
        """Run one script on the job's own keys (see `_patiently`)."""
        script = self._scripts[name]
        return await self._patiently(script, keys=[self.prefix + "run", self.prefix + FENCE],
                                     args=[self.prefix, *args])

    def host_prefix(self, host: str) -> str:
        """The prefix of the keys about one host alone (its window, its robots.txt): a hash
        slot of its own, so that a cluster spreads the hosts over its masters."""
        return f"crawl:{{{self.job}:{host}}}:"

    def shard_prefix(self, shard: int) -> str:
        """The prefix of a shard's keys (the queues, dedup, leases and history of its hosts):
        `#` is in no host name, so a shard's slot is never a host's."""
        return f"crawl:{{{self.job}:#{shard}}}:"

    def near_prefix(self) -> str:
        """The prefix of the job's near-duplicate index: a slot of its own, since a page's
        near duplicates may be on any host of any shard."""
        return f"crawl:{{{self.job}:#near}}:"

    def shard_of(self, host: str) -> int:
        """The shard of a host's URLs: a stable hash, the same in every worker."""
        return zlib.crc32(host.encode()) % self._shards

    def _url_shard(self, url: str) -> int:
        return self.shard_of(host_of(url))

    async def _on_shard(self, name: str, shard: int, *args: Any) -> Any:
        """Run one script on one shard's keys, given the run number (see `_patiently`)."""
        prefix = self.shard_prefix(shard)
        return await self._patiently(self._scripts[name], keys=[prefix + "count", prefix + FENCE],
                                     args=[prefix, self._run_no, *args])

    async def _on_host(self, name: str, host: str, *args: Any) -> Any:
        """Run one script on the keys of `host` (see `_patiently`)."""
        prefix = self.host_prefix(host)
        return await self._patiently(self._scripts[name], keys=[prefix + "gate"],
                                     args=[prefix, *args])

    async def _command(self, *args: Any) -> Any:
        """Run one plain command (see `_patiently`)."""
        return await self._patiently(self._client.execute_command, *args)

    async def _each_shard(self, *command: str) -> list[Any]:
        """One command on the same key of every shard (`command[1]` is the key's name in the
        shard), in one pipeline: one round trip on a server, one per master on a cluster."""
        async def run() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for shard in range(self._shards):
                pipe.execute_command(command[0], self.shard_prefix(shard) + command[1],
                                     *command[2:])
            return list(await pipe.execute())
        got: list[Any] = await self._patiently(run)
        return got

    async def _patiently(self, fn: Callable[..., Awaitable[Any]], *args: Any,
                         **kwargs: Any) -> Any:
        """While Redis is unreachable (or the cluster down), retry with back-off, up to
        `lease_timeout` seconds."""
        if self._down is not None:
            raise self._down
        deadline: float | None = None
        pause = 0.1
        while True:
            try:
                return await fn(*args, **kwargs)
            except (RedisConnectionError, RedisTimeoutError, OSError, ClusterError,
                    SlotNotCoveredError, TryAgainError, AttributeError) as exc:
                if isinstance(exc, AttributeError) and not _torn_connection(exc):
                    raise
                # a cluster whose master is restarting is down (or its slots uncovered) for
                # a while, as a server restarting is unreachable; TRYAGAIN (and redis-py's
                # "TTL exhausted" after its own TRYAGAIN retries): a slot in motion
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self._s.lease_timeout
                    log.warning("Redis at %s unreachable (%s); retrying for up to %g s",
                                self.url, exc, self._s.lease_timeout)
                if now >= deadline:
                    self._down = FrontierUnavailable(
                        f"the frontier's Redis at {self.url} has been unreachable for "
                        f"{self._s.lease_timeout:g} s (lease_timeout): {exc}. This worker's "
                        "leases have expired, so other workers may fetch its URLs; its "
                        "records on disk are consistent, and the same command resumes.")
                    raise self._down from None
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)

    # -- the protocol ---------------------------------------------------------------------

    async def open(self, seeds: Sequence[str], *, fresh: bool, recrawl_after_s: float) -> RunInfo:
        if fresh:
            await self.reset()
        await self._claim_name()
        now = datetime.now(UTC)
        while True:
            answer = [_text(v) for v in await self._call("open", run_id_for(now), iso(now),
                                                         SHARDS)]
            if answer[0] != "retry":
                break
            now = max(now, datetime.strptime(answer[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC))
            now = datetime.fromtimestamp(now.timestamp() + 1, UTC)
        state, self._run_id, started_at, number, shards = answer
        self._run_no = int(number)
        self._shards = int(shards)
        self._cursor %= self._shards
        for shard in range(self._shards):
            while not await self._on_shard("sweep", shard, time.time() - recrawl_after_s,
                                           SWEEP_STEP):
                pass
        await self._enqueue([(url, 0, "") for url in seeds])
        journal = await self._journal(self.worker)
        self._seq = journal[1] if journal else 0
        if journal is not None and journal[0] != self._run_id:
            journal = None  # the worker's files of an earlier run are settled as an orphan's
        self._renewer = asyncio.create_task(self._renew_loop(), name="lease renewal")
        return RunInfo(run_id=self._run_id, started_at=started_at, resumed=state == "resumed",
                       journal=journal[2] if journal else Journal(), worker=self.worker)

    async def _enqueue(self, urls: Sequence[tuple[str, int, str]]) -> int:
        """Admit URLs (url, depth, referrer or "") into their hosts' shards; how many."""
        by_shard: dict[int, list[Any]] = {}
        for url, depth, referrer in urls:
            host = host_of(url)
            by_shard.setdefault(self.shard_of(host), []).extend([url, depth, referrer, host])
        added = 0
        for shard, args in by_shard.items():
            for start in range(0, len(args), 4000):
                added += int(await self._on_shard("enqueue", shard, self._s.max_pages_per_host,
                                                  *args[start:start + 4000]))
        return added

    async def _claim_name(self) -> None:
        """`worker` when set, else the lowest free `MACHINE-N`: a worker restarted on this
        machine takes back the name of the dead one, and with it its journal and part files."""
        names = [self._s.worker] if self._s.worker else [
            f"{self.machine}-{n}" for n in range(1, MAX_SLOTS + 1)]
        for name in names:
            holder = await self._command("GET", self.prefix + "worker:" + name)
            dead = _text(holder) if holder is not None and self._is_dead(_text(holder)) else ""
            got = _text(await self._call("claim", name, self._holder, self._lease_ms, dead))
            if got == self._holder:
                self.worker = name
                return
        if self._s.worker:
            raise LockedError(f"worker {self._s.worker!r} of this job is running "
                              f"(held by {got}); give each worker its own name")
        raise LockedError(f"all {MAX_SLOTS} worker names of {self.machine} are taken")

    def _is_dead(self, holder: str) -> bool:
        machine, _, rest = holder.partition(" ")
        pid = rest.partition(" ")[0]
        return machine == self.machine and pid.isdigit() and not pid_alive(int(pid))

    async def _journal(self, worker: str) -> tuple[str, int, Journal] | None:
        """(run id, batch number, journal) of the worker's last committed batch."""
        raw = await self._command("HGETALL", self.prefix + "journal:" + worker)
        if not raw:
            return None
        fields = {_text(k): v for k, v in raw.items()}
        files: dict[str, tuple[int, bytes]] = {}
        for key, value in fields.items():
            if key.endswith(":base"):
                kind = key.removesuffix(":base")
                files[kind] = (int(value), bytes(fields.get(kind + ":data", b"")))
        totals = json.loads(fields["totals"]) if fields.get("totals") else {}
        return (_text(fields.get("run", b"")), int(fields.get("seq", 0)),
                Journal(files=files, totals=totals))

    async def lease(self, n: int, skip_hosts: Collection[str]) -> list[Request]:
        """Up to `n` URLs: first this worker's spares, then lease scripts for at least
        LEASE_BATCH (one script a handful of pages, not one a page); the URLs left over are
        spares, renewed with the others and released at `close`."""
        skip = set(skip_hosts)
        out = [r for r in self._spare if host_of(r.url) not in skip][:n]
        taken = {id(r) for r in out}
        self._spare = [r for r in self._spare if id(r) not in taken]
        # with spares of skipped hosts only, a script now would mostly come back empty
        due = not self._spare or time.monotonic() - self._leased_at >= SPARE_WAIT_S
        if len(out) < n and len(self._spare) < LEASE_BATCH and due:
            self._leased_at = time.monotonic()
            more = await self._lease(max(n - len(out), LEASE_BATCH), skip)
            self._spare += more[n - len(out):]
            out += more[:n - len(out)]
        return out

    async def _lease(self, n: int, skip_hosts: Collection[str]) -> list[Request]:
        """A lease script runs only on a shard known to have queued hosts (`_live`: the last
        look said so, or this worker queued links there) and that gave URLs the last time
        (or not within SPARE_WAIT_S); a worker sticks to one shard while it has URLs for it,
        one script a lease batch. When no shard is known live, one pipelined ZCARD over the
        shards' ready sets, at most every SPARE_WAIT_S, looks again for a fraction of a
        script's cost."""
        now = time.monotonic()
        if now - self._reaped_at >= self._s.lease_timeout / 4:
            self._reaped_at = now  # dead workers' leases, in shards nobody leases from too
            for shard in range(self._shards):
                _, staged, _ = await self._on_shard("lease", shard, self.worker, 0,
                                                    self._lease_ms, 1, 0)
                await self._settle_expired(shard, staged)
        order = [(self._cursor + i) % self._shards for i in range(self._shards)]
        shards = [s for s in order if s in self._live and self._dry.get(s, 0.0) <= now]
        if not shards and now - self._probed_at >= SPARE_WAIT_S:
            self._probed_at = now
            queued = await self._each_shard("ZCARD", "ready")
            self._live = {s for s in order if int(queued[s])}
            shards = [s for s in order if s in self._live and self._dry.get(s, 0.0) <= now]
        cap = max(self._s.per_host * 2, LEASE_BATCH)  # a host's URLs a script takes at most
        requests: list[Request] = []
        for shard in shards:
            asked = n - len(requests)
            rows, staged, left = await self._on_shard("lease", shard, self.worker, asked,
                                                      self._lease_ms, cap,
                                                      round(self._s.delay * 1000), *skip_hosts)
            await self._settle_expired(shard, staged)
            requests += [self._request(row) for row in rows]
            if not int(left):
                self._live.discard(shard)
            elif not rows:
                self._dry[shard] = now + SPARE_WAIT_S  # its hosts are skipped or not due
            if len(requests) >= n:
                self._cursor = shard
                break
        return requests

    def _request(self, row: Sequence[Any]) -> Request:
        url_b, depth, referrer, token, hist = row
        url = _text(url_b)
        self._tokens[url] = _text(token)
        h = json.loads(hist) if hist else []
        h += [None] * (10 - len(h))
        return Request(url, int(depth), _text(referrer) or None, etag=h[5],
                       last_modified=h[6], last_status=h[4], sha256=h[7], simhash=h[8],
                       title=h[9])

    async def _settle_expired(self, shard: int, staged: Sequence[Any]) -> None:
        """Staged leases past their deadline: their worker died (or stalled) between prepare
        and settle. The job's slot says whether the batch committed (then it is applied
        here) or not (then it is fenced, never to commit, and its URLs queued again)."""
        for raw in staged:
            batch = _text(raw)
            verdict = _text(await self._call("fence", batch))
            mode = "apply" if verdict == "committed" else "requeue"
            settled = await self._on_shard("settle", shard, batch, mode)
            log.warning("batch %s of a dead or stalled worker: %s (%d lease(s) in shard %d)",
                        batch, "applied" if mode == "apply" else "fenced, URLs queued again",
                        int(settled), shard)

    async def release(self, urls: Sequence[str]) -> None:
        """Back to the front of their queues; the spares go back too, behind them."""
        spares, self._spare = [r.url for r in reversed(self._spare)], []
        by_shard: dict[int, list[str]] = {}
        for url in [*spares, *urls]:
            token = self._tokens.pop(url, None)
            if token is not None:
                by_shard.setdefault(self._url_shard(url), []).extend([url, token])
        for shard, args in by_shard.items():
            await self._on_shard("release", shard, *args)
            self._live.add(shard)
            self._dry.pop(shard, None)

    async def prepare(self, outcomes: Sequence[Outcome],
                      extra: Sequence[Candidate] = ()) -> Prepared:
        """Phase one (prepare.lua), a script per shard the batch touches, run at once: the
        batch's leases are checked and staged in their shards, its new links queued in
        theirs, near duplicates looked up."""
        self._batches += 1
        batch_id = f"{self.worker}:{self._nonce}:{self._batches}"
        work: dict[int, dict[str, list[Any]]] = {}

        def of(shard: int) -> dict[str, list[Any]]:
            return work.setdefault(shard, {"o": [], "l": []})

        where: list[tuple[int, int]] = []  # an outcome's (shard, index there)
        for o in outcomes:
            url = o.request.url
            shard = self._url_shard(url)
            entries = of(shard)["o"]
            entries.append({"u": url, "t": self._tokens.get(url, ""), "st": o.state,
                            "f": o.fetched_at, "s": o.status, "e": o.etag,
                            "m": o.last_modified, "h": o.sha256, "x": o.simhash,
                            "ti": o.title})
            where.append((shard, len(entries)))
        # links this worker already knows the job has seen are not sent: a page's navigation
        # bar costs Redis nothing after the first pages
        groups = [(group, 0) for group in _by_referrer(extra)]
        groups += [(list(o.candidates), i + 1) for i, o in enumerate(outcomes)]
        flags: list[list[bool]] = []
        slots: list[tuple[int, int, int, int]] = []  # (flag list, index, shard, group there)
        for candidates, page in groups:
            flags.append([False] * len(candidates))
            runs: dict[int, int] = {}  # shard -> this group's entry there
            for j, c in enumerate(candidates):
                key = link_key(c.url)
                if key in self._known:
                    continue
                host = host_of(c.url)
                shard = self.shard_of(host)
                links = of(shard)["l"]
                if shard not in runs:
                    k = where[page - 1][1] if page and where[page - 1][0] == shard else 0
                    links.append({"r": c.referrer, "k": k, "c": []})
                    runs[shard] = len(links) - 1
                entry = links[runs[shard]]
                slots.append((len(flags) - 1, j, shard, runs[shard]))
                entry["c"].append([c.url, c.depth, host, key])
        shards = sorted(work)
        fingerprinted = [i for i, o in enumerate(outcomes)
                         if o.state == "done" and o.status != 304 and o.simhash is not None]
        near_prefix = self.near_prefix()
        near, *answered = await asyncio.gather(
            self._patiently(self._scripts["near"], keys=[near_prefix + "np", near_prefix + FENCE],
                            args=[near_prefix, self._s.near_duplicate_distance, json.dumps(
                                [[outcomes[i].request.url, outcomes[i].simhash]
                                 for i in fingerprinted])]) if fingerprinted else _nothing(),
            *(self._on_shard("prepare", shard, self._lease_ms, self._s.max_pages_per_host,
                             batch_id, json.dumps(work[shard]["o"]), json.dumps(work[shard]["l"]))
              for shard in shards))
        answers = dict(zip(shards, answered, strict=True))
        near_of: dict[int, str | None] = dict(zip(
            fingerprinted, _listed(json.loads(near)) if fingerprinted else [], strict=True))
        decoded = {shard: json.loads(raw) for shard, raw in answers.items()}
        counters: dict[tuple[int, int], int] = {}
        for f, j, shard, g in slots:
            position = counters.get((shard, g), 0)
            counters[(shard, g)] = position + 1
            got = _listed(_listed(decoded[shard]["l"])[g])
            flags[f][j] = bool(got[position]) if position < len(got) else False
            if flags[f][j]:
                self._live.add(shard)  # work there now, queued by this worker
                self._dry.pop(shard, None)
        for candidates, _ in groups:
            # admitted or not, the job has seen them now (an over-budget one counts as seen)
            self._known.update(link_key(c.url) for c in candidates)
        if len(self._known) > KNOWN_MAX:
            self._known.clear()
        firsts = len(groups) - len(outcomes)  # the groups of `extra` come first
        found = []
        lost = []
        for i, (o, (shard, index)) in enumerate(zip(outcomes, where, strict=True)):
            answer = _listed(decoded[shard]["o"])[index - 1]
            if not answer["ok"]:
                lost.append(o.request.url)
            found.append(Admission(flags[firsts + i], near_of.get(i)))
        if lost:
            raise FrontierUnavailable(
                f"{len(lost)} lease(s) of this worker expired before their records were "
                f"committed (e.g. {lost[0]}): the worker stalled past lease_timeout "
                f"({self._s.lease_timeout:g} s) and other workers own those URLs now; "
                "nothing of the batch was written. Raise lease_timeout.")
        extra_admitted = [ok for admitted in flags[:firsts] for ok in admitted]
        prepared = Prepared(outcomes, found, extra, extra_admitted)
        staged = sorted({shard for shard, _ in where})
        self._open_batch = (prepared, batch_id, staged)
        return prepared

    async def commit(self, batch: Prepared, journal: Journal) -> None:
        """Phase two, the commit point: the worker's journal in the job's slot (refused when a
        reaper fenced the batch); then phase three, each shard applies its staged outcomes."""
        if self._open_batch is None or self._open_batch[0] is not batch:
            raise RuntimeError("commit of a batch this frontier did not just prepare")
        _, batch_id, shards = self._open_batch
        files: list[Any] = []
        for kind, (base, data) in journal.files.items():
            files += [kind, base, data]
        self._seq += 1
        answer = _text(await self._call(
            "commit", self.worker, self._seq, self._run_id, self.machine, batch_id,
            self._last_batch, json.dumps(journal.totals), *files))
        if answer == "fenced":
            raise FrontierUnavailable(
                f"lease(s) of this worker expired while its batch was being committed; "
                f"nothing of the batch was written. Raise lease_timeout "
                f"({self._s.lease_timeout:g} s).")
        failpoints.reach("redis-committed")  # between the commit point and the shards' apply
        await asyncio.gather(*(self._on_shard("settle", shard, batch_id, "apply")
                               for shard in shards))
        self._open_batch = None
        self._last_batch = batch_id
        for o in batch.outcomes:
            self._tokens.pop(o.request.url, None)

    async def pending(self) -> int:
        """URLs queued or leased, summed over the shards. Zero is said only when two
        collects of every shard's (pending, admitted) pair in a row are equal: then those
        figures all held at one instant between the collects, whatever moved in between."""
        counts = await self._counts()
        for _ in range(COLLECTS):
            if sum(p for p, _ in counts) > 0:
                break
            again = await self._counts()
            if again == counts:
                break
            counts = again
        return max(0, sum(p for p, _ in counts))

    async def _counts(self) -> list[tuple[int, int]]:
        got = await self._each_shard("HMGET", "count", "p", "a")
        return [(int(p or 0), int(a or 0)) for p, a in got]

    async def finish(self, stop_reason: str, finished_at: str | None) -> None:
        await self._call("finish", self._run_id, stop_reason, finished_at or "")

    async def close(self) -> None:
        if self._spare and self._down is None:
            with contextlib.suppress(Exception):
                await self.release([])
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(BaseException):
                await self._renewer
        if self._down is None and self.worker:
            with contextlib.suppress(Exception):
                name = self.prefix + "worker:" + self.worker
                if _text(await self._client.get(name) or b"") == self._holder:
                    await self._client.delete(name)
        # redis-py's pool re-raises the first error of its connections' disconnects (a
        # TimeoutError when one does not close within socket_connect_timeout): raised here,
        # in the runner's `finally`, it would replace the FrontierUnavailable that stopped the
        # crawl, and the clear message would become "This is a bug in the crawler"
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()

    # -- the fleet (`fleet.Fleet`) ---------------------------------------------------------

    async def others(self) -> list[dict[str, Any]]:
        """The committed totals of the run's other workers, for the fleet's stats.json."""
        found = []
        for name in await self._command("SMEMBERS", self.prefix + "journals"):
            worker = _text(name)
            if worker == self.worker:
                continue
            journal = await self._journal(worker)
            if journal is not None and journal[0] == self._run_id:
                found.append(journal[2].totals)
        return found

    async def orphans(self) -> list[Orphan]:
        """Journals of dead workers of this machine, claimed for settling onto their files."""
        found = []
        for name in await self._command("SMEMBERS", self.prefix + "journals"):
            worker = _text(name)
            if worker == self.worker:
                continue
            machine = await self._command("HGET", self.prefix + "journal:" + worker, "machine")
            if machine is None or _text(machine) != self.machine:
                continue
            holder = await self._command("GET", self.prefix + "worker:" + worker)
            dead = _text(holder) if holder is not None and self._is_dead(_text(holder)) else ""
            if holder is not None and not dead:
                continue  # alive: it settles its own files
            got = _text(await self._call("claim", worker, self._holder, self._lease_ms, dead))
            journal = await self._journal(worker) if got == self._holder else None
            if journal is not None and any(k != "sinks" for k in journal[2].files):
                found.append(Orphan(worker, journal[0], journal[2]))
            elif got == self._holder:
                await self._command("DEL", self.prefix + "worker:" + worker)
        return found

    async def settled(self, orphan: Orphan) -> None:
        """The orphan's files hold its last batch: keep only its totals, free its name."""
        key = self.prefix + "journal:" + orphan.worker
        kinds = [f"{k}:{part}" for k in orphan.journal.files for part in ("base", "data")]
        if kinds:
            await self._command("HDEL", key, *kinds)
        await self._command("DEL", self.prefix + "worker:" + orphan.worker)

    async def _renew_loop(self) -> None:
        """Leases and the worker's name live while fetch, parse and commit go on."""
        while True:
            await asyncio.sleep(self._s.lease_timeout / 3)
            by_shard: dict[int, list[str]] = {}
            for url, token in list(self._tokens.items()):
                by_shard.setdefault(self._url_shard(url), []).extend([url, token])
            lost: list[Any] = []
            try:
                await self._call("renew", 0, self._lease_ms, self.worker, self._holder)
                for shard, args in by_shard.items():
                    lost += await self._on_shard("renew", shard, self._lease_ms, "", "", *args)
            except FrontierUnavailable:
                return  # the next frontier call reports it
            if lost:
                log.warning("%d lease(s) expired before renewal (e.g. %s)", len(lost),
                            _text(lost[0]))

    async def take(self, host: str, window_s: float, next_in_s: float) -> float:
        """Hold the host's window (`politeness.SharedSlot`): 0, or the seconds to wait. The
        host's pace comes with the window, for the `pace` read that follows."""
        wait_ms, pace_ms = await self._on_host("gate", host, self._holder, "take",
                                               round(window_s * 1000), self._grace_ms(),
                                               round(next_in_s * 1000))
        if not int(wait_ms):
            self._handed[host] = None if int(pace_ms) < 0 else int(pace_ms) / 1000
        return float(wait_ms) / 1000

    async def give(self, host: str, next_in_s: float) -> None:
        await self._on_host("gate", host, self._holder, "give", 0, 0, round(next_in_s * 1000))

    def _grace_ms(self) -> int:
        """How long past its window a holder that never gave it back (it died) keeps it:
        its last requests may still be running until their timeout."""
        return round((self._s.timeout + 1) * 1000)

    async def defer(self, host: str, seconds: float) -> None:
        await self._on_host("defer", host, round(seconds * 1000))

    async def pace(self, host: str, seconds: float | None = None) -> float | None:
        """The host's pace as some worker last set it (`politeness.SharedSlot`), in ms in
        the host's gate hash beside `next` (read from the window just taken, else from
        Redis); with `seconds`, set it first."""
        if seconds is not None:
            await self._command("HSET", self.host_prefix(host) + "gate", "p",
                                round(seconds * 1000))
            return seconds
        if host in self._handed:
            return self._handed.pop(host)
        got = await self._command("HGET", self.host_prefix(host) + "gate", "p")
        return None if got is None else int(got) / 1000

    async def robots(self, origin: str) -> tuple[int, bytes] | None:
        """robots.txt of `origin` as some worker fetched it in this run, if one has."""
        got = await self._command("HMGET", self._robots_key(origin), "status", "body")
        if got[0] is None:
            return None
        return int(got[0]), bytes(got[1] or b"")

    async def robots_lock(self, origin: str, seconds: float) -> bool:
        key = self._robots_key(origin) + ":lock"
        return bool(await self._command("SET", key, self._holder, "NX", "PX",
                                        round(seconds * 1000)))

    async def robots_put(self, origin: str, status: int, body: bytes) -> None:
        await self._command("HSET", self._robots_key(origin), "status", status, "body", body)

    def _robots_key(self, origin: str) -> str:
        return f"{self.host_prefix(host_of(origin + '/'))}robots:{self._run_no}:{origin}"

    async def _job_keys(self) -> list[Any]:
        """Every key of the job: its own slot's and its hosts' (on every master of a cluster)."""
        keys = []
        for pattern in (self.prefix + "*", f"crawl:{{{self.job}:*"):
            keys += [k async for k in self._client.scan_iter(match=pattern, count=1000)]
        return keys

    async def reset(self) -> None:
        """Drop every key of the job (`--fresh`, or `crawl-reset`)."""
        keys = await self._job_keys()
        for i in range(0, len(keys), 1000):
            await self._client.unlink(*keys[i:i + 1000])

    async def memory(self) -> dict[str, int]:
        """Bytes Redis uses for the dedup buckets, the history and everything of the job."""
        sizes = {"seen": 0, "hist": 0, "all": 0, "urls": 0}
        for key in await self._job_keys():
            used = int(await self._client.memory_usage(key, samples=0) or 0)
            sizes["all"] += used
            name = _text(key).partition("}:")[2]
            if name.startswith("seen:"):
                sizes["seen"] += used
                sizes["urls"] += int(await self._client.hlen(key))
            elif name == "hist":
                sizes["hist"] += used
        return sizes
