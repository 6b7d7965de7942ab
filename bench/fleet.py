"""`python -m bench.fleet N CRAWL...`: N `crawl` workers on one job sharing a Redis frontier.

The redis-server they share is started here, on a free 127.0.0.1 port and without
persistence, so that its CPU and memory count in the contender's process tree, as the SQLite
frontier's do in the single crawler's. Exits with the first non-zero status of a worker.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

import redis

from .nginx import free_port


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


def main(argv: list[str]) -> int:
    workers, crawl = int(argv[0]), argv[1:]
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", folder], stdout=subprocess.DEVNULL)
        try:
            _wait_for(port)
            frontier = f"redis://127.0.0.1:{port}/0"
            procs = [subprocess.Popen([*crawl, "--frontier", frontier, "--worker", f"w{i}"])
                     for i in range(workers)]
            codes = [proc.wait() for proc in procs]
        finally:
            server.terminate()
            server.wait()
    return next((code for code in codes if code), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
