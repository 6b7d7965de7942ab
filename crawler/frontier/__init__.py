"""Step 2 of the data flow: the frontier, which URLs are queued, leased, done; SQLite or Redis.

A URL moves `queued -> leased -> done | failed | skipped` within a run; a new run of a finished
job puts the URLs that are due for a recrawl back to `queued`. Every store keeps that state
machine behind the same narrow `Frontier` protocol, so the runner never knows which one it has.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..models import Request


@dataclass(slots=True)
class Journal:
    """What one committed batch wrote to the run's files, kept in the store's transaction.

    `files` maps a file kind (`pages`, `links`, `errors`, `warc`) to the file's size before
    the batch and the bytes the batch appends (empty for `warc`, which is written before the
    commit and only cut back on resume); `sinks` gives how far into `pages.jsonl` the sink
    plugins had their records. `totals` are the run's cumulative figures.
    """

    files: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    totals: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunInfo:
    run_id: str  # YYYYMMDDTHHMMSSZ
    started_at: str  # ISO 8601 UTC
    resumed: bool  # True when an unfinished run is continued
    # the last committed batch of the run, replayed onto the files on resume
    journal: Journal = field(default_factory=Journal)
    # a shared frontier's name for this worker: its part files are `pages-WORKER.jsonl`, ...
    worker: str = ""


@dataclass(frozen=True, slots=True)
class Orphan:
    """The journal of a dead worker of this machine, whose files no live worker will open."""

    worker: str
    run_id: str
    journal: Journal


@dataclass(frozen=True, slots=True)
class Candidate:
    """A link that passed the runner's checks and may join the frontier."""

    url: str
    depth: int
    referrer: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one leased URL, to be made durable in one batch."""

    request: Request
    state: str  # "done" (a page record), "failed" (an error record), "skipped"
    status: int | None = None
    fetched_at: float | None = None  # epoch seconds
    etag: str | None = None
    last_modified: str | None = None
    sha256: str | None = None
    simhash: str | None = None
    title: str | None = None
    candidates: Sequence[Candidate] = ()


@dataclass(frozen=True, slots=True)
class Admission:
    """What `prepare` found for one outcome: which of its candidates joined the queue (the
    others were known, over budget or repeated), and the earlier page it nearly duplicates."""

    admitted: list[bool]
    near_duplicate_of: str | None = None


@dataclass(frozen=True, slots=True)
class Prepared:
    """A batch `prepare` has written but not committed: hand it to `commit`."""

    outcomes: Sequence[Outcome]
    admissions: Sequence[Admission]  # one per outcome, in order
    extra: Sequence[Candidate] = ()  # URLs with no outcome of their own (a sitemap's)
    admitted: list[bool] = field(default_factory=list)  # of `extra`

    def of(self, outcome: Outcome) -> Admission:
        for o, a in zip(self.outcomes, self.admissions, strict=True):
            if o is outcome:
                return a
        raise KeyError(outcome.request.url)


class Frontier(Protocol):
    """The narrow seam between the runner and a state store: what every store does."""

    async def open(self, seeds: Sequence[str], *, fresh: bool, recrawl_after_s: float) -> RunInfo:
        """Take the job's lock, resume the unfinished run or start a new one, admit the seeds."""

    async def lease(self, n: int, skip_hosts: Collection[str]) -> list[Request]:
        """Up to `n` queued URLs, oldest first, none of a host in `skip_hosts`."""

    async def release(self, urls: Sequence[str]) -> None:
        """Give leased URLs back to the queue untouched (a stop, or a page over --max-pages)."""

    async def prepare(self, outcomes: Sequence[Outcome],
                      extra: Sequence[Candidate] = ()) -> Prepared:
        """Record outcomes and admit their links and the `extra` URLs, pending `commit`; the
        answer says which were admitted and which pages are near duplicates, so that the
        records written next can say so."""

    async def commit(self, batch: Prepared, journal: Journal) -> None:
        """Make `batch` durable together with its `journal`: the records exist from this
        instant, in the store, before any of them reaches the files."""

    async def pending(self) -> int:
        """URLs queued or leased in this run."""

    async def finish(self, stop_reason: str, finished_at: str | None) -> None:
        """Note how the run ended; `finished_at` is None when it only paused."""

    async def close(self) -> None:
        """Release the lock and the store."""
