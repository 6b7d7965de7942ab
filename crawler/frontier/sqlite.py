"""The embedded frontier: one SQLite file per job, used from the thread pool by one writer."""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from ..clock import iso
from ..errors import LockedError, OutputError
from ..models import Request
from ..pools import ThreadPool
from ..urls import host_of
from . import Admission, Candidate, Journal, Outcome, Prepared, RunInfo, neardup

T = TypeVar("T")

QUEUED, LEASED, DONE, FAILED, SKIPPED = range(5)
_U64 = (1 << 64) - 1
_IN_CHUNK = 500  # URLs per `IN (...)` lookup, under SQLite's bound on parameters
# queued URLs a lease with hosts to skip reads from the head of the queue before it asks the
# hosts' own queues: unbounded, a lease behind a million URLs of one skipped host read them
# all (1.1 s), once per commit, and the crawl's cost grew with its frontier
LEASE_WINDOW = 2048
# a leased row: the `Request`'s fields, then its host and its place in the queue
_LEASED = "url, depth, referrer, etag, last_modified, status, sha256, simhash, title, host, seq"
_STATE = {"done": DONE, "failed": FAILED, "skipped": SKIPPED}
# URLs of the job remembered in memory, per generation (two generations: the last one full,
# and the one filling): a navigation bar's links, on every page, are known without a query.
# Bounded, about 6 MB at most; a URL not remembered is looked up in the table as before.
KNOWN_CAP = 1 << 14

_SCHEMA = """
CREATE TABLE IF NOT EXISTS urls (
    url TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    depth INTEGER NOT NULL,
    referrer TEXT,
    state INTEGER NOT NULL,
    run TEXT NOT NULL,          -- the run that last queued it
    seq INTEGER NOT NULL,       -- queue order
    fetched_at REAL,            -- epoch seconds of the last fetch
    status INTEGER,
    etag TEXT,
    last_modified TEXT,
    sha256 TEXT,
    simhash TEXT,
    title TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS urls_queue ON urls (state, seq);
-- each host's queue in order: a lease passing over the hosts it must skip reads only the
-- others' URLs (the index holds queued URLs only, so a fetched one leaves it)
CREATE INDEX IF NOT EXISTS urls_host_queue ON urls (host, seq) WHERE state = 0;
-- Every distinct simhash of the job, in filing order (id = its number in neardup.BlockIndex,
-- plus one), with the page that had it first: append-only, read back into memory at open.
CREATE TABLE IF NOT EXISTS fingerprints (
    id INTEGER PRIMARY KEY,
    simhash INTEGER NOT NULL,  -- signed 64-bit
    url TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    stop_reason TEXT,
    totals TEXT                 -- JSON: the run's figures as of its last commit
);
-- The last committed batch of the unfinished run: per file, its size before the batch and
-- the bytes the batch appends. Written in the batch's own transaction, so records and state
-- can never disagree: on resume the files are cut back to `base` and `data` written again.
CREATE TABLE IF NOT EXISTS journal (
    kind TEXT PRIMARY KEY,
    base INTEGER NOT NULL,
    data BLOB NOT NULL
);
"""


