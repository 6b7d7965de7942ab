"""Run one command and measure its whole process tree: wall time, CPU time, peak memory.

    python -m bench.measure RESULT.json -- COMMAND [ARGS...]

This process makes itself a child subreaper, so that grandchildren orphaned by their parent
(a multiprocessing forkserver, say) are reparented to it and reaped by it: their CPU time
then reaches `RUSAGE_CHILDREN`, which is summed over the reaped tree. Memory cannot be summed
that way (ru_maxrss is a per-process peak, and peaks of different processes happen at
different times), so it is sampled: every 0.1 s the RSS (and PSS, which shares out pages
that forked processes have in common) of every live descendant is added up, and the largest
sum is the tree's peak. The CPU time of the live tree is sampled with it (`cpu_series`, pairs
of Unix time and CPU seconds), so that a stretch of the run, the crawl between its first and
last page without the start-up and the shut-down, can be judged on its own.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

INTERVAL_S = 0.1
ORPHAN_GRACE_S = 30.0
_PR_SET_CHILD_SUBREAPER = 36
_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICK = os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """Direct children of `pid`: each of its threads lists the children it started."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    stack = children(pid)
    while stack:
        child = stack.pop()
        out.append(child)
        stack.extend(children(child))
    return out


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0  # the process ended between the listing and the read


def pss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of `pid` (all its threads), from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime: fields 14 and 15
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_busy_seconds() -> float:
    """CPU time every core of the machine has spent busy since boot (/proc/stat's first line:
    all but idle and iowait), whoever used it."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / _TICK  # up to steal; guests are in user


def _reap_orphans() -> None:
    """Wait for what the command left behind, so that its CPU time is counted."""
    deadline = time.monotonic() + ORPHAN_GRACE_S
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid:
            continue
        if time.monotonic() > deadline:
            for orphan in children(os.getpid()):
                os.kill(orphan, 9)
        time.sleep(0.05)


def measure(command: list[str]) -> dict[str, Any]:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(command)
    peak_rss = peak_pss = most = samples = 0
    series: list[tuple[float, float]] = []
    me = os.getpid()
    while proc.poll() is None:
        tree = descendants(me)
        series.append((round(time.time(), 3), round(sum(cpu_seconds(p) for p in tree), 2)))
        peak_rss = max(peak_rss, sum(rss_bytes(p) for p in tree))
        peak_pss = max(peak_pss, sum(pss_bytes(p) for p in tree))
        most = max(most, len(tree))
        samples += 1
        time.sleep(INTERVAL_S)
    wall = time.perf_counter() - start
    _reap_orphans()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"returncode": proc.returncode, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "peak_rss_mb": round(peak_rss / 2**20, 1), "peak_pss_mb": round(peak_pss / 2**20, 1),
            "max_processes": most, "samples": samples, "cpu_series": series}


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m bench.measure RESULT.json -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    result = measure(argv[2:])
    Path(argv[0]).write_text(json.dumps(result) + "\n", encoding="utf-8")
    return int(result["returncode"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
