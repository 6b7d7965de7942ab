"""`python -m bench.fleet N [--cluster] [--cpu PATH] CRAWL...`: N `crawl` workers on one job
sharing a Redis frontier.

The redis-server they share (or, with `--cluster`, the three masters of a Redis Cluster,
joined with `redis-cli --cluster create`) is started here, on free 127.0.0.1 ports and without
persistence, so that its CPU and memory count in the contender's process tree, as the SQLite
frontier's do in the single crawler's. `--cpu PATH` writes Redis's own CPU seconds (INFO cpu,
`used_cpu_sys + used_cpu_user`, summed over the masters) spent during the crawl to PATH as
JSON, with what they would have spent idle over the same time (`idle_cpu_s`, from a few
seconds watched before the crawl). Exits with the first non-zero status of a worker.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from .nginx import free_port

MASTERS = 3
IDLE_S = 3.0  # seconds the servers are watched idle before the crawl


def _wait_for(port: int) -> None:
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
        finally:
            client.close()


def _cpu_s(ports: list[int]) -> float:
    """Redis CPU seconds so far, summed over the servers."""
    total = 0.0
    for port in ports:
        with redis.Redis(host="127.0.0.1", port=port) as client:
            info = client.info("cpu")
            total += float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    return total


def _commands(ports: list[int]) -> dict[str, dict[str, float]]:
    """INFO commandstats summed over the servers: calls and CPU microseconds per command."""
    total: dict[str, dict[str, float]] = {}
    for port in ports:
        with redis.Redis(host="127.0.0.1", port=port) as client:
            for name, stats in client.info("commandstats").items():
                into = total.setdefault(name.removeprefix("cmdstat_"), {"calls": 0, "usec": 0})
                into["calls"] += stats["calls"]
                into["usec"] += stats["usec"]
    return total


def _cluster_ok(port: int) -> bool:
    with redis.Redis(host="127.0.0.1", port=port) as client:
        return bool(client.cluster("info")["cluster_state"] == "ok")


def _servers(folder: Path, cluster: bool) -> tuple[list[subprocess.Popen[bytes]], list[int]]:
    count = MASTERS if cluster else 1
    ports = [free_port() for _ in range(count)]
    servers = []
    for i, port in enumerate(ports):
        home = folder / f"node{i}"
        home.mkdir()
        # a bus port of its own: the default, port + 10000, may pass 65535
        extra = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--cluster-port", str(free_port())] if cluster else []
        servers.append(subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(home), *extra], stdout=subprocess.DEVNULL))
    for port in ports:
        _wait_for(port)
    if cluster:
        cli = shutil.which("redis-cli") or "redis-cli"
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                        "--cluster-replicas", "0", "--cluster-yes"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        deadline = time.monotonic() + 30
        while not all(_cluster_ok(p) for p in ports):
            if time.monotonic() > deadline:
                raise RuntimeError("the bench's Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.1)
    return servers, ports


def main(argv: list[str]) -> int:
    workers, rest = int(argv[0]), argv[1:]
    cluster = rest[:1] == ["--cluster"]
    rest = rest[1:] if cluster else rest
    cpu_path: Path | None = None
    if rest[:1] == ["--cpu"]:
        cpu_path, rest = Path(rest[1]), rest[2:]
    crawl = rest
    with tempfile.TemporaryDirectory() as folder:
        servers, ports = _servers(Path(folder), cluster)
        try:
            if cluster:
                frontier = "redis-cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports)
            else:
                frontier = f"redis://127.0.0.1:{ports[0]}/0"
            idle = _cpu_s(ports)
            time.sleep(IDLE_S)  # what the servers burn doing nothing (cron, cluster bus)
            for port in ports:
                with redis.Redis(host="127.0.0.1", port=port) as client:
                    client.config_resetstat()
            before = _cpu_s(ports)
            each = [_cpu_s([p]) for p in ports]
            started = time.monotonic()
            procs = [subprocess.Popen([*crawl, "--frontier", frontier, "--worker", f"w{i}"])
                     for i in range(workers)]
            codes = [proc.wait() for proc in procs]
            if cpu_path is not None:
                cpu_path.write_text(json.dumps({
                    "redis_cpu_s": _cpu_s(ports) - before, "masters": len(ports),
                    "per_master_cpu_s": [_cpu_s([p]) - b for p, b in zip(ports, each, strict=True)],
                    "commands": _commands(ports),
                    "idle_cpu_s": (before - idle) / IDLE_S * (time.monotonic() - started)}),
                    encoding="utf-8")
        finally:
            for server in servers:
                server.terminate()
            for server in servers:
                server.wait()
    return next((code for code in codes if code), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