def run_id_for(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


class JobLock:
    """An exclusive `flock` on `JOB/lock`; the kernel drops it when its process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockedError(
                f"another crawl of this job is running (PID {holder}); lock file {self.path}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class SqliteFrontier:
    """`Frontier` on a SQLite file in WAL mode; every call runs in the thread pool."""

    def __init__(self, job_dir: Path, threads: ThreadPool, *, max_pages_per_host: int = 0,
                 near_duplicate_distance: int = 3) -> None:
        self.path = job_dir / "state.sqlite"
        self._lock_file = JobLock(job_dir / "lock")
        self._threads = threads
        self._budget = max_pages_per_host
        self._distance = near_duplicate_distance
        self._db: sqlite3.Connection | None = None
        self._guard = threading.Lock()  # one writer: calls never overlap
        self._run = ""
        self._seq = 0
        self._per_host: dict[str, int] = {}
        # URLs queued or leased, counted once at open and then kept as they move, so that
        # `pending` (every second, with a live progress bar) scans no table
        self._unfinished = 0
        # per host, its URLs queued (not leased), kept as they move: a lease whose skipped
        # hosts hold the whole queue (one site, at its per-host limit) asks nothing
        self._queued: dict[str, int] = {}
        self._index = neardup.BlockIndex()  # the job's fingerprints, filled at open
        self._known: set[str] = set()  # URLs surely in the table: the filling generation
        self._known_before: set[str] = set()  # and the last full one

    # -- plumbing ---------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        return await self._threads.run(self._locked, fn, *args)

    def _locked(self, fn: Callable[..., T], *args: object) -> T:
        with self._guard:
            return fn(*args)

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "frontier used before open()"
        return self._db

    # -- the protocol ---------------------------------------------------------------------

    async def open(self, seeds: Sequence[str], *, fresh: bool, recrawl_after_s: float) -> RunInfo:
        self._lock_file.acquire()
        try:
            return await self._call(self._open, seeds, fresh, recrawl_after_s)
        except BaseException:
            self._lock_file.release()
            raise

    def _open(self, seeds: Sequence[str], fresh: bool, recrawl_after_s: float) -> RunInfo:
        if fresh:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise OutputError(f"cannot open {self.path}: {exc}") from None
        self._db = db
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        self._index = neardup.BlockIndex(
            h & _U64 for (h,) in db.execute("SELECT simhash FROM fingerprints ORDER BY id"))
        self._migrate_simhashes()
        columns = {r[1] for r in db.execute("PRAGMA table_info(runs)")}
        if "totals" not in columns:  # a state file from before the column existed
            db.execute("ALTER TABLE runs ADD COLUMN totals TEXT")
        row = db.execute("SELECT run_id, started_at, totals FROM runs WHERE finished_at IS NULL "
                         "ORDER BY run_id DESC LIMIT 1").fetchone()
        self._seq = db.execute("SELECT coalesce(max(seq), 0) FROM urls").fetchone()[0]
        db.execute("BEGIN")
        if row:
            journal = Journal(
                files={kind: (base, bytes(data)) for kind, base, data in
                       db.execute("SELECT kind, base, data FROM journal")},
                totals=json.loads(row[2]) if row[2] else {})
            info = RunInfo(run_id=row[0], started_at=row[1], resumed=True, journal=journal)
            self._run = info.run_id
            # URLs leased by a process that died go back to the queue
            db.execute("UPDATE urls SET state=? WHERE state=?", (QUEUED, LEASED))
        else:
            now = datetime.now(UTC)
            run_id = run_id_for(now)
            last = db.execute("SELECT max(run_id) FROM runs").fetchone()[0]
            while last is not None and run_id <= last:  # two runs within one second
                now = datetime.fromtimestamp(now.timestamp() + 1, UTC)
                run_id = run_id_for(now)
            info = RunInfo(run_id=run_id, started_at=iso(now), resumed=False)
            self._run = run_id
            db.execute("INSERT INTO runs (run_id, started_at) VALUES (?, ?)",
                       (run_id, info.started_at))
            db.execute("DELETE FROM journal")  # the finished run's files are complete
            cutoff = time.time() - recrawl_after_s
            db.execute(
                "UPDATE urls SET state=?, run=?, seq=seq+? WHERE state IN (?, ?, ?) "
                "AND (fetched_at IS NULL OR fetched_at <= ?)",
                (QUEUED, run_id, self._seq + 1, DONE, FAILED, SKIPPED, cutoff))
            self._seq = db.execute("SELECT coalesce(max(seq), 0) FROM urls").fetchone()[0]
        # the budget's counts read the whole table: only when there is a budget to keep
        self._per_host = dict(db.execute(
            "SELECT host, count(*) FROM urls WHERE run=? GROUP BY host", (self._run,))
        ) if self._budget else {}
        self._unfinished = db.execute("SELECT count(*) FROM urls WHERE state IN (?, ?)",
                                      (QUEUED, LEASED)).fetchone()[0]
        self._queued = dict(db.execute(  # from the hosts' queues: no table read
            "SELECT host, count(*) FROM urls INDEXED BY urls_host_queue "
            f"WHERE state = {QUEUED} GROUP BY host"))
        for url in seeds:
            self._insert(url, 0, None)
        db.execute("COMMIT")
        return info

    def _admit(self, candidates: Sequence[Candidate]) -> list[bool]:
        """Queue the candidates the job has not seen; which ones were. URLs remembered as
        known cost no query; one query for the others and one insert of the new ones,
        instead of a statement per link (the per-host budget, when set, takes them one by
        one, in order)."""
        if self._budget:
            return [self._insert(c.url, c.depth, c.referrer) for c in candidates]
        recent, before = self._known, self._known_before
        unsure = list({c.url for c in candidates
                       if c.url not in recent and c.url not in before})
        known: set[str] = set()
        for start in range(0, len(unsure), _IN_CHUNK):
            chunk = unsure[start:start + _IN_CHUNK]
            known.update(row[0] for row in self.db.execute(
                f"SELECT url FROM urls WHERE url IN ({','.join('?' * len(chunk))})", chunk))
        unsure_set = set(unsure)
        admitted, rows = [], []
        for c in candidates:
            url = c.url
            self._remember(url)
            if url not in unsure_set or url in known:
                admitted.append(False)
                continue
            known.add(url)
            host = host_of(url)
            self._seq += 1
            rows.append((url, host, c.depth, c.referrer, QUEUED, self._run, self._seq))
            self._queued[host] = self._queued.get(host, 0) + 1
            admitted.append(True)
        if rows:
            self.db.executemany("INSERT INTO urls (url, host, depth, referrer, state, run, "
                                "seq) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            self._unfinished += len(rows)
        return admitted

    def _remember(self, url: str) -> None:
        """`url` is in the table (or in the open transaction, which commits or ends the
        process): remember it in the filling generation; a full one becomes the last."""
        known = self._known
        known.add(url)
        if len(known) >= KNOWN_CAP:
            self._known_before, self._known = known, set()

    def _insert(self, url: str, depth: int, referrer: str | None) -> bool:
        host = host_of(url)
        if self._budget and self._per_host.get(host, 0) >= self._budget:
            return False
        self._seq += 1
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO urls (url, host, depth, referrer, state, run, seq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)", (url, host, depth, referrer, QUEUED, self._run,
                                              self._seq))
        self._remember(url)
        if cursor.rowcount:
            self._per_host[host] = self._per_host.get(host, 0) + 1
            self._queued[host] = self._queued.get(host, 0) + 1
            self._unfinished += 1
            return True
        return False

    async def lease(self, n: int, skip_hosts: Collection[str]) -> list[Request]:
        return await self._call(self._lease, n, tuple(skip_hosts))

    def _lease(self, n: int, skip_hosts: tuple[str, ...]) -> list[Request]:
        """Oldest first; with hosts to skip, oldest first of the queue's first LEASE_WINDOW,
        then of the other hosts' own queues: a bounded read, however long the queue."""
        queued = self._queued
        skip = [h for h in skip_hosts if h in queued]
        if len(skip) == len(queued):
            return []  # nothing queued, or only URLs of hosts to skip
        if not skip:
            rows = self.db.execute(f"SELECT {_LEASED} FROM urls WHERE state=? ORDER BY seq "
                                   "LIMIT ?", (QUEUED, n)).fetchall()
        else:
            # the oldest of the queue's head, then, when that is short, the oldest of each
            # other host's own queue (a host's URLs may lie behind millions of a skipped one)
            marks = ",".join("?" * len(skip))
            rows = self.db.execute(
                f"SELECT {_LEASED} FROM (SELECT {_LEASED} FROM urls WHERE state=? "
                f"ORDER BY seq LIMIT ?) WHERE host NOT IN ({marks}) LIMIT ?",
                (QUEUED, LEASE_WINDOW, *skip, n)).fetchall()
            if len(rows) < n:
                rows = self._lease_by_host(rows, n, set(skip))
        if rows:
            self.db.executemany("UPDATE urls SET state=? WHERE url=?",
                                [(LEASED, r[0]) for r in rows])
        for row in rows:
            self._dequeue(row[9])
        return [Request(*row[:9]) for row in rows]

    def _lease_by_host(self, rows: list[Any], n: int, skip: set[str]) -> list[Any]:
        """`rows` topped up to `n` from the queues of the hosts not in `skip`, in the order
        they were first queued, each host's oldest first: a lookup in a host's queue each,
        `n` at most (each has one URL at least)."""
        have = {r[0] for r in rows}
        need = n - len(rows)
        more: list[Any] = []
        for host in self._queued:
            if len(more) >= need:
                break
            if host in skip:
                continue
            # its oldest may be among `rows` already: ask for as many more
            more += (r for r in self.db.execute(
                f"SELECT {_LEASED} FROM urls WHERE state = {QUEUED} AND host=? ORDER BY seq "
                "LIMIT ?", (host, need + len(rows))) if r[0] not in have)
        return rows + more[:need]

    def _dequeue(self, host: str) -> None:
        left = self._queued[host] - 1
        if left:
            self._queued[host] = left
        else:
            del self._queued[host]

    async def release(self, urls: Sequence[str]) -> None:
        await self._call(self._release, list(urls))

    def _release(self, urls: list[str]) -> None:
        for url in urls:  # one by one: only those still leased count as queued again
            if self.db.execute("UPDATE urls SET state=? WHERE url=? AND state=?",
                               (QUEUED, url, LEASED)).rowcount:
                host = host_of(url)
                self._queued[host] = self._queued.get(host, 0) + 1

    async def prepare(self, outcomes: Sequence[Outcome],
                      extra: Sequence[Candidate] = ()) -> Prepared:
        return await self._call(self._prepare, outcomes, extra)

    def _prepare(self, outcomes: Sequence[Outcome], extra: Sequence[Candidate]) -> Prepared:
        db = self.db
        db.execute("BEGIN")
        extra_admitted = self._admit(extra)  # first: a sitemap's URLs keep their depth 1
        # the whole batch's links in one admission, in order: a URL two pages link to is
        # admitted for the first of them, as page by page
        admitted = self._admit([c for o in outcomes for c in o.candidates])
        admissions = []
        not_modified, done, other = [], [], []
        at = 0
        for o in outcomes:
            url = o.request.url
            self._unfinished -= 1  # leased until now
            near = None
            if o.state == "done" and o.simhash is not None:
                near = self._near_duplicate(url, o.simhash)
            admissions.append(Admission(admitted[at:at + len(o.candidates)], near))
            at += len(o.candidates)
            if o.state == "done" and o.status == 304:
                not_modified.append((DONE, o.fetched_at, url))
            elif o.state == "done":
                done.append((DONE, o.fetched_at, o.status, o.etag, o.last_modified, o.sha256,
                             o.simhash, o.title, url))
            else:
                other.append((_STATE[o.state], o.fetched_at, url))
        db.executemany("UPDATE urls SET state=?, fetched_at=? WHERE url=?", not_modified)
        db.executemany(
            "UPDATE urls SET state=?, fetched_at=?, status=?, etag=?, last_modified=?, "
            "sha256=?, simhash=?, title=? WHERE url=?", done)
        db.executemany("UPDATE urls SET state=?, fetched_at=coalesce(?, fetched_at) "
                       "WHERE url=?", other)
        return Prepared(outcomes, admissions, extra, extra_admitted)

    def _near_duplicate(self, url: str, simhash: str) -> str | None:
        """An earlier page within the distance, from the value's four buckets; then file the
        fingerprint, unless an identical one was filed before."""
        value = int(simhash, 16)
        index = self._index
        found, exact = None, False
        for number in index.near(value, self._distance):
            exact = exact or index.get(number) == value
            if found is None:
                row = self.db.execute("SELECT url FROM fingerprints WHERE id=?",
                                      (number + 1,)).fetchone()
                if row[0] != url:
                    found = str(row[0])
            if found is not None and exact:
                break
        if not exact:
            number = index.add(value)
            self.db.execute("INSERT INTO fingerprints VALUES (?, ?, ?)",
                            (number + 1, neardup.signed(value), url))
        return found

    def _migrate_simhashes(self) -> None:
        """A state file from before the block tables: its fingerprints move to them once."""
        db = self.db
        if db.execute("SELECT 1 FROM sqlite_master WHERE name='simhashes'").fetchone() is None:
            return
        db.execute("BEGIN")
        for url, simhash in db.execute("SELECT url, simhash FROM simhashes ORDER BY rowid"
                                       ).fetchall():
            self._near_duplicate(url, simhash)
        db.execute("DROP TABLE simhashes")
        db.execute("COMMIT")

    async def commit(self, batch: Prepared, journal: Journal) -> None:
        await self._call(self._commit, journal)

    def _commit(self, journal: Journal) -> None:
        db = self.db
        if not db.in_transaction:
            db.execute("BEGIN")
        db.execute("DELETE FROM journal")
        db.executemany("INSERT INTO journal (kind, base, data) VALUES (?, ?, ?)",
                       [(kind, base, data) for kind, (base, data) in journal.files.items()])
        db.execute("UPDATE runs SET totals=? WHERE run_id=?",
                   (json.dumps(journal.totals), self._run))
        db.execute("COMMIT")

    async def pending(self) -> int:
        return await self._call(self._pending)

    def _pending(self) -> int:
        return self._unfinished

    async def finish(self, stop_reason: str, finished_at: str | None) -> None:
        await self._call(self._finish, stop_reason, finished_at)

    def _finish(self, stop_reason: str, finished_at: str | None) -> None:
        self.db.execute("UPDATE runs SET stop_reason=?, finished_at=? WHERE run_id=?",
                        (stop_reason, finished_at, self._run))

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await self._threads.run(self._close, db)
        self._lock_file.release()

    def _close(self, db: sqlite3.Connection) -> None:
        with self._guard:
            if db.in_transaction:
                db.execute("ROLLBACK")
                self._known.clear()  # what the transaction admitted is gone with it
                self._known_before.clear()
            db.close()
