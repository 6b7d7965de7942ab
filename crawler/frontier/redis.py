"""The shared frontier: one Redis for any number of workers on any number of machines.

Each transition of a URL is one Lua script in `lua/` (their key layout is drawn in
`lua/common.lua`), so no worker ever sees half of another's step: `enqueue` (dedup), `lease`
(a token and a deadline; expired leases are reaped first), `prepare` + `ack` (a batch's
outcomes, its new links and the worker's journal at once), `release`, `renew`. Records are
JSON, never pickle. A worker that cannot reach Redis retries with back-off for
`lease_timeout` seconds (by then its leases are gone anyway), then stops with exit 1.
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
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ClusterDownError, SlotNotCoveredError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..clock import iso
from ..errors import FrontierUnavailable, LockedError
from ..models import Request
from ..pools import pid_alive
from ..settings import Settings
from ..urls import host_of
from . import Admission, Candidate, Journal, Orphan, Outcome, Prepared, RunInfo
from .sqlite import run_id_for

log = logging.getLogger(__name__)

SCRIPTS = ("open", "sweep", "enqueue", "lease", "release", "renew", "prepare", "ack", "gate",
           "defer", "claim", "finish")
CLUSTER_SCHEME = "redis-cluster://"
LEASE_BATCH = 32  # URLs a lease script takes at least; the ones not asked for wait as spares
SPARE_WAIT_S = 0.25  # with spares left, the least time between two lease scripts
KNOWN_MAX = 1_000_000  # link hashes a worker remembers as known to the job before forgetting
SWEEP_STEP = 500  # history entries per recrawl-sweep step: Redis is never blocked for long
MAX_SLOTS = 1000  # automatic worker names per machine


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


def _admitted_by_referrer(candidates: Sequence[Candidate],
                          admitted: Sequence[bool]) -> list[tuple[str, list[Any]]]:
    """Those candidates `prepare` admitted, as (referrer, ack entries), in runs of one
    referrer."""
    chosen = [c for c, ok in zip(candidates, admitted, strict=True) if ok]
    return [(group[0].referrer, [[c.url, c.depth, host_of(c.url), link_key(c.url)]
                                 for c in group])
            for group in _by_referrer(chosen)]


def _torn_connection(exc: AttributeError) -> bool:
    """redis-py's asyncio cluster client, when a node goes away, closes connections another
    task is still writing to, which then fails inside redis-py on a `None` writer or reader:
    the node is unreachable, as a ConnectionError would say."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and f"{os.sep}redis{os.sep}" in frames[-1].filename \
        and "'NoneType' object" in str(exc)


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
        self._holder = f"{self.machine} {os.getpid()} {secrets.token_hex(4)}"
        self._run_id = ""
        self._run_no = 0
        self._seq = 0
        self._tokens: dict[str, str] = {}  # url -> lease token, from lease to ack or release
        self._known: set[str] = set()  # link keys the job has seen: never sent again
        self._spare: list[Request] = []  # leased by this worker, not yet handed out
        self._leased_at = 0.0  # monotonic time of the last lease script
        self._reaped_at = 0.0  # ... of the last one that ran (and so reaped expired leases)
        self._dry: tuple[frozenset[str], float] | None = None  # skip hosts, time: it was empty
        self._down: FrontierUnavailable | None = None
        self._renewer: asyncio.Task[None] | None = None

    # -- plumbing ---------------------------------------------------------------------------

    async def _call(self, name: str, *args: Any) -> Any:
        """Run one script on the job's keys (see `_patiently`)."""
        script = self._scripts[name]
        return await self._patiently(script, keys=[self.prefix + "run"],
                                     args=[self.prefix, *args])

    def shard(self, host: str) -> str:
        """The prefix of the keys about one host alone (its window, its robots.txt): a hash
        slot of its own, so that a cluster spreads the hosts over its masters."""
        return f"crawl:{{{self.job}:{host}}}:"

    async def _on_host(self, name: str, host: str, *args: Any) -> Any:
        """Run one script on the keys of `host` (see `_patiently`)."""
        prefix = self.shard(host)
        return await self._patiently(self._scripts[name], keys=[prefix + "gate"],
                                     args=[prefix, *args])

    async def _command(self, *args: Any) -> Any:
        """Run one plain command (see `_patiently`)."""
        return await self._patiently(self._client.execute_command, *args)

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
            except (RedisConnectionError, RedisTimeoutError, OSError, ClusterDownError,
                    SlotNotCoveredError, TryAgainError, AttributeError) as exc:
                if isinstance(exc, AttributeError) and not _torn_connection(exc):
                    raise
                # a cluster whose master is restarting is down (or its slots uncovered) for
                # a while, as a server restarting is unreachable; TRYAGAIN: a slot in motion
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
            answer = [_text(v) for v in await self._call("open", run_id_for(now), iso(now))]
            if answer[0] != "retry":
                break
            now = max(now, datetime.strptime(answer[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC))
            now = datetime.fromtimestamp(now.timestamp() + 1, UTC)
        state, self._run_id, started_at, number = answer
        self._run_no = int(number)
        while not await self._call("sweep", time.time() - recrawl_after_s, SWEEP_STEP):
            pass
        args: list[Any] = []
        for url in seeds:
            args += [url, 0, "", host_of(url)]
        if args:
            await self._call("enqueue", self._s.max_pages_per_host, *args)
        journal = await self._journal(self.worker)
        if journal is not None and journal[0] != self._run_id:
            journal = None  # the worker's files of an earlier run are settled as an orphan's
        self._seq = journal[1] if journal else 0
        self._renewer = asyncio.create_task(self._renew_loop(), name="lease renewal")
        return RunInfo(run_id=self._run_id, started_at=started_at, resumed=state == "resumed",
                       journal=journal[2] if journal else Journal(), worker=self.worker)

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
        """Up to `n` URLs: first this worker's spares, then a lease script for at least
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
        # nothing queued anywhere: a plain ZCARD says so for a fraction of a script's cost,
        # and the script (which also reaps dead workers' leases) runs a few times a lease
        now = time.monotonic()
        reap_due = now - self._reaped_at >= self._s.lease_timeout / 4
        if not reap_due:
            dry = self._dry
            if dry is not None and set(skip_hosts) >= dry[0] and now - dry[1] < SPARE_WAIT_S:
                return []  # the hosts that had URLs are still skipped: so soon, still dry
            if not await self._command("ZCARD", self.prefix + "ready"):
                return []
        self._reaped_at = now
        cap = max(self._s.per_host * 2, LEASE_BATCH)  # a host's URLs a script takes at most
        rows = await self._call("lease", self.worker, n, self._lease_ms, cap,
                                round(self._s.delay * 1000), *skip_hosts)
        requests = []
        for url_b, depth, referrer, token, hist in rows:
            url = _text(url_b)
            self._tokens[url] = _text(token)
            h = json.loads(hist) if hist else []
            h += [None] * (10 - len(h))
            requests.append(Request(url, int(depth), _text(referrer) or None, etag=h[5],
                                    last_modified=h[6], last_status=h[4], sha256=h[7],
                                    simhash=h[8], title=h[9]))
        self._dry = None if requests else (frozenset(skip_hosts), now)
        return requests

    async def release(self, urls: Sequence[str]) -> None:
        """Back to the front of their queues; the spares go back too, behind them."""
        spares, self._spare = [r.url for r in reversed(self._spare)], []
        args: list[str] = []
        for url in [*spares, *urls]:
            token = self._tokens.pop(url, None)
            if token is not None:
                args += [url, token]
        if args:
            await self._call("release", *args)

    async def prepare(self, outcomes: Sequence[Outcome],
                      extra: Sequence[Candidate] = ()) -> Prepared:
        groups = _by_referrer(extra)
        keys = [[link_key(c.url) for c in group] for group in groups]
        keys += [[link_key(c.url) for c in o.candidates] for o in outcomes]
        # links this worker already knows the job has seen are not sent: a page's navigation
        # bar costs Redis nothing after the first pages
        was_known = [[k in self._known for k in ks] for ks in keys]
        unknown = [[k for k, old in zip(ks, olds, strict=True) if not old]
                   for ks, olds in zip(keys, was_known, strict=True)]
        batch = [{"u": None, "t": "", "s": None, "c": ks} for ks in unknown[:len(groups)]]
        batch += [{"u": o.request.url, "t": self._tokens.get(o.request.url, ""),
                   "s": o.simhash if o.state == "done" and o.status != 304 else None,
                   "c": ks} for o, ks in zip(outcomes, unknown[len(groups):], strict=True)]
        answer = json.loads(await self._call("prepare", self._lease_ms,
                                              self._s.near_duplicate_distance, json.dumps(batch)))
        found = []
        for ks, olds, a in zip(keys, was_known, answer, strict=True):
            flags = iter(a["a"] if isinstance(a["a"], list) else [])
            admitted = [not old and bool(next(flags, 0)) for old in olds]
            self._known.update(k for k, ok in zip(ks, admitted, strict=True) if not ok)
            found.append(Admission(admitted, a["n"]))
        if len(self._known) > KNOWN_MAX:
            self._known.clear()
        lost = [o.request.url for o, a in zip(outcomes, answer[len(groups):], strict=True)
                if not a["ok"]]
        if lost:
            raise FrontierUnavailable(
                f"{len(lost)} lease(s) of this worker expired before their records were "
                f"committed (e.g. {lost[0]}): the worker stalled past lease_timeout "
                f"({self._s.lease_timeout:g} s) and other workers own those URLs now; "
                "nothing of the batch was written. Raise lease_timeout.")
        extra_admitted = [ok for a in found[:len(groups)] for ok in a.admitted]
        return Prepared(outcomes, found[len(groups):], extra, extra_admitted)

    async def commit(self, batch: Prepared, journal: Journal) -> None:
        outcomes: list[dict[str, Any]] = [
            {"u": None, "t": "", "st": "admit", "f": None, "s": None, "e": None, "m": None,
             "h": None, "x": None, "ti": None, "r": referrer, "c": group}
            for referrer, group in _admitted_by_referrer(batch.extra, batch.admitted)]
        for o, admission in zip(batch.outcomes, batch.admissions, strict=True):
            url = o.request.url
            outcomes.append({
                "u": url, "t": self._tokens.get(url, ""), "st": o.state,
                "f": o.fetched_at, "s": o.status, "e": o.etag, "m": o.last_modified,
                "h": o.sha256, "x": o.simhash, "ti": o.title,
                "r": url, "c": [[c.url, c.depth, host_of(c.url), link_key(c.url)]
                                for c, ok in zip(o.candidates, admission.admitted, strict=True)
                                if ok]})
        files: list[Any] = []
        for kind, (base, data) in journal.files.items():
            files += [kind, base, data]
        self._seq += 1
        answer = await self._call(
            "ack", self.worker, self._seq, self._run_id, self.machine,
            self._s.max_pages_per_host, json.dumps(outcomes), json.dumps(journal.totals), *files)
        if _text(answer[0]) == "lost":
            raise FrontierUnavailable(
                f"lease(s) of this worker expired while its batch was being committed "
                f"({', '.join(_text(u) for u in answer[1:4])}); nothing of the batch was "
                f"written. Raise lease_timeout ({self._s.lease_timeout:g} s).")
        for o in batch.outcomes:
            self._tokens.pop(o.request.url, None)
        for entry in outcomes:
            self._known.update(link_key(c[0]) for c in entry["c"])

    async def pending(self) -> int:
        return int(await self._command("GET", self.prefix + "pending") or 0)

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
            args: list[str] = []
            for url, token in list(self._tokens.items()):
                args += [url, token]
            try:
                lost = await self._call("renew", self._lease_ms, self.worker, self._holder,
                                        *args)
            except FrontierUnavailable:
                return  # the next frontier call reports it
            if lost:
                log.warning("%d lease(s) expired before renewal (e.g. %s)", len(lost),
                            _text(lost[0]))

    async def take(self, host: str, window_s: float, next_in_s: float) -> float:
        """Hold the host's window (`politeness.SharedSlot`): 0, or the seconds to wait."""
        wait_ms = await self._on_host("gate", host, self._holder, "take", round(window_s * 1000),
                                      self._grace_ms(), round(next_in_s * 1000))
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
        the `pace` hash beside `next`; with `seconds`, set it first."""
        if seconds is not None:
            await self._command("HSET", self.prefix + "pace", host, round(seconds * 1000))
            return seconds
        got = await self._command("HGET", self.prefix + "pace", host)
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
        return f"{self.shard(host_of(origin + '/'))}robots:{self._run_no}:{origin}"

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
            name = _text(key).removeprefix(self.prefix)
            if name.startswith("seen:"):
                sizes["seen"] += used
                sizes["urls"] += int(await self._client.hlen(key))
            elif name == "hist":
                sizes["hist"] += used
        return sizes
