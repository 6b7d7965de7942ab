"""Step 6: the run's figures: counters, status codes, the event loop's lag, the pools' time."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

LAG_INTERVAL_S = 0.05
LAG_SAMPLES = 20_000
SLOWEST_HOSTS = 10  # hosts listed by their pace in stats.json and the report


class LoopLag:
    """How late the event loop wakes a sleeper: the proof that nothing blocks it."""

    def __init__(self) -> None:
        self._samples: deque[float] = deque(maxlen=LAG_SAMPLES)
        self.max_ms = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(LAG_INTERVAL_S)
            lag_ms = max(0.0, (loop.time() - start - LAG_INTERVAL_S) * 1000)
            self._samples.append(lag_ms)
            self.max_ms = max(self.max_ms, lag_ms)

    def snapshot(self) -> dict[str, float]:
        ordered = sorted(self._samples)
        if not ordered:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}

        def pick(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

        return {"p50": pick(0.50), "p99": pick(0.99), "max": round(self.max_ms, 2)}


class Stats:
    """One mutable tally for the run, read through `snapshot()`; keys are the contract's."""

    COUNTERS = ("pages", "errors", "bytes", "robots_blocked", "out_of_scope", "duplicates",
                "retries", "new", "changed", "unchanged", "gone", "links", "sink_errors",
                "extractor_errors", "links_dropped", "blocked_private", "sitemap_errors")

    def __init__(self) -> None:
        # this invocation's tallies; `_earlier` holds those of the run's earlier invocations
        self.counters: Counter[str] = Counter({k: 0 for k in self.COUNTERS})
        self.status_counts: Counter[str] = Counter()
        self.errors_by_kind: Counter[str] = Counter()
        self._earlier: dict[str, Any] = {}
        self.responses = 0  # attempts that got any HTTP answer: exit 4 when none did
        self.lag = LoopLag()
        self.started = time.monotonic()

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] += n

    def page(self, status: int, size: int) -> None:
        self.counters["pages"] += 1
        self.counters["bytes"] += size
        self.status_counts[str(status)] += 1

    def error(self, kind: str) -> None:
        self.counters["errors"] += 1
        self.errors_by_kind[kind] += 1

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def resume(self, totals: dict[str, Any]) -> None:
        """Continue a run: its figures so far, as `totals()` gave them at its last commit."""
        self._earlier = totals

    def totals(self) -> dict[str, Any]:
        """The run's cumulative tallies (all invocations), kept with each commit.

        Page, error, byte, status and change counts are exact across a `kill -9`, since they
        are counted in the batch they are committed with; the others (retries, robots_blocked,
        ...) may count the in-flight URLs of a killed invocation twice.
        """
        earlier = self._earlier
        return {
            "counters": _add(earlier.get("counters"), self.counters),
            "status_counts": _add(earlier.get("status_counts"), self.status_counts),
            "errors_by_kind": _add(earlier.get("errors_by_kind"), self.errors_by_kind),
            "active_s": round(float(earlier.get("active_s", 0.0)) + self.elapsed_s(), 3),
            "invocations": int(earlier.get("invocations", 0)) + 1,
        }

    def snapshot(self, others: Sequence[dict[str, Any]] = (), **extra: Any) -> dict[str, Any]:
        """stats.json's figures; with `others` (other workers' `totals()`), the fleet's."""
        totals = merge_totals([self.totals(), *others])
        counters = totals["counters"]
        duration = totals["active_s"]  # time spent crawling, summed over the invocations
        data: dict[str, Any] = {
            **extra,
            "duration_s": duration,
            **counters,
            "pages_per_s": round(counters["pages"] / duration, 2) if duration else 0.0,
            "status_counts": dict(sorted(totals["status_counts"].items())),
            "errors_by_kind": dict(sorted(totals["errors_by_kind"].items())),
            "invocations": totals["invocations"],
            "loop_lag_ms": self.lag.snapshot(),
        }
        return data


def merge_totals(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Several workers' `totals()` as one: counts add up, the active time is the longest."""
    merged: dict[str, Any] = {"counters": {}, "status_counts": {}, "errors_by_kind": {},
                              "active_s": 0.0, "invocations": 0}
    for part in parts:
        for key in ("counters", "status_counts", "errors_by_kind"):
            merged[key] = _add(merged[key], Counter(part.get(key) or {}))
        merged["active_s"] = max(merged["active_s"], float(part.get("active_s", 0.0)))
        merged["invocations"] += int(part.get("invocations", 0))
    return merged


def _add(earlier: dict[str, int] | None, now: Counter[str]) -> dict[str, int]:
    total = Counter(earlier or {})
    total.update(now)  # keeps keys whose count is 0
    return dict(total)


def delay_figures(delays: dict[str, float]) -> dict[str, Any]:
    """stats.json's `throttle_delay_s`: the hosts' paces now (see `politeness`), p50 and
    max over hosts, and the slowest hosts with theirs."""
    ordered = sorted(delays.values())
    slowest = sorted(delays.items(), key=lambda item: (-item[1], item[0]))[:SLOWEST_HOSTS]
    return {
        "p50": round(ordered[(len(ordered) - 1) // 2], 3) if ordered else 0.0,
        "max": round(ordered[-1], 3) if ordered else 0.0,
        "hosts": len(ordered),
        "slowest": [[host, round(d, 3)] for host, d in slowest],
    }
